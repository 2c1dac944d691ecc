package plugin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/notarize/docker-notarize/notarize"
)

// testRegistry is an in-process registry on loopback holding one image
// (app:v1) and one index of two images (multi:v1).
type testRegistry struct {
	host   string
	client http.RoundTripper // trusts the registry's certificate, if it has one
	image  v1.Image
	index  v1.ImageIndex
}

func newTestRegistry(t *testing.T, wrap func(http.Handler) http.Handler) *testRegistry {
	t.Helper()
	return newTestRegistryOn(t, wrap, false)
}

// newTestRegistryOn is newTestRegistry, serving https with httptest's
// certificate when tls is set (client: a transport that trusts it).
func newTestRegistryOn(t *testing.T, wrap func(http.Handler) http.Handler, tls bool) *testRegistry {
	t.Helper()
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewUnstartedServer(h)
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	r := &testRegistry{host: srv.Listener.Addr().String(), client: srv.Client().Transport}
	src := rand.NewSource(1)
	var err error
	if r.image, err = random.Image(512, 1, random.WithSource(src)); err != nil {
		t.Fatal(err)
	}
	if r.index, err = random.Index(256, 1, 2, random.WithSource(src)); err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(mustRef(t, r.host+"/app:v1"), r.image, remote.WithContext(t.Context()), remote.WithTransport(r.client)); err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(mustRef(t, r.host+"/multi:v1"), r.index, remote.WithContext(t.Context()), remote.WithTransport(r.client)); err != nil {
		t.Fatal(err)
	}
	return r
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func digestOf(t *testing.T, d interface{ Digest() (v1.Hash, error) }) notarize.Digest {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return notarize.Digest(h.String())
}

func newTestResolver(t *testing.T, base http.RoundTripper, insecure ...string) *Resolver {
	t.Helper()
	r, err := NewResolver(authn.NewMultiKeychain(), base, insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestResolveImage(t *testing.T) {
	reg := newTestRegistry(t, nil)
	res := newTestResolver(t, nil)
	imgDigest := digestOf(t, reg.image)
	idxDigest := digestOf(t, reg.index)
	idx, err := reg.index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		arg       string
		recursive bool
		want      Subject
		children  []notarize.Digest
	}{
		{arg: reg.host + "/app:v1", want: Subject{Name: reg.host + "/app:v1", Digest: imgDigest, Kind: notarize.KindImage, MediaType: mediaTypeDockerManifest}},
		{arg: reg.host + "/app@" + string(imgDigest), want: Subject{Name: reg.host + "/app@" + string(imgDigest), Digest: imgDigest, Kind: notarize.KindImage, MediaType: mediaTypeDockerManifest}},
		{arg: reg.host + "/multi:v1", want: Subject{Name: reg.host + "/multi:v1", Digest: idxDigest, Kind: notarize.KindIndex, MediaType: mediaTypeOCIIndex}},
		{arg: reg.host + "/multi:v1", recursive: true, want: Subject{Name: reg.host + "/multi:v1", Digest: idxDigest, Kind: notarize.KindIndex, MediaType: mediaTypeOCIIndex},
			children: []notarize.Digest{notarize.Digest(idx.Manifests[0].Digest.String()), notarize.Digest(idx.Manifests[1].Digest.String())}},
		{arg: reg.host + "/app:v1", recursive: true, want: Subject{Name: reg.host + "/app:v1", Digest: imgDigest, Kind: notarize.KindImage, MediaType: mediaTypeDockerManifest}},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			got, err := res.Resolve(t.Context(), tc.arg, tc.recursive)
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != tc.want.Name || got.Digest != tc.want.Digest || got.Kind != tc.want.Kind || got.MediaType != tc.want.MediaType || got.Size <= 0 {
				t.Fatalf("Resolve = %+v, want %+v", got, tc.want)
			}
			if len(got.Manifests) != len(tc.children) {
				t.Fatalf("%d manifests, want %d", len(got.Manifests), len(tc.children))
			}
			for i, c := range got.Manifests {
				if c.Digest != tc.children[i] || c.Kind != notarize.KindImage || c.Name != reg.host+"/multi@"+string(tc.children[i]) {
					t.Errorf("manifest %d = %+v, want digest %s", i, c, tc.children[i])
				}
			}
		})
	}
}

func TestResolveRefusesLyingRegistry(t *testing.T) {
	other := notarize.DigestOf([]byte("something else"))
	var target string // the digest the lying proxy swaps in, set once the registry is filled
	for _, tc := range []struct {
		name string
		wrap func(http.Handler) http.Handler
		arg  func(reg *testRegistry) string
	}{
		{
			name: "header disagrees with content",
			wrap: func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/") {
						h.ServeHTTP(headerRewriter{w, string(other)}, r)
						return
					}
					h.ServeHTTP(w, r)
				})
			},
			arg: func(reg *testRegistry) string { return reg.host + "/app:v1" },
		},
		{
			name: "content is not the digest asked for",
			wrap: func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if target != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/manifests/"+target) {
						r.URL.Path = strings.Replace(r.URL.Path, "/app/manifests/"+target, "/multi/manifests/v1", 1)
						h.ServeHTTP(headerRewriter{w, ""}, r)
						return
					}
					h.ServeHTTP(w, r)
				})
			},
			arg: func(reg *testRegistry) string {
				target = string(digestOf(t, reg.image))
				return reg.host + "/app@" + target
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := newTestRegistry(t, tc.wrap)
			_, err := newTestResolver(t, nil).Resolve(t.Context(), tc.arg(reg), false)
			if !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("Resolve = %v, want ErrDigestMismatch", err)
			}
		})
	}
}

// headerRewriter replaces (or, with "", removes) Docker-Content-Digest.
type headerRewriter struct {
	http.ResponseWriter
	digest string
}

func (h headerRewriter) WriteHeader(code int) {
	h.Header().Del("Docker-Content-Digest")
	if h.digest != "" {
		h.Header().Set("Docker-Content-Digest", h.digest)
	}
	h.ResponseWriter.WriteHeader(code)
}

func (h headerRewriter) Write(b []byte) (int, error) {
	if h.Header().Get("Docker-Content-Digest") != h.digest {
		h.WriteHeader(http.StatusOK)
	}
	return h.ResponseWriter.Write(b)
}

func TestResolveFile(t *testing.T) {
	dir := t.TempDir()
	content := []byte("any artifact\n")
	path := filepath.Join(dir, "tool.tar.gz")
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	res := newTestResolver(t, nil)

	got, err := res.Resolve(t.Context(), "file:"+path, false)
	if err != nil {
		t.Fatal(err)
	}
	want := Subject{Name: "tool.tar.gz", Digest: notarize.Digest("sha256:" + hex.EncodeToString(sum[:])), Size: int64(len(content)), Kind: notarize.KindFile}
	if got.Name != want.Name || got.Digest != want.Digest || got.Size != want.Size || got.Kind != want.Kind || got.MediaType != "" {
		t.Fatalf("Resolve = %+v, want %+v", got, want)
	}
	for _, bad := range []string{"file:", "file:" + filepath.Join(dir, "missing"), "file:" + dir} {
		if _, err := res.Resolve(t.Context(), bad, false); err == nil {
			t.Errorf("Resolve(%q) succeeded", bad)
		}
	}
}

// fakeNet is a base transport standing in for the network: it serves plain
// http from h, fails every TLS attempt, and records what it was asked.
type fakeNet struct {
	h      http.Handler
	mu     sync.Mutex
	served []string
}

func (f *fakeNet) RoundTrip(req *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.served = append(f.served, req.URL.Scheme+"://"+req.URL.Host)
	f.mu.Unlock()
	if req.URL.Scheme != "http" {
		return nil, errors.New("fakenet: no TLS here")
	}
	sreq := req.Clone(req.Context())
	if sreq.Body == nil {
		sreq.Body = http.NoBody
	}
	sreq.Host = req.URL.Host
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, sreq)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

func (f *fakeNet) sawPlain(host string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.served {
		if s == "http://"+host {
			return true
		}
	}
	return false
}

func TestResolvePlainHTTPOnlyWhereAllowed(t *testing.T) {
	// A registry that answers plain http on a private address: go-containerregistry
	// alone would use it (RFC 1918); the guard must not, unless named insecure.
	const private = "192.168.77.7:5000"
	src := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	img, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(mustRef(t, private+"/app:v1"), img, remote.WithTransport(&fakeNet{h: src}), remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}

	t.Run("refused", func(t *testing.T) {
		net := &fakeNet{h: src}
		_, err := newTestResolver(t, net).Resolve(t.Context(), private+"/app:v1", false)
		if !errors.Is(err, ErrPlainHTTP) {
			t.Fatalf("Resolve = %v, want ErrPlainHTTP", err)
		}
		if net.sawPlain(private) {
			t.Fatal("a plain http request reached the private registry")
		}
	})
	for _, insecure := range []string{private, "192.168.77.7"} {
		t.Run("allowed by --insecure-registry "+insecure, func(t *testing.T) {
			got, err := newTestResolver(t, &fakeNet{h: src}, insecure).Resolve(t.Context(), private+"/app:v1", false)
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest != digestOf(t, img) {
				t.Fatalf("digest %s, want %s", got.Digest, digestOf(t, img))
			}
		})
	}
	t.Run("other port not allowed", func(t *testing.T) {
		_, err := newTestResolver(t, &fakeNet{h: src}, "192.168.77.7:6000").Resolve(t.Context(), private+"/app:v1", false)
		if !errors.Is(err, ErrPlainHTTP) {
			t.Fatalf("Resolve = %v, want ErrPlainHTTP", err)
		}
	})
	t.Run("redirect from loopback to a private host", func(t *testing.T) {
		net := &fakeNet{h: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Host == "127.0.0.1:5000" && strings.Contains(r.URL.Path, "/manifests/") {
				http.Redirect(w, r, "http://"+private+r.URL.Path, http.StatusTemporaryRedirect)
				return
			}
			src.ServeHTTP(w, r)
		})}
		_, err := newTestResolver(t, net).Resolve(t.Context(), "127.0.0.1:5000/app:v1", false)
		if !errors.Is(err, ErrPlainHTTP) {
			t.Fatalf("Resolve = %v, want ErrPlainHTTP", err)
		}
		if net.sawPlain(private) {
			t.Fatal("the redirect reached the private registry over plain http")
		}
	})
}

func TestPlainHTTPGuard(t *testing.T) {
	for _, tc := range []struct {
		url      string
		insecure []string
		ok       bool
	}{
		{url: "https://registry.example.com/v2/", ok: true},
		{url: "https://10.0.0.1/v2/", ok: true},
		{url: "http://localhost:5000/v2/", ok: true},
		{url: "http://127.0.0.1:5000/v2/", ok: true},
		{url: "http://127.1.2.3/v2/", ok: true},
		{url: "http://[::1]:5000/v2/", ok: true},
		{url: "http://10.0.0.1/v2/"},
		{url: "http://172.16.0.1:5000/v2/"},
		{url: "http://192.168.0.1:5000/v2/"},
		{url: "http://registry.example.com/v2/"},
		{url: "http://localhost.example.com/v2/"},
		{url: "http://[fd00::1]:5000/v2/"},
		{url: "ftp://127.0.0.1/v2/"},
		{url: "http://reg.internal:5000/v2/", insecure: []string{"reg.internal"}, ok: true},
		{url: "http://REG.internal:5000/v2/", insecure: []string{"reg.INTERNAL:5000"}, ok: true},
		{url: "http://reg.internal:5001/v2/", insecure: []string{"reg.internal:5000"}},
		{url: "http://[fd00::1]:5000/v2/", insecure: []string{"[fd00::1]:5000"}, ok: true},
		{url: "http://[fd00::1]:5000/v2/", insecure: []string{"fd00::1"}, ok: true},
	} {
		t.Run(tc.url, func(t *testing.T) {
			base := &fakeNet{h: http.NotFoundHandler()}
			g, err := newPlainHTTPGuard(base, tc.insecure)
			if err != nil {
				t.Fatal(err)
			}
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, tc.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = g.RoundTrip(req)
			refused := errors.Is(err, ErrPlainHTTP)
			if refused == tc.ok {
				t.Fatalf("RoundTrip(%s) = %v, want allowed=%v", tc.url, err, tc.ok)
			}
			if refused && len(base.served) != 0 {
				t.Fatalf("refused request reached the transport: %v", base.served)
			}
		})
	}
	for _, bad := range []string{"", "http://reg", "reg/path", "user@reg", ":5000"} {
		if _, err := newPlainHTTPGuard(nil, []string{bad}); err == nil {
			t.Errorf("newPlainHTTPGuard(%q) accepted", bad)
		}
	}
}

// TestResolveTimesOut: a registry that accepts the request and never answers
// must not hang verify or sign.
func TestResolveTimesOut(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stall func(path string) bool
	}{
		{"ping", func(p string) bool { return p == "/v2/" }},
		{"manifest", func(p string) bool { return strings.HasSuffix(p, "/manifests/v1") }},
		{"index child", func(p string) bool { return strings.Contains(p, "/manifests/sha256:") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stalling atomic.Bool
			reg := newTestRegistry(t, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if stalling.Load() && tc.stall(r.URL.Path) {
						<-r.Context().Done()
						return
					}
					h.ServeHTTP(w, r)
				})
			})
			stalling.Store(true)
			res := newTestResolver(t, nil)
			if tc.name == "ping" { // only a resolver with credentials pings (firstManifest)
				res.keychain = staticKeychain{&authn.Basic{Username: "u", Password: "p"}}
			}
			res.timeout = 200 * time.Millisecond
			start := time.Now()
			_, err := res.Resolve(t.Context(), reg.host+"/multi:v1", true)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Resolve = %v, want a deadline error", err)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Fatalf("Resolve took %v", took)
			}
		})
	}
}

func TestDigestOnly(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		arg      string
		ok       bool
		wantName string
	}{
		{"registry.example/app@" + d, true, "registry.example/app"},
		{"app@" + d, true, "index.docker.io/library/app"},
		{"registry.example/app:v1", false, ""},
		{"registry.example/app:v1@" + d, true, "registry.example/app"},
		{"file:/etc/hostname", false, ""},
		{"registry.example/app@sha256:abc", false, ""},
		{"registry.example/app@sha512:" + strings.Repeat("ab", 64), false, ""},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			s, ok := DigestOnly(tc.arg)
			if ok != tc.ok {
				t.Fatalf("DigestOnly(%q) ok = %v, want %v", tc.arg, ok, tc.ok)
			}
			if ok && (s.Name != tc.wantName+"@"+d || string(s.Digest) != d) {
				t.Fatalf("DigestOnly(%q) = %+v, want name %q digest %s", tc.arg, s, tc.wantName, d)
			}
		})
	}
}
