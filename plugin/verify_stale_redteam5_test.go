package plugin

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// TestRedteam5VerifyStaleRevocationLookup: the attack of
// TestRedteam5LsStaleRevocationLookup against verify. A teammate verified
// a file before alice revoked her stolen key (nothing said about it then:
// UNKNOWN); the thief then trusts the file with the key. Through a front
// that answers the revocation lookup from the record of the first run
// (an honest answer under the older, stored checkpoint) and everything
// else fresh, verify must not say TRUSTED: CurrentWithRevocations asks
// the revocations again and fails closed.
func TestRedteam5VerifyStaleRevocationLookup(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	approved, _ := writeFile(t, "approved", "approved before the theft")
	h.mustRun(0, "sign", "--key", "alice", approved)
	stolen, stolenD := writeFile(t, "stolen", "trusted by the thief after the revocation")
	revD, err := notarize.KeyRevocationDigest(newHarnessKeyID(t, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	front := &redteam5Front{ledger: h.ledger.URL, stale: revD.Hex(), recording: true, record: map[string][]byte{}}
	srv := httptest.NewServer(front)
	t.Cleanup(srv.Close)
	viaFront := map[string]string{EnvHome: redteam5TeamHome(t), EnvLedger: srv.URL}
	verify := []string{"verify", "--signer", "testdata/keys/alice.pub", stolen}
	if out, errOut, code := h.runWithEnv(viaFront, verify...); code != 2 {
		t.Fatalf("the first verify: exit %d, want 2 (UNKNOWN)\n%s\n%s", code, out, errOut)
	}
	front.mu.Lock()
	front.recording = false
	front.mu.Unlock()
	h.mustRun(0, "key", "revoke", "--yes", "alice")
	newThief(t, h, "alice").state(stolenD, notarize.StatusTrusted, notarize.KindFile, time.Now())

	out, errOut, code := h.runWithEnv(viaFront, verify...)
	front.mu.Lock()
	replayed := front.replayed
	front.mu.Unlock()
	if replayed == 0 {
		t.Fatal("the front replayed no stale revocation lookup: the test proves nothing")
	}
	if code == 0 {
		t.Fatalf("BYPASS: verify says TRUSTED for the thief's file through a front answering the revocation lookup from an older checkpoint\n%s\n%s", out, errOut)
	}
	if code != ExitCouldNotVerify {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, ExitCouldNotVerify, out, errOut)
	}
}
