package proxy_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"

	"github.com/notarize/docker-notarize/proxy"
	"github.com/notarize/docker-notarize/proxy/upstream"
)

// BenchmarkPullAuth is what client authentication and the blob gate cost a
// pull, in one run: GET of an allowed manifest by digest (the manifest
// cache, the decision, the gate's record) and GET of a cached 4 MiB layer
// (the gate's check, then the cache), with authentication off, htpasswd
// (bcrypt cost 10, remembered credentials) and a bearer token. Every case
// has the gate on: it is not optional; compare the blob rows with the warm
// blob rows of docs/BENCHMARKS.md for its cost.
//
//	go test -run '^$' -bench PullAuth ./proxy/
func BenchmarkPullAuth(b *testing.B) {
	dir := b.TempDir()
	writeKey(b, filepath.Join(dir, "release.pub"), newSigner(b))
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("signers: {release: {keys: [release.pub]}}\nrules: [{match: '**', mode: off}]\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	ev, err := proxy.LoadPolicy(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	up := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	b.Cleanup(up.Close)
	img, err := random.Image(4<<20, 1)
	if err != nil {
		b.Fatal(err)
	}
	ref, err := name.ParseReference(strings.TrimPrefix(up.URL, "http://")+"/app:v1", name.Insecure)
	if err != nil {
		b.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithContext(b.Context())); err != nil {
		b.Fatal(err)
	}
	md, err := img.Digest()
	if err != nil {
		b.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		b.Fatal(err)
	}
	ld, err := layers[0].Digest()
	if err != nil {
		b.Fatal(err)
	}
	size, err := layers[0].Size()
	if err != nil {
		b.Fatal(err)
	}

	issuer := newTokenIssuer(b, "bench-issuer")
	bundle := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(bundle, issuer.CAPEM, 0o600); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	token := issuer.Sign(b, tokenClaims{Issuer: "bench-issuer", Subject: "alice", Audience: "proxy",
		Expiration: now.Add(time.Hour).Unix(), NotBefore: now.Add(-time.Minute).Unix(), IssuedAt: now.Unix(),
		Access: []accessClaims{{Type: "repository", Name: "local/app", Actions: []string{"pull"}}}})
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.DefaultCost)
	if err != nil {
		b.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, append([]byte("alice:"), hash...), 0o600); err != nil {
		b.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		auth proxy.AuthConfig
		set  func(*http.Request)
	}{
		{"auth=off", proxy.AuthConfig{}, func(*http.Request) {}},
		{"auth=htpasswd", proxy.AuthConfig{Htpasswd: &proxy.HtpasswdAuth{Path: htpasswd}}, func(r *http.Request) { r.SetBasicAuth("alice", "pw") }},
		{"auth=token", proxy.AuthConfig{Token: &proxy.TokenAuth{Realm: "https://auth/token", Service: "proxy", Issuer: "bench-issuer", RootCertBundle: bundle}},
			func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }},
	} {
		srv, err := proxy.New(proxy.Config{DataDir: b.TempDir(), Policy: ev, Trust: noRecords{}, Auth: tc.auth,
			Upstreams: []upstream.Config{{Name: "local", URL: up.URL, Keychain: anonymous()}}})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = srv.Close(context.Background()) })
		hs := httptest.NewServer(srv.Handler())
		b.Cleanup(hs.Close)
		get := func(b *testing.B, path string) int64 {
			req, err := http.NewRequest(http.MethodGet, hs.URL+path, nil)
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
			tc.set(req)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			defer resp.Body.Close()
			n, err := io.Copy(io.Discard, resp.Body)
			if err != nil || resp.StatusCode != http.StatusOK {
				b.Fatalf("GET %s: HTTP %d, %v", path, resp.StatusCode, err)
			}
			return n
		}
		manifest, blob := "/v2/local/app/manifests/"+md.String(), "/v2/local/app/blobs/"+ld.String()
		get(b, manifest) // the gate records the layer
		get(b, blob)     // the cache fills
		waitCached(b, hs.URL, blob, tc.set)
		b.Run(tc.name+"/manifest", func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					get(b, manifest)
				}
			})
		})
		b.Run(tc.name+"/blob-4MiB", func(b *testing.B) {
			b.SetBytes(size)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if n := get(b, blob); n != size {
						b.Fatalf("read %d bytes, want %d", n, size)
					}
				}
			})
		})
	}
}

// waitCached waits until the proxy serves blob from its cache (the
// commit follows the last byte of the first download).
func waitCached(b *testing.B, base, blob string, set func(*http.Request)) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
		set(req)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), `notarize_proxy_blob_cache_blobs 1`) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatal(fmt.Sprintf("blob %s never committed to the cache", blob))
}
