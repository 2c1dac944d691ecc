package plugin

import (
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
)

// TestSignWithSelfRevokedKeyRefused: once alice revoked her own key, a
// ledger as it ships (AdmitSelfRevoked off) refuses her new statements,
// and sign says why and what to do, exit 1; what she signed before still
// verifies. A thief holding the key gets the same answer, so he cannot
// fill the log with statements that would not count.
func TestSignWithSelfRevokedKeyRefused(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, []ledgertest.Option{ledgertest.WithConfig(func(c *ledger.Config) {
		c.AdmitSelfRevoked = false
	})}, "alice")
	approved, _ := writeFile(t, "approved", "approved before the revocation")
	later, _ := writeFile(t, "later", "signed after the revocation")
	h.mustRun(0, "sign", "--key", "alice", approved)
	h.mustRun(0, "key", "revoke", "--yes", "--reason", "laptop stolen", "alice")

	out, errOut, code := h.run("sign", "--key", "alice", later)
	if code != ExitError {
		t.Fatalf("sign with a self-revoked key: exit %d, want %d\n%s%s", code, ExitError, out, errOut)
	}
	for _, want := range []string{"KEY_REVOKED", "revoked itself at log index", "sign with another key"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("sign with a self-revoked key: stderr lacks %q:\n%s", want, errOut)
		}
	}
	h.mustRun(0, "verify", "--signer", "alice", approved)
}
