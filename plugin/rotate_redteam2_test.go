package plugin

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// TestRedteam2RotateCannotResurrect: key rotate through a front whose key
// lookup lists, for a digest alice revoked, her older "trusted" statement
// (genuine, logged, signed by her) must not make bob trust that digest:
// rotate re-states only proven current statements. After the rotate
// (whatever its exit code), verify --signer bob of the revoked digest is
// never TRUSTED.
func TestRedteam2RotateCannotResurrect(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice", "bob")
	ds, revoked := lsAssets(t, h, 3)
	front := &lsFront{t: t, ledger: h.ledger.URL, digests: ds, perPage: 10}
	srv := httptest.NewServer(front)
	t.Cleanup(srv.Close)
	var stale notarize.Digest
	for d := range revoked {
		stale = d
	}
	front.set(func(_ int, r *api.KeyDigestsResponse) {
		for i := range r.Entries {
			e, _ := notarize.ParseEntry(r.Entries[i].Entry)
			if v, err := e.VerifyLogged(); err == nil && v.Statement.Digest() == stale {
				hist := front.history(stale, r.KeyID)
				r.Entries[i] = hist.Entries[0] // the older "trusted" statement
				r.Checkpoint = hist.Checkpoint
			}
		}
	})
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: srv.URL}, "key", "rotate", "alice", "bob")
	t.Logf("rotate through the lying front: exit %d\n%s\n%s", code, out, errOut)
	vout, verr, vcode := h.run("verify", "--signer", "bob", string(stale))
	if vcode == 0 || strings.HasPrefix(vout, "TRUSTED") {
		t.Fatalf("BYPASS: after a rotate through a front that listed alice's superseded trust, bob trusts the digest alice revoked: exit %d\n%s\n%s", vcode, vout, verr)
	}
}
