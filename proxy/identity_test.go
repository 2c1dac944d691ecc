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

// identityPolicy calls the env's release key "intern" (with an email).
const identityPolicy = `
signers:
  intern: {email: intern@example.com, keys: [release.pub]}
  ops: {keys: [ops.pub]}
rules:
  - match: "**"
    require: [intern]
`

// TestDashboardShowsPolicyNameOverClaim: a statement claiming to be
// "security-team" (and its email), by a key the policy calls "intern", is
// shown everywhere as intern <intern@example.com>: the digest's history,
// the signers panel, the decision record. The claim is never shown.
func TestDashboardShowsPolicyNameOverClaim(t *testing.T) {
	e := newEnv(t, func(c *envConfig) { c.policy = identityPolicy })
	d := digestOf(t, e.push("app", "v1"))
	ent, err := notarize.Sign(t.Context(), e.release, notarize.NewStatement(d, "test", notarize.Predicate{
		Status: notarize.StatusTrusted, Kind: notarize.KindImage, Name: "security-team", Email: "security@example.com",
		Timestamp: time.Now().UTC(),
	}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.lc.Submit(t.Context(), ent); err != nil {
		t.Fatal(err)
	}
	e.sync()
	if err := e.pull("local/app:v1"); err != nil {
		t.Fatalf("pull of a digest intern trusts: %v", err)
	}
	for _, path := range []string{"/ui/digest/" + string(d), "/ui/"} {
		code, _, body := e.do(http.MethodGet, path, nil)
		if code != http.StatusOK {
			t.Fatalf("%s: HTTP %d", path, code)
		}
		page := string(body)
		if strings.Contains(page, "security-team") || strings.Contains(page, "security@example.com") {
			t.Errorf("%s shows the statement's claim:\n%s", path, page)
		}
		if !strings.Contains(page, "intern") || !strings.Contains(page, "&lt;intern@example.com&gt;") {
			t.Errorf("%s lacks the policy's name and email:\n%s", path, page)
		}
	}
	code, _, body := e.do(http.MethodGet, "/ui/digest/"+string(d), nil)
	if code != http.StatusOK || !strings.Contains(string(body), `<span class="signer">intern</span> <span class="email">&lt;intern@example.com&gt;</span>`) {
		t.Errorf("history row does not name intern:\n%s", body)
	}
	// The decision record names the policy's signer.
	code, _, body = e.do(http.MethodGet, "/ui/decisions.json?range=1h", nil)
	if code != http.StatusOK {
		t.Fatalf("decisions.json: HTTP %d", code)
	}
	var dj proxy.DecisionsJSON
	if err := json.Unmarshal(body, &dj); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(body), "security-team") {
		t.Errorf("decisions.json shows the claim: %s", body)
	}
}

// TestDashboardStrangerClaimMarked: a key outside the policy is shown by
// its ID, "not in the policy", and what it claims is marked as its claim
// (escaped), never as a signer's name.
func TestDashboardStrangerClaimMarked(t *testing.T) {
	e := newEnv(t, func(c *envConfig) { c.policy = identityPolicy })
	d := digestOf(t, e.push("app", "v1"))
	stranger := newSigner(t)
	ent, err := notarize.Sign(t.Context(), stranger, notarize.NewStatement(d, "test", notarize.Predicate{
		Status: notarize.StatusTrusted, Kind: notarize.KindImage, Name: "intern", Email: "intern@example.com", Timestamp: time.Now().UTC(),
	}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.lc.Submit(t.Context(), ent); err != nil {
		t.Fatal(err)
	}
	e.sync()
	if err := e.pull("local/app:v1"); err == nil {
		t.Fatal("a stranger claiming intern's name made the image trusted")
	}
	_, _, body := e.do(http.MethodGet, "/ui/digest/"+string(d), nil)
	page := string(body)
	// (The replica keeps a statement's name, not its email: the email of a
	// key outside the policy is not shown at all.)
	if !strings.Contains(page, `(not in the policy), claims “<span class="claim">intern</span>”`) {
		t.Errorf("the stranger's claim is not marked as one:\n%s", page)
	}
	if strings.Contains(page, `<span class="signer">intern</span>`) {
		t.Errorf("the stranger is shown as the policy's intern:\n%s", page)
	}
}
