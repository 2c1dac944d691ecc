package plugin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// TestRedteam13KeyRevokeForgedRefusalAfterForward checks SECURITY.md's
// claim about a forged refusal ("the command exits 1 and promises nothing;
// the revocation takes effect for verifiers when it is logged"): a front
// forwards key revoke's submission (the ledger logs it) and answers with a
// forged ledger refusal, 403 KEY_REVOKED (what a user revoking a key reads
// as "done"). outcomeUnknown takes a coded 4xx for the ledger's own, so
// nothing is looked up or waited for; right after the command returns, the
// thief signs "trusted" with the stolen key and a default verify, through a
// front replaying the revocation lookup's root from before the revocation,
// exits 0. The revocation is logged but does not take effect for that
// verifier: the claim holds only outside verify's --max-index-lag window.
//
// Fails with "BYPASS: ..." while a forged coded refusal after forwarding is
// neither looked behind nor waited out. Fix (closes F-A and F-B too): after
// any failed submission that reached the front (everything but a dial
// before the request was written), key revoke and untrust wait out the
// hold from the failure (indexHold, bounded by --index-wait) before exiting,
// so every map root from before the submission is too old for verify.
func TestRedteam13KeyRevokeForgedRefusalAfterForward(t *testing.T) {
	t.Parallel()
	ra := newRevokeAttack(t)
	h, ka, kd, before := ra.h, ra.keyID, ra.digest, ra.before

	var posts atomic.Int64
	lying := interceptFront(t, h.ledger.URL, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries {
			posts.Add(1)
			next.ServeHTTP(httptest.NewRecorder(), r) // the ledger logs it
			w.Header().Set("Content-Type", api.MediaTypeJSON)
			w.WriteHeader(http.StatusForbidden)
			_ = json.NewEncoder(w).Encode(api.ErrorResponse{Code: api.CodeKeyRevoked, Message: "key " + ka + " revoked itself"})
			return
		}
		next.ServeHTTP(w, r)
	})
	h.indexHold = defaultIndexHold // as in production
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: lying.URL}, "key", "revoke", "--yes", "alice")
	returned := time.Now()
	if posts.Load() != 1 {
		t.Fatalf("key revoke sent %d submissions, want 1:\n%s%s", posts.Load(), out, errOut)
	}
	if again := h.mustRun(0, "key", "revoke", "--index-wait", "0", "--yes", "alice"); !strings.Contains(again, "Already revoked") {
		t.Skipf("the ledger did not log the revocation behind the forged refusal: %s", again)
	}

	th := newThief(t, h, "alice")
	stolen, stolenD := writeFile(t, "stolen", "the thief's build")
	th.state(stolenD, notarize.StatusTrusted, notarize.KindFile, time.Now())
	front := rt10ReplayRevocationPage(t, h.ledger.URL, string(kd), before.Map)
	vout, verr, vcode := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "verify", "--signer", "alice", stolen)
	if vcode == 0 {
		t.Fatalf("BYPASS: key revoke's submission was logged; the front answered a forged 403 KEY_REVOKED; the command exited %d without a look or a wait; %v later a default verify of the thief's statement, through a front replaying the root before the revocation, exits 0:\nkey revoke stdout:\n%s\nkey revoke stderr:\n%s\nverify:\n%s%s",
			code, time.Since(returned).Round(time.Millisecond), out, errOut, vout, verr)
	}
	if vcode != ExitCouldNotVerify && vcode != 2 {
		t.Fatalf("verify of the thief's statement through the replaying front: exit %d, want %d or 2\n%s%s", vcode, ExitCouldNotVerify, vout, verr)
	}
}
