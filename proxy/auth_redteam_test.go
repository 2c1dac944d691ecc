package proxy_test

import (
	"net/http"
	"strings"
	"testing"
)

// Red team: attacks on client authentication and the access rules.

// TestRedTeamAccessRuleSpellings: bob may not pull priv/team/**. Every other
// spelling of that target (upstream prefix, ns by name and by host, %2F,
// case, a trailing slash, two ns parameters, HEAD, Range, tags, referrers,
// blobs) must be refused too, before any upstream request.
func TestRedTeamAccessRuleSpellings(t *testing.T) {
	a := newAuthEnv(t, accessPolicy, htpasswdAuth)
	a.pushPriv("team/app", "v1")
	privHost := a.upHost
	zero := "sha256:" + strings.Repeat("0", 64)
	paths := []string{
		"/v2/team/app/manifests/v1",
		"/v2/priv/team/app/manifests/v1",
		"/v2/team/app/manifests/v1?ns=priv",
		"/v2/team/app/manifests/v1?ns=" + privHost,
		"/v2/priv/team/app/manifests/v1?ns=priv",
		"/v2/priv/team/app/manifests/v1?ns=" + privHost,
		"/v2/team%2Fapp/manifests/v1",
		"/v2/priv%2Fteam%2Fapp/manifests/v1",
		"/v2/team/app/manifests/v1?ns=local&ns=priv",
		"/v2/team/app/manifests/v1?ns=priv&ns=local",
		"/v2/team/./app/manifests/v1",
		"/v2/team//app/manifests/v1",
		"/v2/Team/app/manifests/v1",
		"/v2/team/app/tags/list",
		"/v2/team/app/tags/list?ns=" + strings.ToUpper(privHost),
		"/v2/team/app/referrers/" + zero,
		"/v2/team/app/blobs/" + zero,
		"/v2/priv/team/app/blobs/" + zero + "?ns=priv",
	}
	for _, p := range paths {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			before := a.upstreamRequests()
			req, err := http.NewRequestWithContext(t.Context(), method, a.authed.URL+p, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.SetBasicAuth("bob", bobPassword)
			req.Header.Set("Range", "bytes=0-10")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Errorf("%s %s as bob: HTTP %d, want a refusal", method, p, resp.StatusCode)
			}
			if n := a.upstreamRequests() - before; n != 0 {
				t.Errorf("%s %s as bob: %d upstream requests", method, p, n)
			}
		}
	}
	// alice gets it under the plain spelling (the test is not vacuous).
	if st, _, body := a.get(t, "/v2/team/app/manifests/v1", "alice:"+alicePassword); st != http.StatusOK {
		t.Fatalf("alice: HTTP %d %s", st, body)
	}
}
