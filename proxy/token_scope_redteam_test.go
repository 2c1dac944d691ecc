package proxy_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/proxy"
)

// Red team: token scope names versus resolved targets.

// TestRedTeamTokenScopeBindsUpstream: with token authentication the token
// server decides who may pull which repository, by the name in its scope.
// The proxy checks "repository:NAME:pull" for NAME as sent in the path,
// but with containerd's ?ns= the same NAME routes to another upstream. A
// token granted for team/app (the default upstream's, priv/team/app) must
// not read local/team/app, another upstream's repository of the same name.
//
// Policy without access rules: the token server is the only authority, as
// in a distribution deployment with token auth.
func TestRedTeamTokenScopeBindsUpstream(t *testing.T) {
	const tokenOnlyPolicy = `
signers:
  release: {keys: [release.pub]}
rules:
  - match: "**"
    mode: off
`
	issuer := newTokenIssuer(t, "test-issuer")
	a := newAuthEnv(t, tokenOnlyPolicy, func(dir string) proxy.AuthConfig {
		bundle := filepath.Join(dir, "token-ca.pem")
		if err := os.WriteFile(bundle, issuer.CAPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		return proxy.AuthConfig{Token: &proxy.TokenAuth{Realm: "https://auth.example/token", Service: "notarize-proxy", Issuer: "test-issuer", RootCertBundle: bundle}}
	})
	a.pushPriv("team/app", "v1") // priv/team/app: what bob was granted
	a.push("team/app", "v1")     // local/team/app: another upstream's repository, not granted
	now := time.Now()
	c := tokenClaims{Issuer: "test-issuer", Subject: "bob", Audience: "notarize-proxy", Expiration: now.Add(5 * time.Minute).Unix(),
		NotBefore: now.Add(-time.Minute).Unix(), IssuedAt: now.Unix(), JWTID: "j1",
		Access: []accessClaims{{Type: "repository", Name: "team/app", Actions: []string{"pull"}}}}
	bearer := "Bearer " + issuer.Sign(t, c)

	if st, _, body := a.get(t, "/v2/team/app/manifests/v1", bearer); st != http.StatusOK {
		t.Fatalf("the granted repository: HTTP %d %s", st, body)
	}
	// The prefixed spelling of the other upstream's repository is refused ...
	if st, _, _ := a.get(t, "/v2/local/team/app/manifests/v1", bearer); st == http.StatusOK {
		t.Fatal("a token for team/app read local/team/app through the /v2/local/ prefix")
	}
	// ... and so must the ns spelling of the same target be.
	for _, ns := range []string{"local", a.env.upHost} {
		st, _, body := a.get(t, "/v2/team/app/manifests/v1?ns="+ns, bearer)
		if st == http.StatusOK {
			t.Errorf("BYPASS: a token granting repository:team/app:pull (priv/team/app) read local/team/app with ?ns=%s: HTTP 200, %d bytes", ns, len(body))
		}
		st, _, body = a.get(t, "/v2/team/app/tags/list?ns="+ns, bearer)
		if st == http.StatusOK {
			t.Errorf("BYPASS: the same token listed local/team/app's tags with ?ns=%s: %s", ns, body)
		}
	}
}

// TestTokenScopeOfNs: the scope a token must grant, and the Bearer
// challenge names, is the name that reaches the same repository without
// ?ns=: containerd's forms of the default upstream keep the plain name, any
// other upstream's ns form asks for "UPSTREAM/REPO", and a token for
// another upstream's "local/team/app" does not read the default upstream's
// repository of that name through ?ns=DEFAULT.
func TestTokenScopeOfNs(t *testing.T) {
	const tokenOnlyPolicy = `
signers:
  release: {keys: [release.pub]}
rules:
  - match: "**"
    mode: off
`
	issuer := newTokenIssuer(t, "test-issuer")
	a := newAuthEnv(t, tokenOnlyPolicy, func(dir string) proxy.AuthConfig {
		bundle := filepath.Join(dir, "token-ca.pem")
		if err := os.WriteFile(bundle, issuer.CAPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		return proxy.AuthConfig{Token: &proxy.TokenAuth{Realm: "https://auth.example/token", Service: "notarize-proxy", Issuer: "test-issuer", RootCertBundle: bundle}}
	})
	a.pushPriv("team/app", "v1")       // priv/team/app
	a.pushPriv("local/team/app", "v1") // priv/local/team/app
	a.push("team/app", "v1")           // local/team/app
	now := time.Now()
	bearer := func(names ...string) string {
		c := tokenClaims{Issuer: "test-issuer", Subject: "bob", Audience: "notarize-proxy", Expiration: now.Add(5 * time.Minute).Unix(),
			NotBefore: now.Add(-time.Minute).Unix(), IssuedAt: now.Unix(), JWTID: "j2"}
		for _, n := range names {
			c.Access = append(c.Access, accessClaims{Type: "repository", Name: n, Actions: []string{"pull"}})
		}
		return "Bearer " + issuer.Sign(t, c)
	}
	for _, tc := range []struct {
		path, scope string // scope: what the challenge names
	}{
		{"/v2/team/app/manifests/v1", "team/app"},
		{"/v2/team/app/manifests/v1?ns=priv", "team/app"},
		{"/v2/team/app/manifests/v1?ns=" + a.upHost, "team/app"},
		{"/v2/priv/team/app/manifests/v1?ns=priv", "team/app"}, // containerd with override_path
		{"/v2/local/team/app/manifests/v1", "local/team/app"},
		{"/v2/team/app/manifests/v1?ns=local", "local/team/app"},
		{"/v2/team/app/manifests/v1?ns=" + a.env.upHost, "local/team/app"},
		{"/v2/local/team/app/manifests/v1?ns=priv", "priv/local/team/app"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			st, hdr, _ := a.get(t, tc.path, "")
			want := `Bearer realm="https://auth.example/token",service="notarize-proxy",scope="repository:` + tc.scope + `:pull"`
			if st != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") != want {
				t.Fatalf("HTTP %d, challenge %q, want 401 and %q", st, hdr.Get("WWW-Authenticate"), want)
			}
			if st, _, body := a.get(t, tc.path, bearer(tc.scope)); st != http.StatusOK {
				t.Fatalf("with a token for %s: HTTP %d %s", tc.scope, st, body)
			}
		})
	}
	// A token for the local upstream's local/team/app does not read the
	// default upstream's local/team/app through ?ns=priv.
	if st, _, body := a.get(t, "/v2/local/team/app/manifests/v1?ns=priv", bearer("local/team/app")); st != http.StatusUnauthorized {
		t.Errorf("a token for local/team/app read priv/local/team/app with ?ns=priv: HTTP %d %s", st, body)
	}
}
