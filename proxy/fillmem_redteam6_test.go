package proxy_test

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// Red team 6: memory of concurrent cold blob fills. Each fill keeps up to
// its memory window (several MiB) while it downloads, and nothing bounds
// how many fills run at once. Under an audit rule (any image is served, as
// while a policy is rolled out), a client that pulls one manifest listing
// many layers and asks for all of them at once from a slow upstream makes
// the proxy hold a window per layer. The test fails when 64 concurrent
// cold fills hold more than 128 MiB.
func TestRedteam6ConcurrentFillsHoldMemory(t *testing.T) {
	ev := newEvil(t)
	policy := strings.Replace(testPolicy, "rules:\n", "rules:\n  - match: \"evil/**\"\n    require: [release]\n    mode: audit\n", 1)
	e := newEnv(t, withUpstream(ev.config()), func(c *envConfig) { c.policy = policy })
	const n, size, sent = 64, 8 << 20, 6 << 20
	blobs := map[string][]byte{}
	var layers []string
	for range n {
		b := make([]byte, size)
		_, _ = rand.Read(b)
		d := notarize.DigestOf(b)
		blobs[string(d)] = b
		layers = append(layers, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}`, d, size))
	}
	manifest := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":2},"layers":[%s]}`,
		notarize.DigestOf([]byte("{}")), strings.Join(layers, ",")))
	var arrived sync.WaitGroup
	arrived.Add(n)
	release := make(chan struct{})
	ev.serve(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/manifests/") {
			serveManifest(w, manifest)
			return
		}
		i := strings.LastIndex(r.URL.Path, "/")
		b, ok := blobs[r.URL.Path[i+1:]]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		_, _ = w.Write(b[:sent])
		w.(http.Flusher).Flush()
		arrived.Done()
		select { // a slow upstream: the rest comes later
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(b[sent:])
	})
	if code, _, body := e.do(http.MethodGet, manifestPath("evil/many", "v1"), nil); code != http.StatusOK {
		t.Fatalf("manifest under audit: %d %s", code, body)
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	var resps sync.Map
	for d := range blobs {
		wg.Go(func() { // a client that asks and does not read
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.proxy.URL+"/v2/evil/many/blobs/"+d, nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resps.Store(d, resp)
			}
		})
	}
	done := make(chan struct{})
	go func() { arrived.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		close(release)
		t.Fatal("the upstream did not see the fills at once")
	}
	time.Sleep(time.Second) // the fills read what was sent
	runtime.GC()
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	close(release)
	wg.Wait()
	resps.Range(func(_, v any) bool { _ = v.(*http.Response).Body.Close(); return true })
	held := int64(during.HeapInuse) - int64(before.HeapInuse)
	t.Logf("%d concurrent cold fills of %d MiB (%d MiB sent each): %d MiB of heap held", n, size>>20, sent>>20, held>>20)
	if held > 128<<20 {
		t.Errorf("DoS (memory): %d concurrent cold fills hold %d MiB (no bound on fills at once)", n, held>>20)
	}
}
