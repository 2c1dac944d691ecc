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
)

// rt13ForwardThenReplay is a front before the ledger that remembers its
// first answer to a current lookup of digest d (the ledger's own, with the
// checkpoint and map root of that moment) and answers every later one with
// those bytes; every submission it forwards, so that the ledger logs it,
// and answers 502. The lost receipt's look-up (submitStatement) thus sees
// the key's statement from before the submission, proven under the
// checkpoint the client stored then: no rollback, nothing that fails a
// proof.
func rt13ForwardThenReplay(t *testing.T, ledgerURL, d string, posts *atomic.Int64) *httptest.Server {
	t.Helper()
	var mu sync.Mutex
	var saved []byte
	var savedType string
	return interceptFront(t, ledgerURL, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == api.PathEntries:
			posts.Add(1)
			next.ServeHTTP(httptest.NewRecorder(), r) // the ledger logs it
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		case r.Method == http.MethodGet && r.URL.Path == api.PathDigests+d+api.PathCurrentSuffix:
			mu.Lock()
			defer mu.Unlock()
			if saved == nil {
				rec := httptest.NewRecorder()
				next.ServeHTTP(rec, r)
				if rec.Code == http.StatusOK {
					saved, savedType = bytes.Clone(rec.Body.Bytes()), rec.Header().Get("Content-Type")
				}
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				_, _ = w.Write(rec.Body.Bytes())
				return
			}
			w.Header().Set("Content-Type", savedType)
			_, _ = w.Write(saved)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// TestRedteam13UntrustLostReceiptLookReplayed: red team 12 F1's attacker,
// a front that forwards untrust's submission (the ledger logs it), answers
// 502 and replays map roots, also replays during the look: it answers the
// look's current lookups with its recorded answer from before the
// submission (statementTime's: the trust, the checkpoint the client stored
// then). The look never sees the untrust; after 5 s the command exits 1
// without waiting for the untrust that is in the log, exactly as before the
// fix, and right after it returns a default verify through a front
// replaying the root before the untrust exits 0.
//
// Fails with "BYPASS: ..." while a "not found" is taken from an answer
// that cannot show the submission (a checkpoint and map root from before
// it was sent). Fix: conclude "not found" only from a checkpoint, and for
// the hold a map root, dated after the failure; without one within the
// look, wait out the hold (indexHold from the failure) before exiting 1,
// so that every root from before the submission is too old for verify.
func TestRedteam13UntrustLostReceiptLookReplayed(t *testing.T) {
	t.Parallel()
	ua := newUntrustAttack(t)
	h, multi, index, before := ua.h, ua.ref, ua.index, ua.before

	var posts atomic.Int64
	lying := rt13ForwardThenReplay(t, h.ledger.URL, index.Digest, &posts)
	h.indexHold = defaultIndexHold // as in production
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: lying.URL}, "untrust", "-o", "json", multi)
	returned := time.Now()
	if posts.Load() != 2 {
		t.Fatalf("untrust sent %d submissions, want 2 (the first and one repeat):\n%s%s", posts.Load(), out, errOut)
	}
	after := rt9WaitRoot(t, h.ledger.URL, index.Digest, index.KeyID)
	if after.Entries[0].Index <= before.Entries[0].Index {
		t.Skipf("the ledger did not log the untrust behind the 502 (current index %d): nothing to hide", after.Entries[0].Index)
	}
	front := rt9ReplayFront(t, h.ledger.URL, index.Digest, before.Map, before.Entries[0])
	target := h.reg.host + "/multi@" + index.Digest
	vout, verr, vcode := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "verify", target)
	if vcode == 0 {
		t.Fatalf("BYPASS: untrust's submission was logged (log index %d) behind a 502; the front replayed its answer from before the submission to the lost receipt's look, which gave up: the command exited %d without waiting (reported: %v); %v later a default verify through a front replaying the root before the untrust exits 0:\nuntrust stdout:\n%s\nuntrust stderr:\n%s\nverify:\n%s%s",
			after.Entries[0].Index, code, strings.Contains(out, `"logIndex"`), time.Since(returned).Round(time.Millisecond), out, errOut, vout, verr)
	}
	if vcode != ExitCouldNotVerify {
		t.Fatalf("verify %s through the replaying front: exit %d, want %d\n%s%s", target, vcode, ExitCouldNotVerify, vout, verr)
	}
}
