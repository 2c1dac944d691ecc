package proxy_test

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRedteam7PrivateManifestNotSharedWithOthers attacks the shared
// manifest fetches and the HEAD-first digest cache (de93c9c): alice may
// pull priv/team/**, bob only priv/public/**, anonymous clients nothing
// of team. While alice's fetch of team/app:v1 is held at the upstream,
// anonymous clients and bob ask for the same manifest (same Accept, so the
// same flight key), by every name that reaches it; once alice has it (in
// the digest cache, its blobs in the gate and the blob cache), they ask
// for it by digest, by tag (served from the digest cache after a HEAD),
// its blobs, and the same digest under the repository bob may read. None
// may get a 200 or a byte of it.
func TestRedteam7PrivateManifestNotSharedWithOthers(t *testing.T) {
	a := newAuthEnv(t, accessPolicy, htpasswdAuth)
	a.pushPriv("team/app", "v1")
	a.pushPriv("public/app", "v1")
	alice, bob := "alice:"+alicePassword, "bob:"+bobPassword

	// Hold the upstream's manifest answers for team/app until released.
	release := make(chan struct{})
	var held atomic.Int64
	inner := a.up.h
	a.up.mu.Lock()
	a.up.h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/team/app/manifests/") {
			held.Add(1)
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		inner.ServeHTTP(w, r)
	})
	a.up.mu.Unlock()

	accept := "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json"
	get := func(method, path, cred string) (int, http.Header, string) {
		req, err := http.NewRequestWithContext(t.Context(), method, a.authed.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", accept)
		if cred != "" {
			u, p, _ := strings.Cut(cred, ":")
			req.SetBasicAuth(u, p)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0, nil, ""
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, resp.Header, b.String()
	}

	type res struct {
		code int
		hdr  http.Header
		body string
	}
	aliceDone := make(chan res, 1)
	go func() {
		c, h, b := get(http.MethodGet, "/v2/team/app/manifests/v1", alice)
		aliceDone <- res{c, h, b}
	}()
	for deadline := time.Now().Add(10 * time.Second); held.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("alice's fetch never reached the upstream")
		}
	}
	names := []string{"/v2/team/app", "/v2/priv/team/app", "/v2/team/app?ns=priv", "/v2/Team/app", "/v2/team//app", "/v2/./team/app"}
	refs := func(name, ref string) string {
		if base, q, ok := strings.Cut(name, "?"); ok {
			return base + "/manifests/" + ref + "?" + q
		}
		return name + "/manifests/" + ref
	}
	var wg sync.WaitGroup
	check := func(who, method, path, cred, body string, code int) {
		if code == http.StatusOK || strings.Contains(body, `"layers"`) || strings.Contains(body, `"config"`) {
			t.Errorf("BYPASS: %s %s %s while alice's fetch was shared: HTTP %d, %d bytes: %.200s", who, method, path, code, len(body), body)
		}
	}
	for _, n := range names {
		for _, who := range []struct{ name, cred string }{{"anonymous", ""}, {"bob", bob}} {
			for _, m := range []string{http.MethodGet, http.MethodHead} {
				wg.Go(func() {
					p := refs(n, "v1")
					c, _, b := get(m, p, who.cred)
					check(who.name, m, p, who.cred, b, c)
				})
			}
		}
	}
	time.Sleep(200 * time.Millisecond) // the others join (or are refused) while alice's fetch is held
	close(release)
	wg.Wait()
	ar := <-aliceDone
	if ar.code != http.StatusOK {
		t.Fatalf("alice: HTTP %d %s", ar.code, ar.body)
	}
	d := ar.hdr.Get("Docker-Content-Digest")
	if d == "" {
		t.Fatal("alice's answer names no digest")
	}
	var layers []string
	for _, part := range strings.Split(ar.body, `"digest":"`)[1:] {
		layers = append(layers, part[:strings.IndexByte(part, '"')])
	}

	// After: the manifest is in the digest cache, its blobs in the gate
	// and the blob cache.
	for _, n := range names {
		for _, who := range []struct{ name, cred string }{{"anonymous", ""}, {"bob", bob}} {
			for _, m := range []string{http.MethodGet, http.MethodHead} {
				for _, ref := range []string{"v1", d} {
					p := refs(n, ref)
					c, _, b := get(m, p, who.cred)
					check(who.name, m, p, who.cred, b, c)
				}
				for _, l := range layers {
					p := strings.Replace(refs(n, l), "/manifests/", "/blobs/", 1)
					c, _, b := get(m, p, who.cred)
					check(who.name, m, p, who.cred, b, c)
				}
			}
		}
	}
	// Under the repository bob may read: neither alice's manifest by digest
	// nor her blobs.
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		p := "/v2/public/app/manifests/" + d
		if c, _, b := get(m, p, bob); c == http.StatusOK {
			t.Errorf("BYPASS: bob %s %s: HTTP 200 (alice's private manifest through a repository bob may read): %.200s", m, p, b)
		}
		for _, l := range layers {
			p := "/v2/public/app/blobs/" + l
			if c, _, _ := get(m, p, bob); c == http.StatusOK {
				t.Errorf("BYPASS: bob %s %s: HTTP 200 (alice's private blob through a repository bob may read)", m, p)
			}
		}
	}
	// The honest reads still work.
	if c, _, b := get(http.MethodGet, "/v2/team/app/manifests/"+d, alice); c != http.StatusOK {
		t.Fatalf("alice by digest: HTTP %d %s", c, b)
	}
	if c, _, b := get(http.MethodGet, "/v2/public/app/manifests/v1", bob); c != http.StatusOK {
		t.Fatalf("bob, public: HTTP %d %s", c, b)
	}
}
