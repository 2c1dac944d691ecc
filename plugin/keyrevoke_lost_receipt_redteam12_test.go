package plugin

import (
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// TestRedteam12KeyRevokeReceiptLost: key revoke whose submission the
// ledger logs but whose receipt a front replaces with a 502
// (rt12ForwardThenFail). Before the fix the command exited non-zero
// without waiting for the revocation in the log; right after it returned,
// the thief signed "trusted" with the stolen key, and a front answering
// verify's revocation lookup with the map root from before the revocation
// (still within the default --max-index-lag) got a default verify of the
// thief's file to exit 0 (BYPASS). Now the revocation is looked up after
// the 502, found, reported and waited for.
func TestRedteam12KeyRevokeReceiptLost(t *testing.T) {
	t.Parallel()
	ra := newRevokeAttack(t)
	h, kd, before := ra.h, ra.digest, ra.before

	lying := rt12ForwardThenFail(t, h.ledger.URL)
	h.indexHold = defaultIndexHold // as in production
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: lying.URL}, "key", "revoke", "--yes", "alice")
	returned := time.Now()
	if code != 0 || !strings.Contains(out, "Revoked key") || !strings.Contains(errOut, "answer to the submission") {
		t.Errorf("key revoke through a front that logs it and answers 502: exit %d, want 0, the revocation reported and a warning that the answer was lost:\n%s%s", code, out, errOut)
	}
	// The ledger logged it: run again directly, it says so.
	if again := h.mustRun(0, "key", "revoke", "--index-wait", "0", "--yes", "alice"); !strings.Contains(again, "Already revoked") {
		t.Skipf("the ledger did not log the revocation behind the 502: %s", again)
	}

	th := newThief(t, h, "alice")
	stolen, stolenD := writeFile(t, "stolen", "the thief's build")
	th.state(stolenD, notarize.StatusTrusted, notarize.KindFile, time.Now())
	front := rt10ReplayRevocationPage(t, h.ledger.URL, string(kd), before.Map)
	vout, verr, vcode := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "verify", "--signer", "alice", stolen)
	if vcode == 0 {
		t.Fatalf("BYPASS: key revoke's submission was logged behind a 502; the command exited %d without waiting; %v later a default verify of the thief's statement, through a front replaying the root before the revocation, exits 0:\nkey revoke stdout:\n%s\nkey revoke stderr:\n%s\nverify:\n%s%s",
			code, time.Since(returned).Round(time.Millisecond), out, errOut, vout, verr)
	}
	if vcode != ExitCouldNotVerify && vcode != 2 {
		t.Fatalf("verify of the thief's statement through the replaying front: exit %d, want %d or 2\n%s%s", vcode, ExitCouldNotVerify, out, errOut)
	}
}
