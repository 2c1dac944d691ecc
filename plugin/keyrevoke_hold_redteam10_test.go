package plugin

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// TestRedteam10KeyRevokeThenRevocationRootReplayed: once key revoke
// returns, the thief signs "trusted" with the stolen key, and a front
// answers verify's revocation lookup (the key-revocation digest, a paged
// lookup) with the map root from before the revocation and no records
// (its absence proof, the root re-proven under the newest checkpoint). A
// default verify of the thief's file must not exit 0: key revoke's hold
// made every root without the revocation too old for the verifier. Fails
// with the hold at 0.
func TestRedteam10KeyRevokeThenRevocationRootReplayed(t *testing.T) {
	t.Parallel()
	ra := newRevokeAttack(t)
	h, kd, before := ra.h, ra.digest, ra.before
	h.indexHold = defaultIndexHold // as in production
	h.mustRun(0, "key", "revoke", "--yes", "alice")
	returned := time.Now()
	th := newThief(t, h, "alice")
	stolen, stolenD := writeFile(t, "stolen", "the thief's build")
	th.state(stolenD, notarize.StatusTrusted, notarize.KindFile, time.Now())

	front := rt10ReplayRevocationPage(t, h.ledger.URL, string(kd), before.Map)
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "verify", "--signer", "alice", stolen)
	if code == 0 {
		t.Fatalf("BYPASS: key revoke returned; %v later a default verify of the thief's statement, through a front replaying the root before the revocation for its revocation lookup, exits 0:\n%s%s",
			time.Since(returned).Round(time.Millisecond), out, errOut)
	}
	if code != ExitCouldNotVerify && code != 2 {
		t.Fatalf("verify of the thief's statement through the replaying front: exit %d, want %d (answer refused) or 2 (revocation seen)\n%s%s", code, ExitCouldNotVerify, out, errOut)
	}
}

// rt10ReplayRevocationPage is a front before upstream that answers every
// paged lookup of digest d with no records and the map proof old, its root
// entry's inclusion proof rebuilt under the ledger's newest checkpoint from
// the public tiles; everything else passes through.
func rt10ReplayRevocationPage(t *testing.T, upstream, d string, old *api.MapProof) *httptest.Server {
	t.Helper()
	return rt9Replay(t, upstream, d, old, nil, func(r *http.Request) bool { return r.URL.Path == api.PathDigests+d })
}
