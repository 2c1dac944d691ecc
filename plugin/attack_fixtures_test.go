package plugin

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/notarize"
)

// revokeAttack is the set-up the key revoke attacks share (red teams 10,
// 12 and 13): a harness for alice whose ledger commits a map root every
// 200 ms, with one statement of hers logged; her key ID, her key's
// revocation digest, and the ledger's answer to the lookup of that digest
// under a map root from before any revocation: what a replaying front
// shows verify.
type revokeAttack struct {
	h      *harness
	keyID  string
	digest notarize.Digest
	before api.LookupResponse
}

func newRevokeAttack(t *testing.T) revokeAttack {
	t.Helper()
	h := newHarnessWith(t, []ledgertest.Option{ledgertest.WithConfig(func(c *ledger.Config) {
		c.MapCommitInterval = 200 * time.Millisecond
	})}, "alice")
	warm, _ := writeFile(t, "warm", "a statement, so that the ledger commits a map root")
	h.mustRun(0, "sign", "--key", "alice", warm)
	ka := newHarnessKeyID(t, "alice")
	kd, err := notarize.KeyRevocationDigest(ka)
	if err != nil {
		t.Fatal(err)
	}
	return revokeAttack{h: h, keyID: ka, digest: kd, before: rt13RootWithout(t, h.ledger.URL, string(kd), ka)}
}

// rt13RootWithout waits for the ledger's answer to the lookup of d by
// keyID under a map root, with no records, and returns it.
func rt13RootWithout(t *testing.T, ledgerURL, d, keyID string) api.LookupResponse {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var lr api.LookupResponse
		b := rt9Get(t, ledgerURL+api.PathDigests+d+"?"+api.QueryKeyID+"="+keyID)
		if err := json.Unmarshal(b, &lr); err == nil && lr.Map != nil && lr.Map.RootIndex != nil && len(lr.Entries) == 0 {
			return lr
		}
		if time.Now().After(deadline) {
			t.Fatal("no map root before the revocation")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// untrustAttack is the set-up the lost-receipt untrust attacks share (red
// teams 12 and 13): a harness for alice whose ledger commits a map root
// every 200 ms, the registry's multi:v1 signed by her, her statement
// about it, and the ledger's answer to its lookup under a map root that
// covers the trust: what a replaying front shows verify after an untrust.
type untrustAttack struct {
	h      *harness
	ref    string // the registry reference signed
	index  signOutput
	before api.LookupResponse
}

func newUntrustAttack(t *testing.T) untrustAttack {
	t.Helper()
	h := newHarnessWith(t, []ledgertest.Option{ledgertest.WithConfig(func(c *ledger.Config) {
		c.MapCommitInterval = 200 * time.Millisecond
	})}, "alice")
	multi := h.reg.host + "/multi:v1"
	var s signResult
	if err := json.Unmarshal([]byte(h.mustRun(0, "sign", "-o", "json", multi)), &s); err != nil || len(s.Statements) != 1 {
		t.Fatalf("sign: %v %+v", err, s)
	}
	index := s.Statements[0]
	return untrustAttack{h: h, ref: multi, index: index, before: rt10CoveredTrust(t, h.ledger.URL, index.Digest, index.KeyID)}
}
