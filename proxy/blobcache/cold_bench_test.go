package blobcache_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/blobcache"
)

// BenchmarkColdBlob measures a first pull of a blob of 200 MiB (issue 14):
// "direct" reads it from a loopback HTTP server, "fill" reads the same
// through a Fill (upstream body → temporary file, hashed → the client's
// reader), as the proxy's cold path does, and "proxy" serves that reader
// to an HTTP client over loopback as proxy.fillBlob does (io.Copy, so the
// reader's WriteTo), one more hop than "direct", as a real pull through the
// proxy has; "proxy-lean" is "proxy" with the fill memory budget spent
// (every buffer small, the client served from the temporary file). Compare
// the MB/s in one run. The "-verify" variants' client hashes what it reads
// and checks the digest, as containerd's content store, dockerd, skopeo and
// ggcr do before they keep a blob: a real pull's client, on the same cores.
// cpu-s/GB (the process's user and system CPU time per GB, which the
// machine's load affects less than throughput) includes the loopback
// server and the client in both.
func BenchmarkColdBlob(b *testing.B) {
	const size = 200 << 20
	blob := make([]byte, size)
	_, _ = rand.Read(blob)
	d := notarize.DigestOf(blob)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(blob)))
		_, _ = w.Write(blob)
	}))
	defer srv.Close()
	get := func(ctx context.Context) (io.ReadCloser, int64, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, 0, err
		}
		return resp.Body, resp.ContentLength, nil
	}
	sink := make([]byte, 1<<20)
	// consume reads a blob as the benchmark's client: discarding it, or,
	// with verify, hashing it and checking the digest.
	consume := func(b *testing.B, r io.Reader, verify bool) int64 {
		if !verify {
			n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, sink)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
		h := sha256.New()
		n, err := io.CopyBuffer(h, struct{ io.Reader }{r}, sink)
		if err != nil {
			b.Fatal(err)
		}
		if got := notarize.Digest("sha256:" + hex.EncodeToString(h.Sum(nil))); got != d {
			b.Fatalf("client: digest %s, want %s", got, d)
		}
		return n
	}
	direct := func(b *testing.B, verify bool) {
		b.SetBytes(size)
		defer reportCPU(b, size)()
		for b.Loop() {
			body, _, err := get(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			consume(b, body, verify)
			body.Close()
		}
	}
	b.Run("direct", func(b *testing.B) { direct(b, false) })
	b.Run("direct-verify", func(b *testing.B) { direct(b, true) })
	proxy := func(b *testing.B, budget int64, verify bool) {
		b.SetBytes(size)
		var c *blobcache.Cache
		px := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f, _ := c.Fill(r.Context(), d, get)
			defer f.Release()
			size, err := f.Started(r.Context())
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			w.Header().Set("Content-Length", fmt.Sprint(size))
			rd := f.NewReader(r.Context())
			defer rd.Close()
			if _, err := io.Copy(struct{ io.Writer }{w}, rd); err != nil {
				panic(http.ErrAbortHandler)
			}
		}))
		defer px.Close()
		defer reportCPU(b, size)()
		for b.Loop() {
			b.StopTimer()
			var err error
			if c, err = blobcache.New(blobcache.Config{Dir: b.TempDir(), FillMemoryBytes: budget}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			resp, err := http.Get(px.URL)
			if err != nil {
				b.Fatal(err)
			}
			if n := consume(b, resp.Body, verify); n != size {
				b.Fatal(n)
			}
			resp.Body.Close()
			b.StopTimer() // committing (fsync, rename) follows
			if err := c.Close(b.Context()); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	b.Run("proxy", func(b *testing.B) { proxy(b, 0, false) })
	b.Run("proxy-verify", func(b *testing.B) { proxy(b, 0, true) })
	// The same with the fill memory budget spent: 32 KiB buffers, no
	// window, the client served from the file.
	b.Run("proxy-lean", func(b *testing.B) { proxy(b, 1, false) })
	b.Run("fill", func(b *testing.B) {
		b.SetBytes(size)
		defer reportCPU(b, size)()
		for b.Loop() {
			c, err := blobcache.New(blobcache.Config{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			f, _ := c.Fill(b.Context(), d, get)
			if _, err := f.Started(b.Context()); err != nil {
				b.Fatal(err)
			}
			rd := f.NewReader(b.Context())
			n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{rd}, sink)
			if err != nil || n != size {
				b.Fatal(n, err)
			}
			b.StopTimer() // the client has the whole blob; committing it (fsync, rename) follows
			rd.Close()
			f.Release()
			if err := c.Close(b.Context()); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
}

// reportCPU reports, when the returned function is called, the process's
// CPU time per GB over b.N rounds of size bytes as cpu-s/GB. Time while the
// benchmark's timer is stopped (committing) counts too.
func reportCPU(b *testing.B, size int64) func() {
	start := cpuTime()
	return func() {
		if b.N > 0 {
			b.ReportMetric((cpuTime()-start).Seconds()/(float64(size)*float64(b.N)/1e9), "cpu-s/GB")
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
