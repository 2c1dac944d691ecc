package plugin

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// TestRedteam13KeyRevokeLostReceiptLookReplayed: red team 12 F2 with the
// front also replaying during the look. key revoke first looks for a
// revocation already logged (a paged lookup of the key-revocation digest,
// proven complete); the front keeps that answer (no revocation, the
// checkpoint and map root of that moment), forwards the revocation (the
// ledger logs it), answers 502, and answers every current lookup the look
// makes with the kept answer, which proves the same thing for the same
// key. The look gives up after 5 s; the command exits 1 without waiting
// for the revocation in the log; right after it the thief signs "trusted"
// with the stolen key and a default verify through a front replaying the
// root from before the revocation exits 0.
//
// Fails with "BYPASS: ..." for the reason of F-A (a "not found" concluded
// from an answer older than the submission); same fix.
func TestRedteam13KeyRevokeLostReceiptLookReplayed(t *testing.T) {
	t.Parallel()
	ra := newRevokeAttack(t)
	h, kd, before := ra.h, ra.digest, ra.before

	var mu sync.Mutex
	var kept []byte
	var posts, replayed atomic.Int64
	lying := interceptFront(t, h.ledger.URL, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == api.PathEntries:
			posts.Add(1)
			next.ServeHTTP(httptest.NewRecorder(), r) // the ledger logs it
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		case r.Method == http.MethodGet && r.URL.Path == api.PathDigests+string(kd):
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			mu.Lock()
			if kept == nil && rec.Code == http.StatusOK {
				kept = bytes.Clone(rec.Body.Bytes())
			}
			mu.Unlock()
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			return
		case r.Method == http.MethodGet && r.URL.Path == api.PathDigests+string(kd)+api.PathCurrentSuffix:
			mu.Lock()
			k := kept
			mu.Unlock()
			if k != nil {
				replayed.Add(1)
				w.Header().Set("Content-Type", api.MediaTypeJSON)
				_, _ = w.Write(k)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
	h.indexHold = defaultIndexHold // as in production
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: lying.URL}, "key", "revoke", "--yes", "alice")
	returned := time.Now()
	if posts.Load() != 2 {
		t.Fatalf("key revoke sent %d submissions, want 2 (the first and one repeat):\n%s%s", posts.Load(), out, errOut)
	}
	if again := h.mustRun(0, "key", "revoke", "--index-wait", "0", "--yes", "alice"); !strings.Contains(again, "Already revoked") {
		t.Skipf("the ledger did not log the revocation behind the 502: %s", again)
	}
	th := newThief(t, h, "alice")
	stolen, stolenD := writeFile(t, "stolen", "the thief's build")
	th.state(stolenD, notarize.StatusTrusted, notarize.KindFile, time.Now())
	front := rt10ReplayRevocationPage(t, h.ledger.URL, string(kd), before.Map)
	vout, verr, vcode := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "verify", "--signer", "alice", stolen)
	if vcode == 0 {
		t.Fatalf("BYPASS: key revoke's submission was logged behind a 502; the look's %d current lookups were answered with the paged answer from before it; the command exited %d without waiting; %v later a default verify of the thief's statement, through a front replaying the root before the revocation, exits 0:\nkey revoke stdout:\n%s\nkey revoke stderr:\n%s\nverify:\n%s%s",
			replayed.Load(), code, time.Since(returned).Round(time.Millisecond), out, errOut, vout, verr)
	}
	if vcode != ExitCouldNotVerify && vcode != 2 {
		t.Fatalf("verify of the thief's statement through the replaying front: exit %d, want %d or 2\n%s%s", vcode, ExitCouldNotVerify, vout, verr)
	}
}
