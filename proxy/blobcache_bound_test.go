package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/blobcache"
	"github.com/notarize/docker-notarize/proxy/upstream"
)

// blobUpstream serves blobs by digest and counts the GETs of each.
type blobUpstream struct {
	blobs map[string][]byte
	mu    sync.Mutex
	gets  map[string]int
}

func (u *blobUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v2/" {
		return
	}
	i := strings.LastIndex(r.URL.Path, "/blobs/")
	b, ok := u.blobs[r.URL.Path[i+len("/blobs/"):]]
	if i < 0 || !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method == http.MethodGet {
		u.mu.Lock()
		u.gets[r.URL.Path[i+len("/blobs/"):]]++
		u.mu.Unlock()
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	_, _ = w.Write(b)
}

func (u *blobUpstream) count(d notarize.Digest) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.gets[string(d)]
}

// TestBoundedBlobCache runs blobs through a Server with a small cache: the
// bound holds, least recently used blobs are evicted and fetched again, a
// blob larger than the bound is served (also as a Range) and not cached,
// and the metrics move.
func TestBoundedBlobCache(t *testing.T) {
	const bound = 4 << 10
	up := &blobUpstream{blobs: map[string][]byte{}, gets: map[string]int{}}
	var small []notarize.Digest
	for i := range 6 {
		b := bytes.Repeat([]byte{byte('a' + i)}, 1<<10)
		d := notarize.DigestOf(b)
		up.blobs[string(d)] = b
		small = append(small, d)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<10) // 16 KiB > bound
	dBig := notarize.DigestOf(big)
	up.blobs[string(dBig)] = big
	us := httptest.NewServer(up)
	defer us.Close()

	p, err := notarize.ParsePolicy([]byte("rules:\n  - {match: \"**\", mode: off}\n"))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := p.Evaluator(nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		DataDir: t.TempDir(), Policy: ev, Trust: noTrust{}, BlobCacheMaxBytes: bound,
		Upstreams: []upstream.Config{{Name: "up", URL: us.URL, Keychain: authn.NewMultiKeychain()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // before t.TempDir's removal: no commit may land in a removed tree
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	ps := httptest.NewServer(s.Handler())
	defer ps.Close()
	allowBlobs(t, s, "up", "lib/app", append(small, dBig)...)

	get := func(d notarize.Digest, rng string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, ps.URL+"/v2/lib/app/blobs/"+string(d), nil)
		if err != nil {
			t.Fatal(err)
		}
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}
	metric := func(name string) float64 {
		t.Helper()
		mfs, err := s.metrics.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				m := mf.GetMetric()[0]
				if m.GetGauge() != nil {
					return m.GetGauge().GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
		t.Fatalf("no metric %s", name)
		return 0
	}

	// A blob is committed to the cache just after its last byte reaches the
	// client (the digest is checked first, then the file is synced and
	// renamed), so the cache's state is awaited, not read at once.
	eventually := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not reached within 5s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	if v := metric("notarize_proxy_blob_cache_max_bytes"); v != bound {
		t.Fatalf("max bytes gauge %v", v)
	}
	if v := metric("notarize_proxy_blob_fill_memory_max_bytes"); v != float64(blobcache.DefaultFillMemoryBytes) {
		t.Fatalf("fill memory budget gauge %v, want the default %d", v, blobcache.DefaultFillMemoryBytes)
	}
	for _, name := range []string{"notarize_proxy_blob_fill_memory_bytes", "notarize_proxy_blob_fill_small_buffers_total", "notarize_proxy_blob_shared_skipped_total"} {
		metric(name) // exported
	}
	for _, d := range small[:4] {
		if code, b := get(d, ""); code != http.StatusOK || notarize.DigestOf(b) != d {
			t.Fatalf("GET %s: %d", d, code)
		}
	}
	eventually("cache full", func() bool { return metric("notarize_proxy_blob_cache_bytes") == bound })
	get(small[0], "") // a hit: small[1] is now the least recently used
	get(small[4], "") // over the bound: evicts 1 and 2 down to the low-water mark (90%)
	eventually("two evictions down to 3 KiB", func() bool {
		return metric("notarize_proxy_blob_cache_bytes") == 3<<10 && metric("notarize_proxy_blob_cache_evictions_total") == 2
	})
	for i, want := range []int{1, 2} { // 0 kept, 1 fetched again
		get(small[i], "")
		if n := up.count(small[i]); n != want {
			t.Errorf("blob %d fetched %d times, want %d", i, n, want)
		}
	}

	code, b := get(dBig, "bytes=100-109")
	if code != http.StatusPartialContent || !bytes.Equal(b, big[100:110]) {
		t.Fatalf("Range of an uncached blob: %d %q", code, b)
	}
	// The verified, uncached blob stays openable while its download is still
	// referenced; once released it is gone, and the next GET fetches again.
	eventually("the oversized blob released", func() bool {
		b, err := s.blobs.Open(dBig)
		if err == nil {
			b.Close()
		}
		return err != nil
	})
	if code, b := get(dBig, ""); code != http.StatusOK || !bytes.Equal(b, big) {
		t.Fatalf("GET of an oversized blob: %d, %d bytes", code, len(b))
	}
	if n := up.count(dBig); n != 2 {
		t.Fatalf("oversized blob fetched %d times, want 2 (never cached)", n)
	}
	eventually("two uncached blobs", func() bool { return metric("notarize_proxy_blob_cache_uncached_total") == 2 })
	if u, v := metric("notarize_proxy_blob_cache_uncached_total"), metric("notarize_proxy_blob_cache_bytes"); u != 2 || v > bound {
		t.Fatalf("%v uncached, %v bytes cached", u, v)
	}
}
