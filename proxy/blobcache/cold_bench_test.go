package blobcache_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/blobcache"
)

// BenchmarkColdBlob measures a first pull of a blob of 200 MiB (issue 14):
// "direct" reads it from a loopback HTTP server, "fill" reads the same
// through a Fill (upstream body → temporary file, hashed → the client's
// reader), as the proxy's cold path does. Compare the two MB/s in one run.
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
	sink := make([]byte, 256<<10)
	b.Run("direct", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			body, _, err := get(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{body}, sink); err != nil {
				b.Fatal(err)
			}
			body.Close()
		}
	})
	b.Run("fill", func(b *testing.B) {
		b.SetBytes(size)
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
