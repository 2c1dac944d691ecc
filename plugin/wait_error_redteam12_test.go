package plugin

import (
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
)

// TestRedteam12UntrustWaitCutByOneError: a whole (not partial) untrust
// through a front that passes the submission, then answers the wait's
// first current lookup with a 404 (one error, which a misrouting proxy
// gives as readily as an attacker; a 503 is retried by the client and
// holds). ledgerclient awaitRoot returns on the first error that is not the
// context's, awaitIndexed turns it into a warning (which says "after 30s"
// though no time passed), and untrust exits 0 at once with "indexed":
// false: the hold never ran. Right after, a front replaying the map root from before the
// untrust gets a default verify to exit 0. Fails with BYPASS: while the
// wait gives up on one failed lookup instead of asking again until
// --index-wait runs out.
func TestRedteam12UntrustWaitCutByOneError(t *testing.T) {
	t.Parallel()
	rt12WaitCut(t, http.StatusNotFound)
}

// TestRedteam12UntrustWaitCutByOne500: as
// TestRedteam12UntrustWaitCutByOneError with one 500, which an honest
// ledger or proxy answers now and then: no attacker is needed to skip the
// hold, only one to exploit it. Fails with BYPASS: likewise.
func TestRedteam12UntrustWaitCutByOne500(t *testing.T) {
	t.Parallel()
	rt12WaitCut(t, http.StatusInternalServerError)
}

// rt12WaitCut runs the attack with one failed wait lookup answered
// failCode.
func rt12WaitCut(t *testing.T, failCode int) {
	ua := newUntrustAttack(t)
	h, multi, index, before := ua.h, ua.ref, ua.index, ua.before

	var posted atomic.Bool
	var failed atomic.Int32
	flaky := interceptFront(t, h.ledger.URL, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries {
			defer posted.Store(true)
		} else if posted.Load() && r.URL.Path == api.PathDigests+index.Digest+api.PathCurrentSuffix && failed.Add(1) == 1 {
			http.Error(w, `{"error":"failed"}`, failCode)
			return
		}
		next.ServeHTTP(w, r)
	})

	h.indexHold = defaultIndexHold // as in production
	start := time.Now()
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: flaky.URL}, "untrust", "-o", "json", multi)
	took := time.Since(start)
	returned := time.Now()
	if code != 0 {
		t.Skipf("untrust through a front failing one lookup during the wait exits %d (fails closed):\n%s%s", code, out, errOut)
	}
	var u signResult
	_ = json.Unmarshal([]byte(out), &u)

	front := rt9ReplayFront(t, h.ledger.URL, index.Digest, before.Map, before.Entries[0])
	target := h.reg.host + "/multi@" + index.Digest
	vout, verr, vcode := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "verify", target)
	if vcode == 0 {
		indexed := "absent"
		if u.Indexed != nil {
			indexed = map[bool]string{true: "true", false: "false"}[*u.Indexed]
		}
		t.Fatalf("BYPASS: untrust exited 0 after %v (\"indexed\": %s; %d lookup answered %d during its wait); %v later a default verify through a front replaying the root before the untrust exits 0:\nuntrust stdout:\n%s\nuntrust stderr:\n%s\nverify:\n%s%s",
			took.Round(time.Millisecond), indexed, failed.Load(), failCode, time.Since(returned).Round(time.Millisecond), out, errOut, vout, verr)
	}
	if vcode != ExitCouldNotVerify {
		t.Fatalf("verify %s through the replaying front: exit %d, want %d\n%s%s", target, vcode, ExitCouldNotVerify, vout, verr)
	}
}
