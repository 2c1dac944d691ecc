package proxy_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// Red team: what an authenticated user whom the access rules give nothing
// learns about repositories closed to them.
//
// Issue 8: a client not allowed a repository "learns nothing about it (no
// digest, no tag, no existence)". bob may pull nothing under priv/team/**;
// after alice pulls priv/team/app, bob reads the proxy's statistics.
func TestRedTeamStatsNameClosedRepositories(t *testing.T) {
	a := newAuthEnv(t, accessPolicy, htpasswdAuth)
	a.pushPriv("team/app", "v1")
	st, hdr, _ := a.get(t, "/v2/team/app/manifests/v1", "alice:"+alicePassword)
	if st != http.StatusOK {
		t.Fatalf("alice: HTTP %d", st)
	}
	digest := hdr.Get("Docker-Content-Digest")
	if digest == "" {
		t.Fatal("no digest")
	}
	// alice, who may pull it, sees it in the statistics (the test is not
	// vacuous; the record is written off the request path).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, _, body := a.get(t, "/notarize/v1/stats", "alice:"+alicePassword)
		if strings.Contains(string(body), digest) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's pull is not in the statistics: %s", body)
		}
	}
	// bob is refused the repository itself ...
	a.expectRefused(t, "/v2/team/app/manifests/v1", "bob:"+bobPassword, http.StatusForbidden, "DENIED")
	// ... and must not learn its name, digest or verdicts elsewhere.
	for _, p := range []string{"/notarize/v1/stats", "/notarize/v1/stats?repo=priv/team/app", "/notarize/v1/stats?digest=" + digest, "/metrics", "/ui/", "/ui/decisions.json", "/ui/digest/" + digest} {
		st, _, body := a.get(t, p, "bob:"+bobPassword)
		if st != http.StatusOK {
			continue
		}
		for _, secret := range []string{digest, "team/app"} {
			if strings.Contains(string(body), secret) {
				t.Errorf("BYPASS: bob, denied priv/team/**, reads %q from GET %s", secret, p)
			}
		}
	}
}
