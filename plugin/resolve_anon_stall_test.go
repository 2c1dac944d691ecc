package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
)

// simpleTokenFront is a token-protected front for a testRegistry: the
// token server (/token, same host) issues "tok-N|SCOPES" to anyone; a
// manifest GET needs a token whose scopes include the repository's pull,
// and, with singleUse, a token that has not been used yet (as if each
// token expired after one request).
type simpleTokenFront struct {
	host           string
	scopeInChall   bool
	singleUse      bool
	stallToken     atomic.Bool
	stall401Body   atomic.Bool
	stall200Body   atomic.Bool
	stallRefetch   atomic.Bool
	mu             sync.Mutex
	n              int
	used           map[string]bool
	tokenScopes    []string
	manifestStatus []int
}

func (f *simpleTokenFront) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.ServeHTTP(w, r)
			return
		}
		if r.URL.Path == "/token" {
			if f.stallToken.Load() {
				<-r.Context().Done()
				return
			}
			f.mu.Lock()
			f.n++
			sc := strings.Join(r.URL.Query()["scope"], ",")
			f.tokenScopes = append(f.tokenScopes, sc)
			tok := fmt.Sprintf("tok-%d|%s", f.n, sc)
			f.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"token": tok})
			return
		}
		repo := ""
		if p := strings.TrimPrefix(r.URL.Path, "/v2/"); p != "" {
			if i := strings.LastIndex(p, "/manifests/"); i > 0 {
				repo = p[:i]
			}
		}
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		ok := false
		if tok != "" && repo != "" {
			f.mu.Lock()
			_, sc, _ := strings.Cut(tok, "|")
			ok = strings.Contains(","+sc+",", ",repository:"+repo+":pull,") && !(f.singleUse && f.used[tok])
			if f.used == nil {
				f.used = map[string]bool{}
			}
			f.used[tok] = true
			f.mu.Unlock()
		}
		if !ok {
			ch := fmt.Sprintf(`Bearer realm="http://%s/token",service="svc"`, f.host)
			if f.scopeInChall && repo != "" {
				ch += fmt.Sprintf(`,scope="repository:%s:pull"`, repo)
			}
			w.Header().Set("WWW-Authenticate", ch)
			w.WriteHeader(http.StatusUnauthorized)
			if repo != "" {
				f.mu.Lock()
				f.manifestStatus = append(f.manifestStatus, 401)
				f.mu.Unlock()
			}
			if f.stall401Body.Load() && repo != "" {
				_, _ = w.Write([]byte(`{"errors":[`))
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			}
			return
		}
		if f.stallRefetch.Load() {
			<-r.Context().Done()
			return
		}
		f.mu.Lock()
		f.manifestStatus = append(f.manifestStatus, 200)
		f.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func newSimpleTokenRegistry(t *testing.T) (*testRegistry, *simpleTokenFront) {
	f := &simpleTokenFront{}
	var on atomic.Bool
	reg := newTestRegistry(t, func(h http.Handler) http.Handler {
		w := f.wrap(h)
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if !on.Load() {
				h.ServeHTTP(rw, r)
				return
			}
			w.ServeHTTP(rw, r)
		})
	})
	f.host = reg.host
	on.Store(true)
	return reg, f
}

// TestResolveTokenFrontBothPaths: the front serves the ping's path and the
// anonymous one alike.
func TestResolveTokenFrontBothPaths(t *testing.T) {
	reg, f := newSimpleTokenRegistry(t)
	f.scopeInChall = true
	if _, err := newTestResolver(t, nil).Resolve(t.Context(), reg.host+"/multi:v1", true); err != nil {
		t.Fatal(err)
	}
	withCreds := newTestResolver(t, nil)
	withCreds.keychain = staticKeychain{&authn.Basic{Username: "u", Password: "p"}}
	if _, err := withCreds.Resolve(t.Context(), reg.host+"/multi:v1", true); err != nil {
		t.Fatal(err)
	}
}

// TestResolveTokenRefreshKeepsThePullScope: when a later request (an
// index's manifest) gets a 401 whose challenge names no scope (its token
// expired), the token is refreshed for repository:REPO:pull, on the
// anonymous path as on the ping's. (A review found the first version of
// the anonymous path, a transport from transport.FromToken, refreshing with
// no scope at all: the pull failed. The 401 is now handed to
// go-containerregistry as its ping's answer, pingReplay, which sets the
// scope as its own ping does.)
func TestResolveTokenRefreshKeepsThePullScope(t *testing.T) {
	for _, anon := range []bool{false, true} {
		t.Run(fmt.Sprintf("anonymous=%v", anon), func(t *testing.T) {
			reg, f := newSimpleTokenRegistry(t)
			f.singleUse = true
			f.scopeInChall = false
			res := newTestResolver(t, nil)
			if !anon {
				res.keychain = staticKeychain{&authn.Basic{Username: "u", Password: "p"}}
			}
			_, err := res.Resolve(t.Context(), reg.host+"/multi:v1", true)
			f.mu.Lock()
			defer f.mu.Unlock()
			if err != nil {
				t.Fatalf("Resolve = %v (token scopes asked: %q; manifest statuses %v)", err, f.tokenScopes, f.manifestStatus)
			}
			for _, sc := range f.tokenScopes {
				if sc != "repository:multi:pull" {
					t.Fatalf("token scopes asked: %q", f.tokenScopes)
				}
			}
		})
	}
}

// TestResolveAnonymousTimesOut: on the anonymous path too, a registry or a
// token server that stalls at any step ends the resolution within the
// registry timeout, with a deadline error; a 401 whose body stalls is
// closed unread (its length unknown) and the token flow goes on; a
// cancelled context ends both schemes' attempts.
func TestResolveAnonymousTimesOut(t *testing.T) {
	for _, tc := range []struct {
		name    string
		set     func(f *simpleTokenFront)
		wantErr bool
	}{
		{"token server", func(f *simpleTokenFront) { f.stallToken.Store(true) }, true},
		{"401 body", func(f *simpleTokenFront) { f.stall401Body.Store(true) }, false},
		{"refetch", func(f *simpleTokenFront) { f.stallRefetch.Store(true) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, f := newSimpleTokenRegistry(t)
			f.scopeInChall = true
			tc.set(f)
			res := newTestResolver(t, nil)
			res.timeout = 300 * time.Millisecond
			start := time.Now()
			_, err := res.Resolve(t.Context(), reg.host+"/app:v1", false)
			took := time.Since(start)
			if !tc.wantErr && err != nil {
				t.Fatalf("Resolve = %v", err)
			}
			if tc.wantErr && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Resolve = %v, want deadline", err)
			}
			if took > 5*time.Second {
				t.Fatalf("took %v", took)
			}
		})
	}
	t.Run("200 body", func(t *testing.T) {
		reg := newTestRegistry(t, func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.Contains(r.URL.Path, "/manifests/") && r.Method == http.MethodGet {
					w.Header().Set("Content-Type", mediaTypeDockerManifest)
					w.WriteHeader(200)
					_, _ = w.Write([]byte(`{"schemaVersion":2,`))
					w.(http.Flusher).Flush()
					<-r.Context().Done()
					return
				}
				h.ServeHTTP(w, r)
			})
		})
		res := newTestResolver(t, nil)
		res.timeout = 300 * time.Millisecond
		start := time.Now()
		_, err := res.Resolve(t.Context(), reg.host+"/app:v1", false)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
			t.Fatalf("Resolve = %v after %v", err, time.Since(start))
		}
	})
	t.Run("ctx cancelled while both schemes hang", func(t *testing.T) {
		hang := roundTripFunc(func(req *http.Request) (*http.Response, error) {
			<-req.Context().Done()
			return nil, req.Context().Err()
		})
		res := newTestResolver(t, hang)
		res.plainFallback = 10 * time.Millisecond
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := res.Resolve(ctx, "127.0.0.1:1/app:v1", false)
		if err == nil || time.Since(start) > 2*time.Second {
			t.Fatalf("Resolve = %v after %v", err, time.Since(start))
		}
	})
}

// https answers a 404 at once (something else on that port over TLS)
// while http serves the registry: the https answer wins the race, and
// the ping's path must still find the registry over http.
func TestResolveHTTPS404WhileHTTPServes(t *testing.T) {
	reg := newTestRegistry(t, nil)
	var httpsN atomic.Int32
	net := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if req.URL.Scheme == "https" {
			httpsN.Add(1)
			return &http.Response{StatusCode: 404, Status: "404 Not Found", Header: http.Header{}, Body: http.NoBody, Request: req}, nil
		}
		return http.DefaultTransport.RoundTrip(req)
	})
	s, err := newTestResolver(t, net).Resolve(t.Context(), reg.host+"/multi:v1", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Manifests) != 2 || httpsN.Load() == 0 {
		t.Fatalf("%d manifests, %d https requests", len(s.Manifests), httpsN.Load())
	}
}

// A private registry the guard refuses, whose https answers 404 at once:
// still ErrPlainHTTP.
func TestResolvePrivateHTTPS404StillErrPlainHTTP(t *testing.T) {
	net := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if req.URL.Scheme == "https" {
			return &http.Response{StatusCode: 404, Status: "404 Not Found", Header: http.Header{}, Body: http.NoBody, Request: req}, nil
		}
		t.Errorf("plain http sent to %s", req.URL)
		return nil, errors.New("no")
	})
	_, err := newTestResolver(t, net).Resolve(t.Context(), "10.9.9.9:5000/app:v1", false)
	if !errors.Is(err, ErrPlainHTTP) {
		t.Fatalf("Resolve = %v, want ErrPlainHTTP", err)
	}
}

// TestResolveRefusedOnOneLine: a private registry the guard refuses is
// reported as ErrPlainHTTP, both schemes' errors on one line (the CLI
// prints a registry's error as one line).
func TestResolveRefusedOnOneLine(t *testing.T) {
	net := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		return nil, errors.New("tls: first record does not look like a TLS handshake")
	})
	_, err := newTestResolver(t, net).Resolve(t.Context(), "10.9.9.9:5000/app:v1", false)
	if !errors.Is(err, ErrPlainHTTP) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "https: ") {
		t.Fatalf("Resolve = %q, want both schemes' errors on one line, ErrPlainHTTP among them", err)
	}
}

// TestResolvePublicNameOnlyHTTPS: a registry go-containerregistry would
// reach only over https gets no plain http attempt at all.
func TestResolvePublicNameOnlyHTTPS(t *testing.T) {
	var mu sync.Mutex
	var schemes []string
	net := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		mu.Lock()
		schemes = append(schemes, req.URL.Scheme)
		mu.Unlock()
		return nil, errors.New("offline")
	})
	if _, err := newTestResolver(t, net).Resolve(t.Context(), "registry.example.com/app:v1", false); err == nil {
		t.Fatal("resolved offline")
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(schemes, " ") != "https" {
		t.Fatalf("attempts over %v, want one over https", schemes)
	}
}
