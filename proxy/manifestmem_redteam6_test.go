package proxy_test

import (
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Red team 6: memory held by manifest fetches in flight. A manifest by tag
// is always fetched from the upstream (tags move) and read whole, up to
// MaxManifestSize (4 MiB), before anything is decided, with no bound on
// how many are read at once and no sharing of one fetch between requests
// for the same tag. An anonymous client asking many times at once for a
// tag whose manifest is large (its own repository on a public upstream,
// or a slow upstream) makes the proxy hold 4 MiB or more per request. The
// test fails when 64 concurrent requests for one tag hold more than
// 64 MiB of heap. (Adapted by proxyfix: the upstream counts GETs only,
// since a proxy that shares the fetch sends one, after a HEAD.)
func TestRedteam6ManifestFetchesHoldMemory(t *testing.T) {
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	// A valid OCI manifest of ~4 MiB (annotations), refused by the
	// policy in the end (unsigned): what matters is what is held before.
	pad := strings.Repeat("x", 4<<20-600)
	body := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[],"annotations":{"pad":"%s"}}`, pad)
	const n = 64
	var gets atomic.Int64 // GETs of the manifest that reached the upstream
	release := make(chan struct{})
	ev.serve(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/manifests/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if r.Method == http.MethodHead { // no digest: the proxy must GET
			return
		}
		_, _ = w.Write(body[:len(body)-1])
		w.(http.Flusher).Flush()
		gets.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(body[len(body)-1:])
	})
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.proxy.URL+"/v2/evil/big/manifests/latest", nil)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				_ = resp.Body.Close()
			}
		})
	}
	// Wait for the first GET upstream, then until the 64 have arrived
	// (a proxy that fetches once per request) or 2 s have passed (one
	// that shares the fetch: the others wait for it).
	deadline := time.Now().Add(20 * time.Second)
	var first time.Time
	for gets.Load() < n && (first.IsZero() || time.Since(first) < 2*time.Second) {
		if time.Now().After(deadline) {
			close(release)
			wg.Wait()
			t.Fatal("the upstream saw no GET of the manifest")
		}
		if first.IsZero() && gets.Load() > 0 {
			first = time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // let the proxy read what was sent
	runtime.GC()
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	close(release)
	wg.Wait()
	held := int64(during.HeapInuse) - int64(before.HeapInuse)
	t.Logf("%d concurrent requests for one 4 MiB manifest tag: %d GETs upstream, %d MiB of heap held while they are read", n, gets.Load(), held>>20)
	if held > 64<<20 {
		t.Errorf("DoS (memory): %d concurrent anonymous requests for one tag hold %d MiB (no bound on manifest fetches in flight, no shared fetch per tag)", n, held>>20)
	}
}
