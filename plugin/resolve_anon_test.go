package plugin

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/auth"
	_ "github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/notarize/docker-notarize/internal/testutil"
)

// requestLog records the requests a registry front saw, as "METHOD PATH".
type requestLog struct {
	mu   sync.Mutex
	reqs []string
}

func (l *requestLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.reqs = append(l.reqs, r.Method+" "+r.URL.Path)
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (l *requestLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.reqs
	l.reqs = nil
	return r
}

// staticKeychain gives every registry the same credentials.
type staticKeychain struct{ authn.Authenticator }

func (k staticKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	return k.Authenticator, nil
}

// TestResolveAnonymousAsksForTheManifestAtOnce: without credentials, a
// registry that serves anyone is asked for the manifest and nothing else:
// no ping (GET /v2/) first. With credentials the ping stays, since it says
// where and how to send them.
func TestResolveAnonymousAsksForTheManifestAtOnce(t *testing.T) {
	var log requestLog
	reg := newTestRegistry(t, log.wrap)
	log.take()

	s, err := newTestResolver(t, nil).Resolve(t.Context(), reg.host+"/app:v1", false)
	if err != nil {
		t.Fatal(err)
	}
	if s.Digest != digestOf(t, reg.image) {
		t.Fatalf("digest %s, want %s", s.Digest, digestOf(t, reg.image))
	}
	if got, want := strings.Join(log.take(), ", "), "GET /v2/app/manifests/v1"; got != want {
		t.Fatalf("requests: %s; want %s", got, want)
	}

	s, err = newTestResolver(t, nil).Resolve(t.Context(), reg.host+"/multi:v1", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Manifests) != 2 {
		t.Fatalf("%d manifests of the index, want 2", len(s.Manifests))
	}
	for _, r := range log.take() {
		if !strings.HasPrefix(r, "GET /v2/multi/manifests/") {
			t.Fatalf("request %s resolving an index", r)
		}
	}

	withCreds, err := NewResolver(staticKeychain{&authn.Basic{Username: "u", Password: "p"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := withCreds.Resolve(t.Context(), reg.host+"/app:v1", false); err != nil {
		t.Fatal(err)
	}
	if got := log.take(); len(got) == 0 || got[0] != "GET /v2/" {
		t.Fatalf("with credentials, requests %v; want the ping first", got)
	}
}

// tokenRegistry is a registry behind distribution's token access
// controller, with a token server on the same host:port that issues pull
// tokens to anyone, as Docker Hub's does for public images.
type tokenRegistry struct {
	*testRegistry
	log requestLog
	// token answers the token server's requests; nil issues tokens.
	token func(w http.ResponseWriter, r *http.Request) bool
	// hide404, when set, answers 404 to a manifest request without a token.
	hide404 bool
	// accessTokenOnly names the token access_token, as OAuth2 servers do.
	accessTokenOnly bool
	scopes          []string // asked of the token server
}

func newTokenRegistry(t *testing.T, tls bool, realm func(host string) string) *tokenRegistry {
	t.Helper()
	tr := &tokenRegistry{}
	issuer := testutil.NewTokenIssuer(t, "test-issuer")
	bundle := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bundle, issuer.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	var host string
	var ac auth.AccessController
	issue := func(w http.ResponseWriter, r *http.Request) {
		if tr.token != nil && tr.token(w, r) {
			return
		}
		now := time.Now()
		c := testutil.TokenClaims{Issuer: "test-issuer", Audience: "test-registry", Expiration: now.Add(time.Minute).Unix(),
			NotBefore: now.Add(-time.Minute).Unix(), IssuedAt: now.Unix(), JWTID: "j"}
		for _, scope := range r.URL.Query()["scope"] {
			tr.scopes = append(tr.scopes, scope)
			if parts := strings.Split(scope, ":"); len(parts) == 3 && parts[0] == "repository" {
				c.Access = append(c.Access, testutil.AccessClaims{Type: "repository", Name: parts[1], Actions: []string{"pull"}})
			}
		}
		w.Header().Set("Content-Type", "application/json")
		field := "token"
		if tr.accessTokenOnly {
			field = "access_token"
		}
		_ = json.NewEncoder(w).Encode(map[string]any{field: issuer.Sign(t, c), "expires_in": 60})
	}
	reg := newTestRegistryOn(t, func(h http.Handler) http.Handler {
		return tr.log.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if ac == nil || r.Method != http.MethodGet && r.Method != http.MethodHead { // the test's own pushes
				h.ServeHTTP(w, r)
				return
			}
			if r.URL.Path == "/token" {
				issue(w, r)
				return
			}
			var access []auth.Access
			if p := strings.TrimPrefix(r.URL.Path, "/v2/"); p != "" {
				i := strings.LastIndex(p, "/manifests/")
				if i < 0 {
					i = strings.LastIndex(p, "/blobs/")
				}
				if i > 0 {
					access = append(access, auth.Access{Resource: auth.Resource{Type: "repository", Name: p[:i]}, Action: "pull"})
				}
			}
			if tr.hide404 && r.Header.Get("Authorization") == "" && strings.Contains(r.URL.Path, "/manifests/") {
				http.Error(w, `{"errors":[{"code":"NAME_UNKNOWN"}]}`, http.StatusNotFound)
				return
			}
			if _, err := ac.Authorized(r, access...); err != nil {
				var ch auth.Challenge
				if errors.As(err, &ch) {
					ch.SetHeaders(r, w)
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			h.ServeHTTP(w, r)
		}))
	}, tls)
	host = reg.host
	tr.testRegistry = reg
	var err error
	ac, err = auth.GetAccessController("token", map[string]any{
		"realm": realm(host), "issuer": "test-issuer", "service": "test-registry", "rootcertbundle": bundle,
	})
	if err != nil {
		t.Fatal(err)
	}
	tr.log.take()
	return tr
}

func sameHostRealm(host string) string { return "http://" + host + "/token" }

// TestResolveAnonymousTokenRegistry: a registry that wants a token says so
// in the manifest's 401; the token is fetched as its challenge asks and the
// manifest asked for again: three round trips, as with the ping, and no
// ping. The token server's answer is checked as the ping's path checks it.
func TestResolveAnonymousTokenRegistry(t *testing.T) {
	t.Run("pulls with a token, no ping", func(t *testing.T) {
		reg := newTokenRegistry(t, false, sameHostRealm)
		s, err := newTestResolver(t, nil).Resolve(t.Context(), reg.host+"/multi:v1", true)
		if err != nil {
			t.Fatal(err)
		}
		if s.Digest != digestOf(t, reg.index) || len(s.Manifests) != 2 {
			t.Fatalf("got %s with %d manifests", s.Digest, len(s.Manifests))
		}
		got := reg.log.take()
		want := []string{"GET /v2/multi/manifests/v1", "GET /token", "GET /v2/multi/manifests/v1"}
		if len(got) != 5 || strings.Join(got[:3], ", ") != strings.Join(want, ", ") {
			t.Fatalf("requests %v; want %v and the index's two manifests", got, want)
		}
		if strings.Join(reg.scopes, " ") != "repository:multi:pull" {
			t.Fatalf("token scopes %v", reg.scopes)
		}
	})
	t.Run("access_token only", func(t *testing.T) {
		reg := newTokenRegistry(t, false, sameHostRealm)
		reg.accessTokenOnly = true
		if _, err := newTestResolver(t, nil).Resolve(t.Context(), reg.host+"/app:v1", false); err != nil {
			t.Fatal(err)
		}
		if got := reg.log.take(); len(got) != 3 {
			t.Fatalf("requests %v; want the manifest's 401, the token, the manifest", got)
		}
	})
	t.Run("a Basic challenge", func(t *testing.T) {
		// As a private ECR repository answers: without credentials the
		// 401 stands, as it did after a ping; with them the ping's path
		// sends them.
		var log requestLog
		reg := newTestRegistry(t, func(h http.Handler) http.Handler {
			return log.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if u, p, ok := r.BasicAuth(); r.Method == http.MethodGet && !(ok && u == "u" && p == "p") {
					w.Header().Set("WWW-Authenticate", `Basic realm="registry"`)
					http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
					return
				}
				h.ServeHTTP(w, r)
			}))
		})
		log.take()
		_, err := newTestResolver(t, nil).Resolve(t.Context(), reg.host+"/app:v1", false)
		if err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
			t.Fatalf("Resolve = %v, want the registry's 401", err)
		}
		for _, r := range log.take() {
			if r == "GET /v2/" {
				t.Fatal("the 401's challenge was asked for again with a ping")
			}
		}
		withCreds, err := NewResolver(staticKeychain{&authn.Basic{Username: "u", Password: "p"}}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := withCreds.Resolve(t.Context(), reg.host+"/app:v1", false); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a token server without a token", func(t *testing.T) {
		reg := newTokenRegistry(t, false, sameHostRealm)
		reg.token = func(w http.ResponseWriter, r *http.Request) bool {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"expires_in": 60}`))
			return true
		}
		_, err := newTestResolver(t, nil).Resolve(t.Context(), reg.host+"/app:v1", false)
		if err == nil || !strings.Contains(err.Error(), "no token") {
			t.Fatalf("Resolve = %v, want the token server's empty answer", err)
		}
		if got := reg.log.take(); len(got) != 2 {
			t.Fatalf("requests %v; want the manifest's 401 and the token request, nothing sent with an empty token", got)
		}
	})
	t.Run("a realm at the cloud metadata address", func(t *testing.T) {
		reg := newTokenRegistry(t, false, func(string) string { return "http://169.254.169.254/latest/token" })
		var others atomic.Int32 // requests for any host but the registry, not sent
		net := roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if req.URL.Host == reg.host {
				return http.DefaultTransport.RoundTrip(req)
			}
			others.Add(1)
			return nil, errors.New("not sent: " + req.URL.Host)
		})
		_, err := newTestResolver(t, net).Resolve(t.Context(), reg.host+"/app:v1", false)
		if err == nil || !strings.Contains(err.Error(), "realm") {
			t.Fatalf("Resolve = %v, want the realm refused", err)
		}
		if n := others.Load(); n != 0 {
			t.Fatalf("%d requests beyond the registry", n)
		}
	})
	t.Run("an https registry's challenge with a plain http realm", func(t *testing.T) {
		// The token server must be reached as securely as the registry
		// was: an https registry's realm over http is refused (the
		// challenge is marked insecure only when http answered).
		reg := newTokenRegistry(t, true, sameHostRealm)
		_, err := newTestResolver(t, reg.client).Resolve(t.Context(), reg.host+"/app:v1", false)
		if err == nil || !strings.Contains(err.Error(), "realm scheme") {
			t.Fatalf("Resolve = %v, want the http realm refused", err)
		}
		for _, r := range reg.log.take() {
			if r == "GET /token" {
				t.Fatal("the token server was asked over plain http")
			}
		}
	})
	t.Run("an https registry with an https realm", func(t *testing.T) {
		reg := newTokenRegistry(t, true, func(host string) string { return "https://" + host + "/token" })
		s, err := newTestResolver(t, reg.client).Resolve(t.Context(), reg.host+"/multi:v1", true)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Manifests) != 2 {
			t.Fatalf("%d manifests", len(s.Manifests))
		}
	})
	t.Run("a registry that hides manifests from clients without a token", func(t *testing.T) {
		// A 404 is not a verdict on the image: the ping's path runs, its
		// Bearer challenge gets a token, and the manifest is found.
		reg := newTokenRegistry(t, false, sameHostRealm)
		reg.hide404 = true
		s, err := newTestResolver(t, nil).Resolve(t.Context(), reg.host+"/app:v1", false)
		if err != nil {
			t.Fatal(err)
		}
		if s.Digest != digestOf(t, reg.image) {
			t.Fatalf("digest %s", s.Digest)
		}
		if got := reg.log.take(); len(got) < 2 || got[1] != "GET /v2/" {
			t.Fatalf("requests %v; want the manifest's 404, then the ping", got)
		}
	})
}

// schemeNet serves plain http from the network and holds every https
// attempt until its request is cancelled (hang) or fails it at once.
type schemeNet struct {
	hang      bool
	mu        sync.Mutex
	https     int
	cancelled int
}

func (n *schemeNet) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" {
		return http.DefaultTransport.RoundTrip(req)
	}
	n.mu.Lock()
	n.https++
	n.mu.Unlock()
	if !n.hang {
		return nil, errors.New("schemeNet: tls: first record does not look like a TLS handshake")
	}
	<-req.Context().Done()
	n.mu.Lock()
	n.cancelled++
	n.mu.Unlock()
	return nil, req.Context().Err()
}

// TestResolveAnonymousSchemes: where plain http is allowed, https is tried
// first, as go-containerregistry's ping tries it: http starts at once when
// https fails, and beside it when https hangs, and the https attempt that
// lost is cancelled. Elsewhere only https is tried, and a plain http
// registry the guard refuses is named as such.
func TestResolveAnonymousSchemes(t *testing.T) {
	reg := newTestRegistry(t, nil)
	t.Run("https fails: http at once", func(t *testing.T) {
		n := &schemeNet{}
		res := newTestResolver(t, n)
		res.plainFallback = time.Hour // only a failed https starts http
		res.timeout = 20 * time.Second
		if _, err := res.Resolve(t.Context(), reg.host+"/app:v1", false); err != nil {
			t.Fatal(err)
		}
		if n.https != 1 {
			t.Fatalf("%d https attempts", n.https)
		}
	})
	t.Run("https hangs: http beside it", func(t *testing.T) {
		n := &schemeNet{hang: true}
		res := newTestResolver(t, n)
		res.plainFallback = 50 * time.Millisecond
		res.timeout = 20 * time.Second
		s, err := res.Resolve(t.Context(), reg.host+"/multi:v1", true)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Manifests) != 2 {
			t.Fatalf("%d manifests", len(s.Manifests))
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			n.mu.Lock()
			h, c := n.https, n.cancelled
			n.mu.Unlock()
			if h == 1 && c == 1 {
				break // and the index's manifests went to http directly
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d https attempts, %d cancelled; want 1 and 1", h, c)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// TestResolveAnonymousRedirected401: a 401 from the host a manifest
// request was redirected to is not the registry's challenge: the registry
// is pinged, as before, and its own challenge is followed.
func TestResolveAnonymousRedirected401(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+r.Host+`/token",service="elsewhere"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(other.Close)
	var redirect atomic.Bool
	var log requestLog
	reg := newTestRegistry(t, func(h http.Handler) http.Handler {
		return log.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if redirect.Load() && strings.Contains(r.URL.Path, "/manifests/") {
				redirect.Store(false)
				http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
				return
			}
			h.ServeHTTP(w, r)
		}))
	})
	log.take()
	redirect.Store(true)
	s, err := newTestResolver(t, nil).Resolve(t.Context(), reg.host+"/app:v1", false)
	if err != nil {
		t.Fatal(err)
	}
	if s.Digest != digestOf(t, reg.image) {
		t.Fatalf("digest %s", s.Digest)
	}
	if got := log.take(); len(got) != 3 || got[1] != "GET /v2/" {
		t.Fatalf("requests %v; want the redirected manifest, the ping, the manifest", got)
	}
}
