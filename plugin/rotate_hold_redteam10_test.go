package plugin

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
)

// TestRedteam10RotateRestatedUntrustHidden attacks key rotate's "afterwards
// a trust policy can name NEW instead of OLD and every verdict stays the
// same" together with f17c685's promise that a recorded revocation cannot
// be hidden from a default verify once the command that recorded it
// returned: rotate re-states OLD's UNTRUSTED with NEW, which had TRUSTED
// the digest before, and returns at the receipt (no hold). A front then
// answers verify --signer NEW with the root before the re-statement (still
// within the default --max-index-lag) and NEW's old trust.
func TestRedteam10RotateRestatedUntrustHidden(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, []ledgertest.Option{ledgertest.WithConfig(func(c *ledger.Config) {
		c.MapCommitInterval = 200 * time.Millisecond
	})}, "alice", "bob")
	app := h.reg.host + "/app:v1"
	var s signResult
	if err := json.Unmarshal([]byte(h.mustRun(0, "sign", "--key", "bob", "-o", "json", app)), &s); err != nil {
		t.Fatal(err)
	}
	d, kb := s.Statements[0].Digest, s.Statements[0].KeyID
	h.mustRun(0, "sign", "--key", "alice", app)
	h.mustRun(0, "untrust", "--key", "alice", app) // later than bob's trust: rotate re-states it
	var before api.LookupResponse
	deadline := time.Now().Add(20 * time.Second)
	for {
		before = api.LookupResponse{}
		b := rt9Get(t, h.ledger.URL+api.PathDigests+d+api.PathCurrentSuffix+"?"+api.QueryKeyID+"="+kb)
		if err := json.Unmarshal(b, &before); err == nil && before.Map != nil && before.Map.RootIndex != nil && len(before.Entries) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no map root covering bob's trust")
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.indexHold = defaultIndexHold // as in production, should rotate wait
	out := h.mustRun(0, "key", "rotate", "-o", "json", "alice", "bob")
	returned := time.Now()
	var rot struct {
		Digests []rotateDigest `json:"digests"`
	}
	if err := json.Unmarshal([]byte(out), &rot); err != nil || len(rot.Digests) != 1 || rot.Digests[0].Action != rotateRestated || rot.Digests[0].Status != "UNTRUSTED" {
		t.Fatalf("rotate did not re-state the untrust: %v\n%s", err, out)
	}
	// Honest: the policy switched to bob keeps the verdict.
	if vout, verr, code := h.run("verify", "--signer", "bob", app); code == 0 {
		t.Fatalf("verify --signer bob after rotate, no front: exit 0\n%s%s", vout, verr)
	}
	front := rt9ReplayFront(t, h.ledger.URL, d, before.Map, before.Entries[0])
	if vout, verr, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "verify", "--max-index-lag", "0", "--signer", "bob", app); code != ExitCouldNotVerify {
		t.Fatalf("verify --max-index-lag 0 through the replaying front: exit %d, want %d\n%s%s", code, ExitCouldNotVerify, vout, verr)
	}
	vout, verr, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "verify", "--signer", "bob", app)
	if code == 0 {
		t.Fatalf("BYPASS: key rotate re-stated alice's UNTRUSTED with bob and returned; %v later a default verify --signer bob (the policy switched to NEW, as rotate's help says) through a front replaying the root before the re-statement exits 0:\n%s%s",
			time.Since(returned).Round(time.Millisecond), vout, verr)
	}
	if code != ExitCouldNotVerify {
		t.Fatalf("verify through the replaying front: exit %d, want %d\n%s%s", code, ExitCouldNotVerify, vout, verr)
	}
}
