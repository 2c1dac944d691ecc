package proxy_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy"
)

// TestDecisionsPersistAcrossRestart: counts per digest and per repository
// (allowed, refused, audit-only, last verdict, signer, reason) and the
// recent refusals are written to DataDir/decisions.db and are all there
// after a restart.
func TestDecisionsPersistAcrossRestart(t *testing.T) {
	e := newEnv(t)
	signed := digestOf(t, e.push("app", "v1"))
	unsigned := digestOf(t, e.push("other", "v1"))
	e.push("audit/thing", "v1")
	e.sign(e.release, signed, notarize.StatusTrusted)
	e.sync()
	for range 2 {
		if err := e.pull("local/app:v1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.pull("local/other:v1"); err == nil {
		t.Fatal("unsigned image served")
	}
	if err := e.pull("local/audit/thing:v1"); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		st := e.stats("?repo=local/app")
		if len(st.Repositories) != 1 || st.Repositories[0].Allowed != 2 || st.Repositories[0].LastSigner != "release" || st.Repositories[0].LastDigest != signed {
			t.Fatalf("%s: local/app counts %+v", when, st.Repositories)
		}
		st = e.stats("?digest=" + string(unsigned))
		if len(st.Digests) != 1 || st.Digests[0].Denied != 1 || st.Digests[0].LastVerdict != "UNKNOWN" || !strings.Contains(st.Digests[0].LastReason, "no statement from release") {
			t.Fatalf("%s: unsigned digest counts %+v", when, st.Digests)
		}
		st = e.stats("?repo=local/audit/thing")
		if len(st.Repositories) != 1 || st.Repositories[0].AuditOnly != 1 || st.Repositories[0].Allowed != 1 {
			t.Fatalf("%s: audit counts %+v", when, st.Repositories)
		}
		var dj proxy.DecisionsJSON
		code, _, body := e.do(http.MethodGet, "/ui/decisions.json?range=1h", nil)
		if err := json.Unmarshal(body, &dj); code != http.StatusOK || err != nil {
			t.Fatalf("%s: decisions.json: %d %s", when, code, body)
		}
		if dj.Totals.Denied != 1 || dj.Totals.AuditOnly != 1 || dj.Totals.Allowed != 3 || len(dj.Refusals) != 1 || dj.Refusals[0].Digest != unsigned {
			t.Fatalf("%s: decisions over time %+v", when, dj)
		}
		var perRepo proxy.DecisionsJSON
		_, _, body = e.do(http.MethodGet, "/ui/decisions.json?range=24h&upstream=local&repo=app&verdict=TRUSTED&signer=release", nil)
		if err := json.Unmarshal(body, &perRepo); err != nil || perRepo.Totals.Allowed != 2 || perRepo.Totals.Denied != 0 || len(perRepo.Refusals) != 0 {
			t.Fatalf("%s: filtered decisions %s", when, body)
		}
	}
	check("before restart")
	e.restart()
	check("after restart")
}

// TestDashboardFiltersRefuseBadValues: unknown filter values are a 400,
// not silently ignored.
func TestDashboardFiltersRefuseBadValues(t *testing.T) {
	e := newEnv(t)
	for _, q := range []string{"?verdict=MAYBE", "?range=1y", "?outcome=<script>", "?repo=" + strings.Repeat("a", 300)} {
		code, _, body := e.do(http.MethodGet, "/ui/decisions.json"+q, nil)
		if code != http.StatusBadRequest {
			t.Errorf("decisions.json%s: HTTP %d %s", q, code, body)
		}
		code, hdr, body := e.do(http.MethodGet, "/ui/"+q, nil)
		if code != http.StatusBadRequest || hdr.Get("Content-Security-Policy") == "" || strings.Contains(string(body), "<script>") {
			t.Errorf("/ui/%s: HTTP %d, CSP %q", q, code, hdr.Get("Content-Security-Policy"))
		}
	}
	if code, _, _ := e.do(http.MethodGet, "/ui/digest/sha256:nothex", nil); code != http.StatusBadRequest {
		t.Errorf("digest page of a bad digest: HTTP %d", code)
	}
	if code, _, _ := e.do(http.MethodGet, "/ui/static/", nil); code != http.StatusNotFound {
		t.Errorf("static directory listing: HTTP %d", code)
	}
}

// TestDashboardBehindAuth: with client authentication on, the dashboard,
// its data and its assets need credentials like /notarize/v1/stats; every
// page has a strict Content-Security-Policy.
func TestDashboardBehindAuth(t *testing.T) {
	a := newAuthEnv(t, accessPolicy, htpasswdAuth)
	alice := "alice:" + alicePassword
	for _, p := range []string{"/ui/", "/ui", "/ui/decisions.json", "/ui/static/style.css", "/ui/digest/sha256:" + strings.Repeat("a", 64)} {
		a.expectRefused(t, p, "", http.StatusUnauthorized, "UNAUTHORIZED")
		a.expectRefused(t, p, "alice:wrong", http.StatusUnauthorized, "UNAUTHORIZED")
	}
	st, hdr, body := a.get(t, "/ui/", alice)
	if st != http.StatusOK || !strings.Contains(string(body), "Recent refusals") {
		t.Fatalf("alice /ui/: HTTP %d %.200s", st, body)
	}
	csp := hdr.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %s", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(string(body), "<script>") || strings.Contains(string(body), "style=") {
		t.Error("inline script or style in the dashboard")
	}
	if st, hdr, _ := a.get(t, "/ui/static/app.js", alice); st != http.StatusOK || !strings.Contains(hdr.Get("Content-Type"), "javascript") {
		t.Errorf("app.js: HTTP %d %s", st, hdr.Get("Content-Type"))
	}
}

func (e *env) stats(query string) proxy.Stats {
	e.t.Helper()
	code, _, body := e.do(http.MethodGet, "/notarize/v1/stats"+query, nil)
	var st proxy.Stats
	if err := json.Unmarshal(body, &st); code != http.StatusOK || err != nil {
		e.t.Fatalf("stats%s: %d %s", query, code, body)
	}
	return st
}

// TestDashboardHidesClosedRepositories: with access rules, the dashboard,
// its JSON and /notarize/v1/stats name only what the user may pull: bob,
// given nothing under priv/team/**, learns neither the repository nor the
// digest alice pulled there (and a digest page answers as for an unknown
// digest), while alice sees both.
func TestDashboardHidesClosedRepositories(t *testing.T) {
	a := newAuthEnv(t, accessPolicy, htpasswdAuth)
	a.pushPriv("team/app", "v1")
	alice, bob := "alice:"+alicePassword, "bob:"+bobPassword
	st, hdr, _ := a.get(t, "/v2/team/app/manifests/v1", alice)
	digest := hdr.Get("Docker-Content-Digest")
	if st != http.StatusOK || digest == "" {
		t.Fatalf("alice pulls: HTTP %d", st)
	}
	pages := []string{"/ui/", "/ui/?range=30d&outcome=allowed", "/ui/decisions.json", "/notarize/v1/stats",
		"/notarize/v1/stats?repo=priv/team/app", "/notarize/v1/stats?digest=" + digest}
	for _, p := range pages {
		st, _, body := a.get(t, p, bob)
		if st != http.StatusOK {
			t.Fatalf("bob GET %s: HTTP %d", p, st)
		}
		for _, secret := range []string{digest, "team/app"} {
			if strings.Contains(string(body), secret) {
				t.Errorf("bob reads %q from GET %s", secret, p)
			}
		}
	}
	// Nor how many decisions were made there.
	_, _, body := a.get(t, "/notarize/v1/stats", bob)
	var st2 proxy.Stats
	if err := json.Unmarshal(body, &st2); err != nil {
		t.Fatal(err)
	}
	if len(st2.Decisions) != 0 || st2.Tracked != 0 {
		t.Errorf("bob's stats count decisions at repositories closed to him: %+v", st2)
	}
	stUnknown, _, bodyUnknown := a.get(t, "/ui/digest/sha256:"+strings.Repeat("0", 64), bob)
	stKnown, _, bodyKnown := a.get(t, "/ui/digest/"+digest, bob)
	if stKnown != http.StatusNotFound || stKnown != stUnknown || string(bodyKnown) != string(bodyUnknown) {
		t.Errorf("bob's digest pages: known %d %q, unknown %d %q: want the same 404", stKnown, bodyKnown, stUnknown, bodyUnknown)
	}
	for _, p := range []string{"/ui/", "/notarize/v1/stats", "/ui/digest/" + digest} {
		if st, _, body := a.get(t, p, alice); st != http.StatusOK || !strings.Contains(string(body), "team/app") {
			t.Errorf("alice GET %s: HTTP %d, lacks team/app", p, st)
		}
	}
}

// TestDashboardEscapesLedgerText: anyone can log a statement about any
// digest with their own key, and its name and kind are shown on the
// digest's page: they are escaped as text, never markup, and a key not in
// the policy is labelled so.
func TestDashboardEscapesLedgerText(t *testing.T) {
	e := newEnv(t)
	d := digestOf(t, e.push("app", "v1"))
	stranger := newSigner(t)
	ent, err := notarize.Sign(t.Context(), stranger, notarize.NewStatement(d, "test", notarize.Predicate{
		Status: notarize.StatusTrusted, Kind: notarize.KindImage, Name: `<script>alert(1)</script><img src=x onerror=alert(2)>`, Timestamp: time.Now().UTC(),
	}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.lc.Submit(t.Context(), ent); err != nil {
		t.Skipf("the ledger refuses the hostile name itself: %v", err)
	}
	e.sync()
	if err := e.pull("local/app:v1"); err == nil {
		t.Fatal("a stranger's statement made the image trusted")
	}
	code, _, body := e.do(http.MethodGet, "/ui/digest/"+string(d), nil)
	if code != http.StatusOK {
		t.Fatalf("digest page: HTTP %d", code)
	}
	page := string(body)
	if strings.Contains(page, "<script>alert") || strings.Contains(page, "<img src=x") {
		t.Fatal("a statement's name is rendered as markup")
	}
	if !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") || !strings.Contains(page, "(not in the policy)") {
		t.Errorf("the stranger's statement is not shown as text from a key outside the policy:\n%s", page)
	}
}
