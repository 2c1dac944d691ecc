package proxy_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/upstream"
)

// evil is an upstream whose answers each test scripts.
type evil struct {
	rec *recorder
	srv *httptest.Server
	h   atomic.Pointer[http.HandlerFunc]
}

func newEvil(t *testing.T) *evil {
	e := &evil{}
	e.rec = &recorder{h: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		if h := e.h.Load(); h != nil {
			(*h)(w, r)
			return
		}
		http.NotFound(w, r)
	})}
	e.srv = httptest.NewServer(e.rec)
	t.Cleanup(e.srv.Close)
	return e
}

func (e *evil) serve(h http.HandlerFunc) { e.h.Store(&h) }

func (e *evil) config() upstream.Config {
	return upstream.Config{Name: "evil", URL: e.srv.URL, Keychain: anonymous(), ResponseHeaderTimeout: 300 * time.Millisecond}
}

// manifestBytes returns a distinct, well-formed OCI manifest.
func manifestBytes(t testing.TB) []byte {
	t.Helper()
	nonce := make([]byte, 8)
	_, _ = rand.Read(nonce)
	return fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":2},"layers":[],"annotations":{"nonce":"%x"}}`,
		notarize.DigestOf([]byte("{}")), nonce)
}

func serveManifest(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	// A lying upstream would also lie in this header; the proxy ignores it.
	w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("0", 64))
	_, _ = w.Write(b)
}

func TestAdversarialManifests(t *testing.T) {
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	good, other := manifestBytes(t), manifestBytes(t)
	goodD := notarize.DigestOf(good)
	e.sign(e.release, goodD, notarize.StatusTrusted)
	e.sync()

	t.Run("wrong bytes for a digest", func(t *testing.T) {
		ev.serve(func(w http.ResponseWriter, r *http.Request) { serveManifest(w, other) })
		for range 2 {
			code, _, body := e.do(http.MethodGet, manifestPath("evil/a", string(goodD)), nil)
			c, msg := ociErr(t, body)
			if code != http.StatusBadGateway || c != "UNAVAILABLE" || !strings.Contains(msg, "does not match the requested digest") {
				t.Fatalf("%d %s %s", code, c, msg)
			}
		}
		if n := ev.rec.count("/v2/a/manifests/"); n != 2 {
			t.Fatalf("upstream asked %d times; a refused manifest must not be cached", n)
		}
	})
	t.Run("oversized manifest", func(t *testing.T) {
		big := append(append([]byte(`{"x":"`), bytes.Repeat([]byte("a"), 4<<20)...), []byte(`"}`)...)
		for _, chunked := range []bool{false, true} {
			ev.serve(func(w http.ResponseWriter, r *http.Request) {
				if !chunked {
					w.Header().Set("Content-Length", strconv.Itoa(len(big)))
				}
				_, _ = w.Write(big)
			})
			code, _, body := e.do(http.MethodGet, manifestPath("evil/big", "v1"), nil)
			if c, msg := ociErr(t, body); code != http.StatusBadGateway || c != "MANIFEST_INVALID" || !strings.Contains(msg, "too large") {
				t.Fatalf("chunked=%v: %d %s %s", chunked, code, c, msg)
			}
		}
	})
	t.Run("not json", func(t *testing.T) {
		ev.serve(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "<html>") })
		code, _, body := e.do(http.MethodGet, manifestPath("evil/html", "v1"), nil)
		if c, _ := ociErr(t, body); code != http.StatusBadGateway || c != "MANIFEST_INVALID" {
			t.Fatalf("%d %s", code, body)
		}
	})
	t.Run("5xx", func(t *testing.T) {
		ev.serve(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) })
		code, _, body := e.do(http.MethodGet, manifestPath("evil/err", "v1"), nil)
		if c, msg := ociErr(t, body); code != http.StatusBadGateway || c != "UNAVAILABLE" || !strings.Contains(msg, "HTTP 500") {
			t.Fatalf("%d %s %s", code, c, msg)
		}
		_, _, metrics := e.do(http.MethodGet, "/metrics", nil)
		if !strings.Contains(string(metrics), `notarize_proxy_upstream_errors_total{kind="status_5xx",upstream="evil"} 1`) {
			t.Fatal("5xx not counted")
		}
	})
	t.Run("timeout", func(t *testing.T) {
		ev.serve(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(10 * time.Second):
			case <-r.Context().Done():
			}
		})
		start := time.Now()
		code, _, body := e.do(http.MethodGet, manifestPath("evil/slow", "v1"), nil)
		if c, _ := ociErr(t, body); code/100 != 5 || c != "UNAVAILABLE" || time.Since(start) > 5*time.Second {
			t.Fatalf("%d %s after %v", code, body, time.Since(start))
		}
	})
	t.Run("tag moves between HEAD and GET", func(t *testing.T) {
		for _, tc := range []struct {
			name        string
			first, then []byte
			headOK      bool
		}{
			{"trusted then unsigned", good, other, true},
			{"unsigned then trusted", other, good, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				// The tag moves after the first GET (the proxy asks a tag
				// with HEAD before each GET: HEADs see where it is).
				var n atomic.Int32
				ev.serve(func(w http.ResponseWriter, r *http.Request) {
					if r.Method == http.MethodGet && n.Add(1) == 1 || r.Method != http.MethodGet && n.Load() == 0 {
						serveManifest(w, tc.first)
					} else {
						serveManifest(w, tc.then)
					}
				})
				repo := "evil/moving-" + strings.ReplaceAll(tc.name, " ", "-")
				code, hdr, body := e.do(http.MethodHead, manifestPath(repo, "latest"), nil)
				if tc.headOK {
					if code != http.StatusOK || hdr.Get("Docker-Content-Digest") != string(notarize.DigestOf(tc.first)) {
						t.Fatalf("HEAD: %d %s", code, hdr.Get("Docker-Content-Digest"))
					}
				} else if code != http.StatusForbidden {
					t.Fatalf("HEAD: %d, want 403", code)
				}
				code, hdr, body = e.do(http.MethodGet, manifestPath(repo, "latest"), nil)
				thenD := notarize.DigestOf(tc.then)
				if tc.headOK {
					// The GET got other bytes: they are decided on and denied, naming them.
					if _, msg := ociErr(t, body); code != http.StatusForbidden || !strings.Contains(msg, string(thenD)) {
						t.Fatalf("GET: %d %s", code, body)
					}
					return
				}
				if code != http.StatusOK || !bytes.Equal(body, tc.then) || hdr.Get("Docker-Content-Digest") != string(thenD) {
					t.Fatalf("GET: %d digest %s body %s", code, hdr.Get("Docker-Content-Digest"), notarize.DigestOf(body))
				}
			})
		}
	})
	t.Run("lying digest header ignored", func(t *testing.T) {
		ev.serve(func(w http.ResponseWriter, r *http.Request) { serveManifest(w, good) })
		code, hdr, body := e.do(http.MethodGet, manifestPath("evil/hdr", "v1"), nil)
		if code != http.StatusOK || hdr.Get("Docker-Content-Digest") != string(goodD) || !bytes.Equal(body, good) {
			t.Fatalf("%d %s", code, hdr.Get("Docker-Content-Digest"))
		}
	})
}

func randomBlob(n int) ([]byte, notarize.Digest) {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b, notarize.DigestOf(b)
}

// readAll reads a whole answer and reports whether it was complete.
func getBlob(t *testing.T, url string, hdr http.Header) (int, []byte, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func TestAdversarialBlobs(t *testing.T) {
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	blobURL := func(d notarize.Digest) string { return e.proxy.URL + "/v2/evil/b/blobs/" + string(d) }

	t.Run("truncated", func(t *testing.T) {
		blob, d := randomBlob(1 << 20)
		admit(t, e, ev, "b", d)
		ev.serve(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
			_, _ = w.Write(blob[:len(blob)/2])
			panic(http.ErrAbortHandler)
		})
		for range 2 {
			code, got, err := getBlob(t, blobURL(d), nil)
			if err == nil && code == http.StatusOK && bytes.Equal(got, blob) {
				t.Fatal("truncated blob served as complete")
			}
			if err == nil && code == http.StatusOK {
				t.Fatalf("a short body (%d of %d bytes) ended cleanly", len(got), len(blob))
			}
		}
		if n := ev.rec.count(string(d)); n != 2 {
			t.Fatalf("upstream asked %d times; a failed blob must not be cached", n)
		}
	})
	t.Run("wrong bytes, right length", func(t *testing.T) {
		blob, d := randomBlob(1 << 20)
		bad := bytes.Clone(blob)
		bad[len(bad)-1] ^= 1
		admit(t, e, ev, "b", d)
		ev.serve(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(bad)))
			_, _ = w.Write(bad)
		})
		code, got, err := getBlob(t, blobURL(d), nil)
		if err == nil {
			t.Fatalf("wrong blob answered cleanly: %d, %d bytes", code, len(got))
		}
		if len(got) >= len(blob) {
			t.Fatalf("the last byte of an unverified blob was sent (%d bytes)", len(got))
		}
		if n := ev.rec.count(string(d)); n != 1 {
			t.Fatalf("upstream asked %d times", n)
		}
		if code, _, _ := getBlob(t, blobURL(d), nil); code == http.StatusOK && ev.rec.count(string(d)) != 2 {
			t.Fatal("a wrong blob was cached")
		}
	})
	t.Run("unknown", func(t *testing.T) {
		_, d := randomBlob(10)
		admit(t, e, ev, "b", d)
		ev.serve(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"nope"}]}`)
		})
		code, _, body := e.do(http.MethodGet, "/v2/evil/b/blobs/"+string(d), nil)
		if c, _ := ociErr(t, body); code != http.StatusNotFound || c != "BLOB_UNKNOWN" {
			t.Fatalf("%d %s", code, body)
		}
	})
	t.Run("parallel pulls fetch once", func(t *testing.T) {
		blob, d := randomBlob(4 << 20)
		admit(t, e, ev, "b", d)
		ev.serve(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
			for i := 0; i < len(blob); i += 256 << 10 {
				_, _ = w.Write(blob[i : i+256<<10])
				w.(http.Flusher).Flush()
				time.Sleep(5 * time.Millisecond)
			}
		})
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, got, err := getBlob(t, blobURL(d), nil)
				if err != nil || code != http.StatusOK || !bytes.Equal(got, blob) {
					errs <- fmt.Errorf("code %d, %d bytes, %v", code, len(got), err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if n := ev.rec.count(string(d)); n != 1 {
			t.Fatalf("upstream asked %d times for one blob pulled 8 times in parallel", n)
		}
		// Now cached: served without upstream, ranges too.
		code, got, err := getBlob(t, blobURL(d), http.Header{"Range": {"bytes=10-19"}})
		if err != nil || code != http.StatusPartialContent || !bytes.Equal(got, blob[10:20]) {
			t.Fatalf("cached range: %d %v", code, err)
		}
		if n := ev.rec.count(string(d)); n != 1 {
			t.Fatalf("a cached blob went upstream (%d)", n)
		}
	})
	t.Run("range of an uncached blob", func(t *testing.T) {
		blob, d := randomBlob(100_000)
		admit(t, e, ev, "b", d)
		ev.serve(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Range") != "" {
				t.Error("range passed upstream: the proxy must verify the whole blob")
			}
			_, _ = w.Write(blob)
		})
		code, got, err := getBlob(t, blobURL(d), http.Header{"Range": {"bytes=99990-"}})
		if err != nil || code != http.StatusPartialContent || !bytes.Equal(got, blob[99990:]) {
			t.Fatalf("%d %d bytes %v", code, len(got), err)
		}
	})
}

// staticKeychain hands out fixed Basic credentials for every registry.
type staticKeychain struct{}

func (staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return authn.FromConfig(authn.AuthConfig{Username: "robot", Password: "s3cret"}), nil
}

// authRecorder records the Authorization headers a server received.
type authRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (a *authRecorder) add(r *http.Request) {
	a.mu.Lock()
	a.seen = append(a.seen, r.Header.Get("Authorization"))
	a.mu.Unlock()
}

func (a *authRecorder) any() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, s := range a.seen {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (a *authRecorder) calls() int { a.mu.Lock(); defer a.mu.Unlock(); return len(a.seen) }

func TestCredentialsStayOnTheUpstream(t *testing.T) {
	tokenAuth, cdnAuth, regAuth := &authRecorder{}, &authRecorder{}, &authRecorder{}
	token := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokenAuth.add(r)
		_, _ = io.WriteString(w, `{"token":"tok"}`)
	}))
	defer token.Close()
	blob, blobD := randomBlob(1000)
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cdnAuth.add(r)
		_, _ = w.Write(blob)
	}))
	defer cdn.Close()
	// Other hosts than the registry's 127.0.0.1: "localhost".
	_, tokenPort, _ := net.SplitHostPort(strings.TrimPrefix(token.URL, "http://"))
	_, cdnPort, _ := net.SplitHostPort(strings.TrimPrefix(cdn.URL, "http://"))
	realm := "http://localhost:" + tokenPort + "/token"
	m := manifestWithLayers(t, blobD) // the gate serves only blobs of a manifest served
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		regAuth.add(r)
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service="reg",scope="repository:app:pull"`, realm))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch {
		case strings.Contains(r.URL.Path, "/manifests/"):
			serveManifest(w, m)
		case strings.Contains(r.URL.Path, "/blobs/"):
			http.Redirect(w, r, "http://localhost:"+cdnPort+"/cdn/"+blobD.Hex(), http.StatusTemporaryRedirect)
		}
	}))
	defer reg.Close()

	for _, tc := range []struct {
		name          string
		authHosts     []string
		wantTokenAuth bool
	}{
		{"realm on another host gets nothing", nil, false},
		{"realm on a configured auth host gets the credentials", []string{"localhost:" + tokenPort}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tokenAuth.seen, cdnAuth.seen, regAuth.seen = nil, nil, nil
			e := newEnv(t, withUpstream(upstream.Config{Name: "authy", URL: reg.URL, Keychain: staticKeychain{}, AuthHosts: tc.authHosts}))
			e.sign(e.release, notarize.DigestOf(m), notarize.StatusTrusted)
			e.sync()
			if code, _, body := e.do(http.MethodGet, manifestPath("authy/app", "v1"), nil); code != http.StatusOK {
				t.Fatalf("manifest: %d %s", code, body)
			}
			code, got, err := getBlob(t, e.proxy.URL+"/v2/authy/app/blobs/"+string(blobD), nil)
			if err != nil || code != http.StatusOK || !bytes.Equal(got, blob) {
				t.Fatalf("blob through a redirect: %d %v", code, err)
			}
			if tokenAuth.calls() == 0 || cdnAuth.calls() == 0 {
				t.Fatalf("token server called %d times, CDN %d times", tokenAuth.calls(), cdnAuth.calls())
			}
			if got := tokenAuth.any(); (len(got) > 0) != tc.wantTokenAuth {
				t.Fatalf("token server received Authorization %q; want any: %v", got, tc.wantTokenAuth)
			}
			if got := cdnAuth.any(); len(got) > 0 {
				t.Fatalf("CDN received Authorization %q", got)
			}
			if !contains(regAuth.any(), "Bearer tok") {
				t.Fatalf("registry never received the token: %q", regAuth.any())
			}
		})
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestBadNamesAndNsMakeNoRequest(t *testing.T) {
	canary := &recorder{h: http.NotFoundHandler()}
	cs := httptest.NewServer(canary)
	defer cs.Close()
	canaryHost := strings.TrimPrefix(cs.URL, "http://")
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	hex64 := strings.Repeat("a", 64)
	for _, tc := range []struct {
		path string
		code int
		oci  string
	}{
		{manifestPath("app", "v1") + "?ns=evil.example.com", 404, "NAME_UNKNOWN"},
		{manifestPath("app", "v1") + "?ns=" + canaryHost, 404, "NAME_UNKNOWN"},
		{manifestPath("app", "v1") + "?ns=bad%20host", 404, "NAME_UNKNOWN"},
		{manifestPath("app", "v1") + "?ns=" + strings.Repeat("a", 300), 404, "NAME_UNKNOWN"},
		{manifestPath(canaryHost+"/app", "v1"), 404, "NAME_UNKNOWN"},
		{manifestPath("evil.example.com/app", "v1"), 404, "NAME_UNKNOWN"},
		{manifestPath("localhost/app", "v1"), 404, "NAME_UNKNOWN"},
		{"/v2/" + canaryHost + "/app/blobs/sha256:" + hex64, 404, "NAME_UNKNOWN"},
		{"/v2/" + canaryHost + "/app/tags/list", 404, "NAME_UNKNOWN"},
		{manifestPath("evil/UPPER", "v1"), 400, "NAME_INVALID"},
		{manifestPath("evil/a..b", "v1"), 400, "NAME_INVALID"},
		{manifestPath("evil/-a", "v1"), 400, "NAME_INVALID"},
		{manifestPath("evil/"+strings.Repeat("a", 300), "v1"), 400, "NAME_INVALID"},
		{manifestPath("evil/app", "-tag"), 400, "TAG_INVALID"},
		{manifestPath("evil/app", "sha512:"+hex64+hex64), 400, "DIGEST_INVALID"},
		{manifestPath("evil/app", "sha256:"+strings.Repeat("A", 64)), 400, "DIGEST_INVALID"},
		{"/v2/evil/app/blobs/sha256:abc", 400, "DIGEST_INVALID"},
		{"/v2/evil/app/referrers/latest", 400, "DIGEST_INVALID"},
		{"/v2/evil/app/nothing/here", 404, "UNSUPPORTED"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			code, _, body := e.do(http.MethodGet, tc.path, nil)
			if c, _ := ociErr(t, body); code != tc.code || c != tc.oci {
				t.Fatalf("%d %s, want %d %s", code, body, tc.code, tc.oci)
			}
		})
	}
	if n := len(canary.all()); n != 0 {
		t.Fatalf("an unconfigured host received %d requests", n)
	}
	if n := len(ev.rec.all()); n != 0 {
		t.Fatalf("the upstream received %d requests for bad names", n)
	}
}

// identityKeychain holds an OAuth2 refresh token (as ACR and some credential
// helpers store): go-containerregistry sends it in a POST form to the realm.
type identityKeychain struct{}

func (identityKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return authn.FromConfig(authn.AuthConfig{Username: "<token>", IdentityToken: "refresh-s3cret"}), nil
}

// TestRefreshTokenStaysOnTheUpstream: a token realm on another host never
// receives the refresh token, in a header or in a form body; the pull fails
// closed instead.
func TestRefreshTokenStaysOnTheUpstream(t *testing.T) {
	var mu sync.Mutex
	var leaked []string
	token := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		if strings.Contains(string(b), "refresh-s3cret") || r.Header.Get("Authorization") != "" {
			leaked = append(leaked, r.Method+" "+string(b)+" "+r.Header.Get("Authorization"))
		}
		mu.Unlock()
		_, _ = io.WriteString(w, `{"token":"tok"}`)
	}))
	defer token.Close()
	_, tokenPort, _ := net.SplitHostPort(strings.TrimPrefix(token.URL, "http://"))
	realm := "http://localhost:" + tokenPort + "/token" // another host than the registry's 127.0.0.1
	m := manifestBytes(t)
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service="reg",scope="repository:app:pull"`, realm))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		serveManifest(w, m)
	}))
	defer reg.Close()

	e := newEnv(t, withUpstream(upstream.Config{Name: "oauth", URL: reg.URL, Keychain: identityKeychain{}}))
	e.sign(e.release, notarize.DigestOf(m), notarize.StatusTrusted)
	e.sync()
	if code, _, _ := e.do(http.MethodGet, manifestPath("oauth/app", "v1"), nil); code == http.StatusOK {
		t.Log("served through an anonymous token")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(leaked) > 0 {
		t.Fatalf("the token server on another host received credentials: %q", leaked)
	}
}
