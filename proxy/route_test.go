package proxy

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/replica"
	"github.com/notarize/docker-notarize/proxy/upstream"
)

// hostRecorder is an upstream transport that records the hosts asked and
// answers 404 without any network.
type hostRecorder struct {
	mu    sync.Mutex
	hosts map[string]int
}

func (h *hostRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	h.hosts[r.URL.Host]++
	h.mu.Unlock()
	status := http.StatusNotFound
	if r.URL.Path == "/v2/" {
		status = http.StatusOK
	}
	return &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
}

func testUpstreams(t testing.TB, rt http.RoundTripper) []*upstream.Registry {
	t.Helper()
	var ups []*upstream.Registry
	for _, c := range []upstream.Config{
		{Name: "docker.io", URL: "https://registry-1.docker.io"},
		{Name: "ghcr.io", URL: "https://ghcr.io"},
		{Name: "local", URL: "http://127.0.0.1:5001"},
	} {
		c.Transport = rt
		u, err := upstream.New(c)
		if err != nil {
			t.Fatal(err)
		}
		ups = append(ups, u)
	}
	return ups
}

func TestResolve(t *testing.T) {
	r := newRouter(testUpstreams(t, &hostRecorder{hosts: map[string]int{}}), "docker.io")
	for _, tc := range []struct {
		name, ns string
		want     string // "UPSTREAM/REPO" or "" for an error
	}{
		{"nginx", "", "docker.io/library/nginx"},
		{"library/nginx", "", "docker.io/library/nginx"},
		{"acme/app", "", "docker.io/acme/app"},
		{"docker.io/nginx", "", "docker.io/library/nginx"},
		{"ghcr.io/acme/app", "", "ghcr.io/acme/app"},
		{"local/a/b/c", "", "local/a/b/c"},
		{"library/nginx", "docker.io", "docker.io/library/nginx"},
		{"library/nginx", "registry-1.docker.io", "docker.io/library/nginx"},
		{"acme/app", "ghcr.io", "ghcr.io/acme/app"},
		{"acme/app", "GHCR.IO", "ghcr.io/acme/app"},
		{"app", "127.0.0.1:5001", "local/app"},
		{"local/app", "127.0.0.1:5001", "local/app"},
		{"ghcr.io/acme/app", "ghcr.io", "ghcr.io/acme/app"},
		{"docker.io/library/nginx", "docker.io", "docker.io/library/nginx"},
		{"app", "127.0.0.1:5002", ""},
		{"app", "quay.io", ""},
		{"quay.io/app", "", ""},
		{"localhost/app", "", ""},
		{"127.0.0.1:5001/app", "", ""},
		{"Upper/app", "", ""},
		{"ghcr.io", "", "docker.io/library/ghcr.io"}, // one segment is a repository name
		{"a//b", "", ""},
		{"", "", ""},
	} {
		t.Run(tc.name+" ns="+tc.ns, func(t *testing.T) {
			got, err := r.resolve(tc.name, tc.ns)
			if tc.want == "" {
				var re *routeError
				if !errors.As(err, &re) {
					t.Fatalf("resolve = %v, %v; want a route error", got, err)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("resolve = %v, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func FuzzResolve(f *testing.F) {
	r := newRouter(testUpstreams(f, &hostRecorder{hosts: map[string]int{}}), "docker.io")
	for _, s := range []string{"nginx", "ghcr.io/a/b", "local/x", "quay.io/x", "a/b/c"} {
		f.Add(s, "")
		f.Add(s, "ghcr.io")
	}
	f.Add("x", "127.0.0.1:5001")
	f.Fuzz(func(t *testing.T, name, ns string) {
		got, err := r.resolve(name, ns)
		if err != nil {
			var re *routeError
			if !errors.As(err, &re) {
				t.Fatalf("resolve error %v is not a route error", err)
			}
			return
		}
		if r.byName[got.up.Name()] != got.up {
			t.Fatalf("resolved to an unconfigured upstream %s", got.up.Name())
		}
		if validRepo(got.repo) != nil || len(got.repo) > maxNameLen+len("library/") {
			t.Fatalf("resolved to an invalid repository %q", got.repo)
		}
		if ns != "" {
			lns := strings.ToLower(ns)
			if ns != got.up.Name() && lns != strings.ToLower(got.up.Host()) && !(got.up.IsDockerHub() && (lns == "docker.io" || lns == "index.docker.io")) {
				t.Fatalf("ns %q resolved to %s (%s)", ns, got.up.Name(), got.up.Host())
			}
		} else if first, _, ok := strings.Cut(name, "/"); ok && looksLikeHost(first) && r.byName[first] == nil {
			t.Fatalf("name %q with an unknown registry prefix went to %s", name, got.up.Name())
		}
	})
}

type noTrust struct{}

func (noTrust) Records(context.Context, notarize.Digest) ([]notarize.Record, error) { return nil, nil }
func (noTrust) RecordsBy(context.Context, notarize.Digest, []string) ([]notarize.Record, error) {
	return nil, nil
}
func (noTrust) Refresh(context.Context) error                           { return nil }
func (noTrust) Fresh() error                                            { return nil }
func (noTrust) Status() replica.Status                                  { return replica.Status{} }
func (noTrust) Witnesses() replica.WitnessHealth                        { return replica.WitnessHealth{} }
func (noTrust) Tallies([]string) ([]replica.Tally, error)               { return nil, nil }
func (noTrust) Revocations([]string, int) ([]replica.Revocation, error) { return nil, nil }
func (noTrust) History(notarize.Digest, func(string) bool, int) ([]notarize.Record, int, error) {
	return nil, 0, nil
}

// FuzzHandler sends arbitrary requests to the whole handler and checks it
// never panics, never answers 500 and never contacts a host that is not a
// configured upstream.
func FuzzHandler(f *testing.F) {
	rec := &hostRecorder{hosts: map[string]int{}}
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p, err := notarize.ParsePolicy([]byte("signers: {r: {keys: [k]}}\nrules: [{match: '**', require: [r]}]\n"))
	if err != nil {
		f.Fatal(err)
	}
	ev, err := p.Evaluator(map[string][]crypto.PublicKey{"r": {priv.Public()}})
	if err != nil {
		f.Fatal(err)
	}
	var ucs []upstream.Config
	for _, c := range []upstream.Config{
		{Name: "docker.io", URL: "https://registry-1.docker.io"},
		{Name: "ghcr.io", URL: "https://ghcr.io"},
		{Name: "local", URL: "http://127.0.0.1:5001"},
	} {
		c.Transport = rec
		ucs = append(ucs, c)
	}
	s, err := New(Config{DataDir: f.TempDir(), Upstreams: ucs, Policy: ev, Trust: noTrust{}})
	if err != nil {
		f.Fatal(err)
	}
	allowed := map[string]bool{"registry-1.docker.io": true, "ghcr.io": true, "127.0.0.1:5001": true, "auth.docker.io": true}
	for _, seed := range [][3]string{
		{"GET", "/v2/library/nginx/manifests/latest", ""},
		{"HEAD", "/v2/acme/app/manifests/sha256:" + strings.Repeat("a", 64), "ghcr.io"},
		{"GET", "/v2/local/x/blobs/sha256:" + strings.Repeat("b", 64), ""},
		{"GET", "/v2/evil.com/x/tags/list", ""},
		{"GET", "/v2/x/referrers/sha256:" + strings.Repeat("c", 64), "evil.com"},
		{"PUT", "/v2/x/manifests/v1", ""},
		{"GET", "/v2/", ""},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, method, path, ns string) {
		switch method {
		case "GET", "HEAD", "PUT", "POST", "DELETE", "PATCH":
		default:
			return
		}
		u := &url.URL{Path: path}
		if ns != "" {
			u.RawQuery = url.Values{"ns": {ns}}.Encode()
		}
		req := httptest.NewRequest(method, "http://proxy.test/", nil)
		req.URL, req.RequestURI = u, u.RequestURI()
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, req)
		if w.Code >= 500 && w.Code != http.StatusBadGateway {
			t.Fatalf("%s %s ns=%q: %d %s", method, path, ns, w.Code, w.Body)
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for h := range rec.hosts {
			if !allowed[h] {
				t.Fatalf("%s %s ns=%q contacted %s", method, path, ns, h)
			}
		}
	})
}
