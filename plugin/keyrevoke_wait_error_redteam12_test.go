package plugin

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// TestRedteam12KeyRevokeWaitCutByOne500: key revoke through a front that
// passes the revocation, then answers the wait's first lookup of the
// key-revocation digest with one 500. The wait (awaitIndexed, shared with
// untrust) gives up at once with a warning and key revoke exits 0. Right
// after, the thief signs "trusted" with the stolen key and a front replays
// the root before the revocation for verify's revocation lookup: a default
// verify exits 0. Fails with BYPASS: while one failed lookup ends the wait.
func TestRedteam12KeyRevokeWaitCutByOne500(t *testing.T) {
	t.Parallel()
	ra := newRevokeAttack(t)
	h, kd, before := ra.h, ra.digest, ra.before

	var posted atomic.Bool
	var failed atomic.Int32
	flaky := interceptFront(t, h.ledger.URL, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries {
			defer posted.Store(true)
		} else if posted.Load() && r.URL.Path == api.PathDigests+string(kd)+api.PathCurrentSuffix && failed.Add(1) == 1 {
			http.Error(w, `{"error":"failed"}`, http.StatusInternalServerError)
			return
		}
		next.ServeHTTP(w, r)
	})

	h.indexHold = defaultIndexHold // as in production
	start := time.Now()
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: flaky.URL}, "key", "revoke", "--yes", "alice")
	took := time.Since(start)
	returned := time.Now()
	if code != 0 {
		t.Skipf("key revoke through a front failing one lookup during the wait exits %d (fails closed):\n%s%s", code, out, errOut)
	}
	th := newThief(t, h, "alice")
	stolen, stolenD := writeFile(t, "stolen", "the thief's build")
	th.state(stolenD, notarize.StatusTrusted, notarize.KindFile, time.Now())
	front := rt10ReplayRevocationPage(t, h.ledger.URL, string(kd), before.Map)
	vout, verr, vcode := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "verify", "--signer", "alice", stolen)
	if vcode == 0 {
		t.Fatalf("BYPASS: key revoke exited 0 after %v (%d wait lookup answered 500); %v later a default verify of the thief's statement, through a front replaying the root before the revocation, exits 0:\nkey revoke stdout:\n%s\nkey revoke stderr:\n%s\nverify:\n%s%s",
			took.Round(time.Millisecond), failed.Load(), time.Since(returned).Round(time.Millisecond), out, errOut, vout, verr)
	}
	if vcode != ExitCouldNotVerify && vcode != 2 {
		t.Fatalf("verify of the thief's statement through the replaying front: exit %d, want %d or 2\n%s%s", vcode, ExitCouldNotVerify, vout, verr)
	}
}
