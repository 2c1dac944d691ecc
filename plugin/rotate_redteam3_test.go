package plugin

import (
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// TestRedteam3RotateAfterRevokerRevocation: alice's key is stolen and,
// as she no longer holds it, bob (the key her verifiers designate as its
// revoker) revokes it. The thief signs "trusted" on its build, backdated.
// Verifiers that designate bob refuse the build. alice then moves to a
// new key with key rotate: the new key must never vouch for the thief's
// build (rotate carrying the thief's statement over would launder it
// through a key nobody revoked).
func TestRedteam3RotateAfterRevokerRevocation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice", "bob")
	approved, _ := writeFile(t, "approved", "approved before the theft")
	stolen, stolenD := writeFile(t, "stolen", "the thief's build")
	h.mustRun(0, "sign", "--key", "alice", approved)
	h.mustRun(0, "key", "revoke", "--yes", "--revoker", "bob", "alice")
	th := newThief(t, h, "alice")
	th.state(stolenD, notarize.StatusTrusted, notarize.KindFile, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	h.mustRun(2, "verify", "--signer", "alice", "--revoker", "bob", stolen)

	h.mustRun(0, "key", "generate", "--name", "alice2")
	out, errOut, code := h.run("key", "rotate", "alice", "alice2")
	t.Logf("rotate: exit %d\n%s%s", code, out, errOut)
	if vout, _, vcode := h.run("verify", "--signer", "alice2", stolen); vcode == 0 {
		t.Fatalf("BYPASS: after a revocation by alice's designated revoker, key rotate re-stated the thief's build with alice's new key, which verifies it TRUSTED:\n%s\nverify:\n%s", out, vout)
	}
}
