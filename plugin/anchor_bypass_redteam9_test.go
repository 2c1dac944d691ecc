// Red team 9's F1 end to end (a root from before the untrust replayed after
// untrust returned) and F3 (an untrust dated before a hidden statement):
// bypasses until untrust waited for its hold and commands other than verify
// stopped taking recent roots as the proof.
package plugin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
)

// TestRedteam9UntrustIndexedThenRootReplayed attacks SECURITY.md's
// "untrust ... return only once a map root covers what they recorded, so a
// verify that starts after they return is proven against a root that holds
// the revocation": untrust returns "indexed": true; a verify started after
// it, through a front that answers with the root before the untrust (still
// within the verifier's --max-index-lag) and alice's trust, must exit 4.
func TestRedteam9UntrustIndexedThenRootReplayed(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, []ledgertest.Option{ledgertest.WithConfig(func(c *ledger.Config) {
		c.MapCommitInterval = 2 * time.Second
	})}, "alice")
	h.indexHold = defaultIndexHold
	app := h.reg.host + "/app:v1"
	var s signResult
	if err := json.Unmarshal([]byte(h.mustRun(0, "sign", "-o", "json", app)), &s); err != nil {
		t.Fatal(err)
	}
	d, ka := s.Statements[0].Digest, s.Statements[0].KeyID
	before := rt9WaitRoot(t, h.ledger.URL, d, ka)
	var u signResult
	if err := json.Unmarshal([]byte(h.mustRun(0, "untrust", "-o", "json", app)), &u); err != nil {
		t.Fatal(err)
	}
	if u.Indexed == nil || !*u.Indexed {
		t.Fatalf("untrust did not report indexed: %+v", u)
	}
	returned := time.Now()
	front := rt9ReplayFront(t, h.ledger.URL, d, before.Map, before.Entries[0])
	// The front's answer is well formed: it is refused by a verify that
	// reads the log after the root itself.
	if out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "verify", "--max-index-lag", "0", app); code != ExitCouldNotVerify {
		t.Fatalf("verify --max-index-lag 0 through the replaying front: exit %d, want %d\n%s%s", code, ExitCouldNotVerify, out, errOut)
	}
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "verify", app)
	if code == 0 {
		t.Fatalf("BYPASS: untrust returned \"indexed\": true; %v later a verify with the default --max-index-lag through a front replaying the map root before the untrust exits 0:\n%s%s",
			time.Since(returned).Round(time.Millisecond), out, errOut)
	}
	if code != ExitCouldNotVerify {
		t.Fatalf("verify through the replaying front: exit %d, want %d\n%s%s", code, ExitCouldNotVerify, out, errOut)
	}
}

// TestRedteam9UntrustSkewHiddenByFront (W1): untrust's statementTime (the
// clock-skew defence of TestSignSupersedesDespiteClockSkew) reads the
// key's current statement with an anchored client (every command but
// verify takes DefaultMaxIndexLag, and untrust has no flag to opt out). A
// front on the untrusting machine's path answers that one lookup with the
// root before alice's trust (absence): the trust, signed a moment ago on a
// machine whose clock runs an hour ahead, is hidden, so the untrust is
// dated by the local clock, before the trust, and never supersedes it.
// untrust exits 0, "indexed": true; an honest verify, with no front at
// all, still says TRUSTED.
func TestRedteam9UntrustSkewHiddenByFront(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, []ledgertest.Option{ledgertest.WithConfig(func(c *ledger.Config) {
		c.MapCommitInterval = 200 * time.Millisecond
	})}, "alice")
	app := h.reg.host + "/app:v1"
	d := string(digestOf(t, h.reg.image))
	// alice's key ID, and a map root before anything about d.
	other, _ := rt9SignedBefore(t, h, h.reg.host+"/multi:v1")
	var before api.LookupResponse
	if err := json.Unmarshal(rt9Get(t, h.ledger.URL+api.PathDigests+d+api.PathCurrentSuffix+"?"+api.QueryKeyID+"="+other.KeyID), &before); err != nil || before.Map == nil || before.Map.RootIndex == nil || len(before.Entries) != 0 {
		t.Fatalf("answer before the trust: %+v %v", before, err)
	}
	h.mu.Lock()
	h.clock = h.clock.Add(time.Hour) // the signing machine's clock runs an hour ahead
	h.mu.Unlock()
	h.mustRun(0, "sign", app)
	h.mu.Lock()
	h.clock = h.clock.Add(-time.Hour)
	h.mu.Unlock()
	front := rt9ReplayOnce(t, h.ledger.URL, d, before.Map)
	var u signResult
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "untrust", "-o", "json", app)
	if code == 0 {
		_ = json.Unmarshal([]byte(out), &u)
		if vout, verr, vcode := h.runWithEnv(nil, "verify", app); vcode == 0 {
			t.Fatalf("BYPASS: untrust exited 0 (indexed %v, stderr %q) through a front that hid alice's newer-dated trust from its clock check; an honest verify afterwards, no front: exit 0\n%s%s",
				u.Indexed != nil && *u.Indexed, errOut, vout, verr)
		}
		return
	}
	// untrust reads the whole log after the root (only verify takes a
	// recent root as the proof): the front's answer is caught before
	// anything is signed.
	if code != 1 || !strings.Contains(out+errOut, "complete") {
		t.Fatalf("untrust through the front: exit %d, want 1 and the answer not proven complete\n%s%s", code, out, errOut)
	}
	h.mustRun(0, "verify", app) // nothing was recorded: alice's trust stands, as she has not untrusted it yet
}

// rt9ReplayOnce answers the first current lookup of d with the map proof
// old and no entries (rt9Replay), and passes everything else, later
// lookups of d included, through.
func rt9ReplayOnce(t *testing.T, upstream, d string, old *api.MapProof) *httptest.Server {
	t.Helper()
	var done atomic.Bool
	return rt9Replay(t, upstream, d, old, nil, func(r *http.Request) bool {
		return r.URL.Path == api.PathDigests+d+api.PathCurrentSuffix && !done.Swap(true)
	})
}
