package proxy_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/internal/testutil"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"

	"github.com/notarize/docker-notarize/proxy"
	"github.com/notarize/docker-notarize/proxy/upstream"
)

// accessPolicy serves everything (mode off: these tests are about who may
// pull, not what is trusted) to the users the access rules name.
const accessPolicy = `
signers:
  release: {keys: [release.pub]}
rules:
  - match: "**"
    mode: off
access:
  - match: "priv/public/**"
    users: ["*"]
  - match: "priv/team/**"
    users: [alice]
`

// authEnv is a proxy with client authentication in front of a counting
// upstream registry "priv" (the default upstream), on the trust data of a
// real ledger (newEnv).
type authEnv struct {
	*env
	up      *recorder
	upHost  string
	authed  *httptest.Server
	srv     *proxy.Server
	logs    *testutil.SyncBuffer
	htpFile string
}

const (
	alicePassword = "alice-s3cret"
	bobPassword   = "bob-s3cret"
)

func newAuthEnv(t *testing.T, policy string, auth func(dir string) proxy.AuthConfig) *authEnv {
	t.Helper()
	up := &recorder{h: registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(true))}
	ups := httptest.NewServer(up)
	t.Cleanup(ups.Close)
	e := newEnv(t, withUpstream(upstream.Config{Name: "priv", URL: ups.URL, Keychain: anonymous()}))
	a := &authEnv{env: e, up: up, upHost: strings.TrimPrefix(ups.URL, "http://"), logs: &testutil.SyncBuffer{}}
	a.htpFile = filepath.Join(e.dir, "htpasswd")
	var b strings.Builder
	for _, u := range [][2]string{{"alice", alicePassword}, {"bob", bobPassword}} {
		h, err := bcrypt.GenerateFromPassword([]byte(u[1]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(u[0] + ":" + string(h) + "\n")
	}
	if err := os.WriteFile(a.htpFile, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "access-policy.yaml"), []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	ev, err := proxy.LoadPolicy(filepath.Join(e.dir, "access-policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := proxy.Config{
		DataDir: filepath.Join(e.dir, "authdata"), Upstreams: e.ups, DefaultUpstream: "priv",
		Policy: ev, Trust: e.replica, ManifestTimeout: 3 * time.Second,
		Logger: slog.New(slog.NewJSONHandler(a.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if auth != nil {
		cfg.Auth = auth(e.dir)
	}
	a.srv, err = proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.srv.Close(context.Background()) })
	a.authed = httptest.NewServer(a.srv.Handler())
	t.Cleanup(a.authed.Close)
	return a
}

// htpasswdAuth authenticates against the htpasswd file newAuthEnv writes in dir.
func htpasswdAuth(dir string) proxy.AuthConfig {
	return proxy.AuthConfig{Htpasswd: &proxy.HtpasswdAuth{Path: filepath.Join(dir, "htpasswd")}}
}

// pushPriv writes a random image to the counting upstream.
func (a *authEnv) pushPriv(repo, tag string) {
	a.t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		a.t.Fatal(err)
	}
	ref, err := name.ParseReference(a.upHost+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		a.t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithContext(a.t.Context())); err != nil {
		a.t.Fatal(err)
	}
}

// get sends a request to the authenticating proxy; cred is "user:password"
// for Basic, "Bearer TOKEN", or "".
func (a *authEnv) get(t testing.TB, path, cred string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, a.authed.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case strings.HasPrefix(cred, "Bearer "):
		req.Header.Set("Authorization", cred)
	case cred != "":
		u, p, _ := strings.Cut(cred, ":")
		req.SetBasicAuth(u, p)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// upstreamRequests is the number of requests the upstream has seen.
func (a *authEnv) upstreamRequests() int { return len(a.up.all()) }

// expectRefused checks a refusal (status and OCI code) that caused no upstream request.
func (a *authEnv) expectRefused(t testing.TB, path, cred string, status int, code string) []byte {
	t.Helper()
	before := a.upstreamRequests()
	st, hdr, body := a.get(t, path, cred)
	if st != status {
		t.Fatalf("GET %s as %q: HTTP %d %s, want %d", path, strings.SplitN(cred, ":", 2)[0], st, body, status)
	}
	if c, _ := ociErr(t, body); c != code {
		t.Fatalf("GET %s: code %s, want %s", path, c, code)
	}
	if status == http.StatusUnauthorized && hdr.Get("WWW-Authenticate") == "" {
		t.Fatalf("GET %s: 401 without a challenge", path)
	}
	if n := a.upstreamRequests() - before; n != 0 {
		t.Fatalf("GET %s as %q: %d upstream requests for a refused client", path, strings.SplitN(cred, ":", 2)[0], n)
	}
	return body
}

func TestAuthHtpasswd(t *testing.T) {
	a := newAuthEnv(t, accessPolicy, htpasswdAuth)
	a.pushPriv("team/app", "v1")
	a.pushPriv("public/base", "v1")
	alice, bob := "alice:"+alicePassword, "bob:"+bobPassword

	t.Run("base asks for credentials", func(t *testing.T) {
		_, hdr, _ := a.get(t, "/v2/", "")
		a.expectRefused(t, "/v2/", "", http.StatusUnauthorized, "UNAUTHORIZED")
		if got := hdr.Get("WWW-Authenticate"); got != `Basic realm="notarize-proxy"` {
			t.Fatalf("challenge %q", got)
		}
		if st, hdr, _ := a.get(t, "/v2/", alice); st != http.StatusOK || hdr.Get("Docker-Distribution-API-Version") != "registry/2.0" {
			t.Fatalf("alice: /v2/ HTTP %d", st)
		}
	})
	t.Run("bad credentials", func(t *testing.T) {
		for _, cred := range []string{"alice:wrong", "alice:", "mallory:" + alicePassword, "bob:" + alicePassword, ":"} {
			a.expectRefused(t, "/v2/", cred, http.StatusUnauthorized, "UNAUTHORIZED")
			a.expectRefused(t, "/v2/team/app/manifests/v1", cred, http.StatusUnauthorized, "UNAUTHORIZED")
		}
		if strings.Contains(string(a.logs.Bytes()), alicePassword) {
			t.Fatal("a password is in the log")
		}
	})
	t.Run("anonymous reads nothing", func(t *testing.T) {
		for _, p := range []string{"/v2/team/app/manifests/v1", "/v2/public/base/manifests/v1", "/v2/team/app/tags/list",
			"/v2/team/app/blobs/sha256:" + strings.Repeat("a", 64), "/v2/team/app/referrers/sha256:" + strings.Repeat("a", 64),
			"/metrics", "/notarize/v1/stats", "/notarize/v1/checkpoint", "/v2/_catalog"} {
			a.expectRefused(t, p, "", http.StatusUnauthorized, "UNAUTHORIZED")
		}
		if st, _, _ := a.get(t, "/healthz", ""); st != http.StatusOK {
			t.Fatalf("/healthz: HTTP %d", st)
		}
	})
	t.Run("allowed user pulls", func(t *testing.T) {
		for _, ref := range []string{"team/app:v1", "public/base:v1"} {
			r, err := name.ParseReference(strings.TrimPrefix(a.authed.URL, "http://")+"/"+ref, name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			img, err := remote.Image(r, remote.WithContext(t.Context()), remote.WithAuth(&authn.Basic{Username: "alice", Password: alicePassword}))
			if err != nil {
				t.Fatalf("alice pulls %s: %v", ref, err)
			}
			if _, err := img.RawConfigFile(); err != nil {
				t.Fatalf("alice reads %s's config: %v", ref, err)
			}
		}
		for _, p := range []string{"/metrics", "/notarize/v1/stats", "/notarize/v1/checkpoint"} {
			if st, _, body := a.get(t, p, alice); st != http.StatusOK && st != http.StatusBadRequest {
				t.Fatalf("alice %s: HTTP %d %s", p, st, body)
			}
		}
	})
	t.Run("user not in the rules learns nothing", func(t *testing.T) {
		// bob is authenticated; priv/team/** is alice's. The answer for a
		// repository that exists is the one for a repository that does not,
		// for a name that routes nowhere, and nothing reaches the upstream.
		norm := func(b []byte, name string) string { return strings.ReplaceAll(string(b), name, "NAME") }
		want := norm(a.expectRefused(t, "/v2/team/app/manifests/v1", bob, http.StatusForbidden, "DENIED"), "team/app")
		for _, tc := range []struct{ path, name string }{
			{"/v2/team/nope/manifests/v1", "team/nope"},
			{"/v2/team/app/manifests/sha256:" + strings.Repeat("b", 64), "team/app"},
			{"/v2/team/app/tags/list", "team/app"},
			{"/v2/team/app/tags/list?n=1&last=a", "team/app"},
			{"/v2/team/app/referrers/sha256:" + strings.Repeat("c", 64), "team/app"},
			{"/v2/team/app/blobs/sha256:" + strings.Repeat("d", 64), "team/app"},
			{"/v2/priv/team/app/manifests/v1", "priv/team/app"},
			{"/v2/team/app/manifests/v1?ns=" + a.upHost, "team/app"},
			{"/v2/other/repo/manifests/v1", "other/repo"},               // no rule: denied
			{"/v2/unknown.example/x/manifests/v1", "unknown.example/x"}, // no such upstream: same answer
		} {
			got := norm(a.expectRefused(t, tc.path, bob, http.StatusForbidden, "DENIED"), tc.name)
			if got != want {
				t.Errorf("%s: answer %q differs from %q", tc.path, got, want)
			}
		}
		// bob may pull what "*" grants.
		if st, _, body := a.get(t, "/v2/public/base/manifests/v1", bob); st != http.StatusOK {
			t.Fatalf("bob public/base: HTTP %d %s", st, body)
		}
	})
	t.Run("htpasswd file gone: fail closed", func(t *testing.T) {
		if err := os.Rename(a.htpFile, a.htpFile+".gone"); err != nil {
			t.Fatal(err)
		}
		defer os.Rename(a.htpFile+".gone", a.htpFile)
		a.expectRefused(t, "/v2/team/app/manifests/v1", alice, http.StatusServiceUnavailable, "UNAVAILABLE")
	})
}

// TestAccessRulesWithoutAuth: a policy whose access rules name users, on a
// proxy that authenticates nobody, serves nobody (notarize-proxy refuses
// to start that way; the server fails closed if a reload brings it).
func TestAccessRulesWithoutAuth(t *testing.T) {
	a := newAuthEnv(t, accessPolicy, nil)
	a.pushPriv("public/base", "v1")
	a.expectRefused(t, "/v2/public/base/manifests/v1", "", http.StatusForbidden, "DENIED")
	a.expectRefused(t, "/v2/public/base/tags/list", "", http.StatusForbidden, "DENIED")
	if st, _, _ := a.get(t, "/v2/", ""); st != http.StatusOK {
		t.Fatalf("/v2/ without auth: HTTP %d", st)
	}
}

func TestNewRefusesBadAuth(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	for name, ac := range map[string]proxy.AuthConfig{
		"missing htpasswd":     {Htpasswd: &proxy.HtpasswdAuth{Path: filepath.Join(dir, "nope")}},
		"htpasswd is a dir":    {Htpasswd: &proxy.HtpasswdAuth{Path: dir}},
		"both":                 {Htpasswd: &proxy.HtpasswdAuth{Path: "x"}, Token: &proxy.TokenAuth{Realm: "r", Service: "s", Issuer: "i", RootCertBundle: "b"}},
		"token without keys":   {Token: &proxy.TokenAuth{Realm: "r", Service: "s", Issuer: "i"}},
		"token bundle missing": {Token: &proxy.TokenAuth{Realm: "r", Service: "s", Issuer: "i", RootCertBundle: filepath.Join(dir, "nope.pem")}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := proxy.New(proxy.Config{DataDir: t.TempDir(), Upstreams: e.ups, Policy: e.policy, Trust: e.replica, Auth: ac})
			if err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); err == nil {
		t.Fatal("a missing htpasswd file was created (distribution provisions one with a logged password)")
	}
}

// The token issuer and its claims are internal/testutil's, shared with
// the plugin's resolver tests.
type (
	tokenIssuer  = testutil.TokenIssuer
	tokenClaims  = testutil.TokenClaims
	accessClaims = testutil.AccessClaims
)

func newTokenIssuer(t testing.TB, cn string) *tokenIssuer { return testutil.NewTokenIssuer(t, cn) }

func TestAuthToken(t *testing.T) {
	issuer := newTokenIssuer(t, "test-issuer")
	var bundle string
	a := newAuthEnv(t, accessPolicy, func(dir string) proxy.AuthConfig {
		bundle = filepath.Join(dir, "token-ca.pem")
		if err := os.WriteFile(bundle, issuer.CAPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		return proxy.AuthConfig{Token: &proxy.TokenAuth{Realm: "https://auth.example/token", Service: "notarize-proxy", Issuer: "test-issuer", RootCertBundle: bundle}}
	})
	a.pushPriv("team/app", "v1")
	now := time.Now()
	claims := func(sub string, repos ...string) tokenClaims {
		c := tokenClaims{Issuer: "test-issuer", Subject: sub, Audience: "notarize-proxy", Expiration: now.Add(5 * time.Minute).Unix(),
			NotBefore: now.Add(-time.Minute).Unix(), IssuedAt: now.Unix(), JWTID: "j1"}
		for _, r := range repos {
			c.Access = append(c.Access, accessClaims{Type: "repository", Name: r, Actions: []string{"pull"}})
		}
		return c
	}
	bearer := func(ti *tokenIssuer, c tokenClaims) string { return "Bearer " + ti.Sign(t, c) }

	t.Run("valid token", func(t *testing.T) {
		if st, _, body := a.get(t, "/v2/team/app/manifests/v1", bearer(issuer, claims("alice", "team/app"))); st != http.StatusOK {
			t.Fatalf("HTTP %d %s", st, body)
		}
		if st, _, _ := a.get(t, "/v2/", bearer(issuer, claims("alice"))); st != http.StatusOK {
			t.Fatalf("/v2/ with a token: HTTP %d", st)
		}
	})
	t.Run("challenge names the scope", func(t *testing.T) {
		_, hdr, _ := a.get(t, "/v2/team/app/manifests/v1", "")
		a.expectRefused(t, "/v2/team/app/manifests/v1", "", http.StatusUnauthorized, "UNAUTHORIZED")
		want := `Bearer realm="https://auth.example/token",service="notarize-proxy",scope="repository:team/app:pull"`
		if got := hdr.Get("WWW-Authenticate"); got != want {
			t.Fatalf("challenge %q, want %q", got, want)
		}
	})
	forger := newTokenIssuer(t, "test-issuer") // same names, a CA the proxy does not trust
	expired := claims("alice", "team/app")
	expired.Expiration, expired.NotBefore = now.Add(-2*time.Hour).Unix(), now.Add(-3*time.Hour).Unix()
	future := claims("alice", "team/app")
	future.NotBefore = now.Add(time.Hour).Unix()
	wrongAud := claims("alice", "team/app")
	wrongAud.Audience = "another-registry"
	wrongIss := claims("alice", "team/app")
	wrongIss.Issuer = "someone-else"
	push := claims("alice")
	push.Access = []accessClaims{{Type: "repository", Name: "team/app", Actions: []string{"push"}}}
	tampered := issuer.Sign(t, claims("alice", "team/other"))
	parts := strings.Split(tampered, ".")
	body, _ := json.Marshal(claims("alice", "team/app"))
	parts[1] = base64.RawURLEncoding.EncodeToString(body)
	for name, cred := range map[string]string{
		"forged":          bearer(forger, claims("alice", "team/app")),
		"expired":         bearer(issuer, expired),
		"not yet valid":   bearer(issuer, future),
		"wrong audience":  bearer(issuer, wrongAud),
		"wrong issuer":    bearer(issuer, wrongIss),
		"wrong scope":     bearer(issuer, claims("alice", "team/other")),
		"no scope":        bearer(issuer, claims("alice")),
		"push only":       bearer(issuer, push),
		"tampered claims": "Bearer " + strings.Join(parts, "."),
		"garbage":         "Bearer not.a.token",
		"basic":           "alice:" + alicePassword,
	} {
		t.Run(name, func(t *testing.T) {
			a.expectRefused(t, "/v2/team/app/manifests/v1", cred, http.StatusUnauthorized, "UNAUTHORIZED")
			a.expectRefused(t, "/v2/team/app/tags/list", cred, http.StatusUnauthorized, "UNAUTHORIZED")
		})
	}
	t.Run("token grants but the access rules do not", func(t *testing.T) {
		// The token server granted bob pull on team/app; the policy gives it to alice only.
		a.expectRefused(t, "/v2/team/app/manifests/v1", bearer(issuer, claims("bob", "team/app")), http.StatusForbidden, "DENIED")
	})
}

// TestAuthTokenFlow: a real client (go-containerregistry, as docker and
// containerd do) follows the proxy's Bearer challenge to a token server,
// which authenticates it and issues a token for the scope it asks, and
// pulls with it. A token for one user is not a pull of another's repository.
// The token server shares the proxy's host:port (go-containerregistry
// refuses a realm on another loopback address).
func TestAuthTokenFlow(t *testing.T) {
	issuer := newTokenIssuer(t, "test-issuer")
	front := httptest.NewUnstartedServer(nil)
	t.Cleanup(front.Close)
	realm := "http://" + front.Listener.Addr().String() + "/token"
	token := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pw, ok := r.BasicAuth()
		if !ok || !(user == "alice" && pw == alicePassword || user == "bob" && pw == bobPassword) || r.URL.Query().Get("service") != "notarize-proxy" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		now := time.Now()
		c := tokenClaims{Issuer: "test-issuer", Subject: user, Audience: "notarize-proxy", Expiration: now.Add(time.Minute).Unix(),
			NotBefore: now.Add(-time.Minute).Unix(), IssuedAt: now.Unix(), JWTID: "j"}
		for _, scope := range r.URL.Query()["scope"] {
			parts := strings.Split(scope, ":") // repository:NAME:pull
			if len(parts) == 3 && parts[0] == "repository" {
				c.Access = append(c.Access, accessClaims{Type: "repository", Name: parts[1], Actions: strings.Split(parts[2], ",")})
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"token": issuer.Sign(t, c), "expires_in": 60})
	})
	a := newAuthEnv(t, accessPolicy, func(dir string) proxy.AuthConfig {
		bundle := filepath.Join(dir, "token-ca.pem")
		if err := os.WriteFile(bundle, issuer.CAPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		return proxy.AuthConfig{Token: &proxy.TokenAuth{Realm: realm, Service: "notarize-proxy", Issuer: "test-issuer", RootCertBundle: bundle}}
	})
	front.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			token.ServeHTTP(w, r)
			return
		}
		a.srv.Handler().ServeHTTP(w, r)
	})
	front.Start()
	a.pushPriv("team/app", "v1")
	ref, err := name.ParseReference(front.Listener.Addr().String()+"/team/app:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, remote.WithContext(t.Context()), remote.WithAuth(&authn.Basic{Username: "alice", Password: alicePassword}))
	if err != nil {
		t.Fatalf("alice through the token flow: %v", err)
	}
	if _, err := img.RawConfigFile(); err != nil {
		t.Fatalf("alice reads the config: %v", err)
	}
	before := a.upstreamRequests()
	if _, err := remote.Image(ref, remote.WithContext(t.Context()), remote.WithAuth(&authn.Basic{Username: "bob", Password: bobPassword})); err == nil || !strings.Contains(err.Error(), "DENIED") {
		t.Fatalf("bob through the token flow: %v", err)
	}
	if _, err := remote.Image(ref, remote.WithContext(t.Context()), remote.WithAuth(&authn.Basic{Username: "alice", Password: "wrong"})); err == nil {
		t.Fatal("a wrong password at the token server pulled")
	}
	if n := a.upstreamRequests() - before; n != 0 {
		t.Fatalf("%d upstream requests for refused clients", n)
	}
}
