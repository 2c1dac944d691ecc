package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
)

// TestOutcomeUnknown: only the ledger's own refusal and a submission that
// wrote nothing (ledgerclient.ErrNotSent) are known not to have logged it.
func TestOutcomeUnknown(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&ledgerclient.APIError{StatusCode: http.StatusBadRequest, Code: api.CodeBadRequest}, false},
		{&ledgerclient.APIError{StatusCode: http.StatusForbidden, Code: api.CodeKeyRevoked}, false},
		{&ledgerclient.APIError{StatusCode: http.StatusTooManyRequests, Code: api.CodeRateLimited}, false},
		{fmt.Errorf("submit: %w", &ledgerclient.APIError{StatusCode: http.StatusBadGateway}), true},
		{&ledgerclient.APIError{StatusCode: http.StatusBadRequest}, true}, // a 4xx without the ledger's code: a front's
		{&ledgerclient.APIError{StatusCode: http.StatusServiceUnavailable, Code: api.CodeUnavailable}, true},
		{&ledgerclient.APIError{StatusCode: http.StatusInternalServerError, Code: api.CodeInternal}, true},
		{fmt.Errorf("submit: %w", errors.Join(&net.OpError{Op: "dial", Err: errors.New("connection refused")}, ledgerclient.ErrNotSent)), false},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, true}, // a redirect's, after the first request was written (red team 13 F-B)
		{&net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, true},
		{fmt.Errorf("submit: %w", ledgerclient.ErrBadProof), true}, // a front's forged receipt after forwarding
		{fmt.Errorf("submit: %w", &ledgerclient.ForkError{}), false},
		{fmt.Errorf("submit: %w", ledgerclient.ErrKeyMismatch), false},
	} {
		if got := outcomeUnknown(c.err); got != c.want {
			t.Errorf("outcomeUnknown(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// TestLostReceiptNotLogged: a front that answers 502 without forwarding the
// submission. The look finds the key's current statement, the earlier
// trust, which is not the untrust: the command must not take it for its
// own. The ledger, idle, commits no map root after the failure, so no
// answer shows whether it logged the untrust: the command fails saying
// the outcome is unknown, and the digest is still TRUSTED.
func TestLostReceiptNotLogged(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	path, _ := writeFile(t, "asset", "a build that a dropped untrust leaves trusted")
	h.mustRun(0, "sign", path)
	var posts atomic.Int64
	front := interceptFront(t, h.ledger.URL, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries {
			posts.Add(1)
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		next.ServeHTTP(w, r)
	})
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "untrust", "-o", "json", path)
	if code != ExitError || !strings.Contains(out+errOut, "whether the ledger logged the statement is unknown") || strings.Contains(out, `"logIndex"`) || posts.Load() != 2 {
		t.Fatalf("untrust through a front that drops it, the ledger idle: exit %d (%d submissions), want %d and the outcome unknown:\n%s%s", code, posts.Load(), ExitError, out, errOut)
	}
	if _, _, c := h.run("verify", path); c != VerdictExitCode(notarize.Trusted) {
		t.Fatalf("verify after the dropped untrust exits %d, want TRUSTED", c)
	}
}

// TestLostReceiptRefusalNotLookedUp: the ledger's own refusal (a 4xx with
// its code) of a trust is reported at once, without the look; of an
// untrust, the look (for a forged refusal) finds nothing and the refusal is
// reported as it came, not as an unknown outcome.
func TestLostReceiptRefusalNotLookedUp(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	path, _ := writeFile(t, "asset", "a build the ledger refuses to untrust")
	h.mustRun(0, "sign", path)
	var lookups atomic.Int64
	front := interceptFront(t, h.ledger.URL, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == api.PathEntries:
			w.Header().Set("Content-Type", api.MediaTypeJSON)
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(api.ErrorResponse{Code: api.CodeBadRequest, Message: "refused"})
			return
		case strings.HasPrefix(r.URL.Path, api.PathDigests):
			lookups.Add(1)
		}
		next.ServeHTTP(w, r)
	})
	other, _ := writeFile(t, "other", "a build the ledger refuses to trust")
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "sign", other)
	if code != ExitError || !strings.Contains(errOut, "ledger refused") || lookups.Load() != 1 {
		t.Fatalf("sign refused by the ledger: exit %d after %d lookups (want %d after 1: statementTime's):\n%s%s", code, lookups.Load(), ExitError, out, errOut)
	}
	out, errOut, code = h.runWithEnv(map[string]string{EnvLedger: front.URL}, "untrust", path)
	if code != ExitError || !strings.Contains(errOut, "ledger refused") || strings.Contains(errOut, "unknown") || strings.Contains(errOut, "is in the ledger") {
		t.Fatalf("untrust refused by the ledger: exit %d, want %d and the refusal as it came:\n%s%s", code, ExitError, out, errOut)
	}
}

// TestLostReceiptSignFound: sign whose receipt a front replaces with a 502
// after the ledger logged it reports the statement it finds, with its log
// index, and exits 0; run again, the ledger has it once.
func TestLostReceiptSignFound(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	path, d := writeFile(t, "asset", "a build signed behind a failing gateway")
	front := interceptFront(t, h.ledger.URL, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries {
			next.ServeHTTP(httptest.NewRecorder(), r) // the ledger logs it
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		next.ServeHTTP(w, r)
	})
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "sign", "-o", "json", path)
	var res signResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 0 || len(res.Statements) != 1 || !strings.Contains(errOut, "was lost") {
		t.Fatalf("sign through a front that logs it and answers 502: exit %d (%v), want 0 with the statement found:\n%s%s", code, err, out, errOut)
	}
	got := res.Statements[0]
	if got.Digest != string(d) || got.Status != outputStatus(notarize.StatusTrusted) {
		t.Fatalf("found statement %+v, want %s TRUSTED", got, d)
	}
	if _, _, c := h.run("verify", path); c != VerdictExitCode(notarize.Trusted) {
		t.Fatalf("verify after the found sign exits %d, want TRUSTED", c)
	}
}

// TestLostReceiptRotateFound: a rotation whose re-statement's receipt a
// front replaces with a 502 after the ledger logged it counts it as
// re-stated, not failed.
func TestLostReceiptRotateFound(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, nil, "alice", "bob")
	as := rotateAssets(t, h, 2)
	var lost atomic.Int64
	front := interceptFront(t, h.ledger.URL, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries && lost.Add(1) == 1 {
			next.ServeHTTP(httptest.NewRecorder(), r)
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		next.ServeHTTP(w, r)
	})
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "key", "rotate", "-o", "json", "alice", "bob")
	o := decodeRotate(t, out)
	if code != 0 || o.Restated != len(as) || o.Failed != 0 || !strings.Contains(errOut, "was lost") {
		t.Fatalf("rotate with one lost receipt: exit %d %+v, want every digest re-stated\n%s", code, o, errOut)
	}
}

// TestKeyRotateInterruptedReportsNotIndexed: a rotation interrupted after
// it re-stated a revocation says, with its JSON output, that it did not
// wait for the ledger's index ("indexed": false), as untrust does.
func TestKeyRotateInterruptedReportsNotIndexed(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, nil, "alice", "bob")
	rotateAssets(t, h, 9)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var submits atomic.Int64
	front := interceptFront(t, h.ledger.URL, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		next.ServeHTTP(w, r)
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries && submits.Add(1) == 6 {
			cancel()
		}
	})
	h.indexHold = defaultIndexHold // as in production
	out, errOut, code := h.runContext(ctx, map[string]string{EnvLedger: front.URL}, "key", "rotate", "--jobs", "1", "-o", "json", "alice", "bob")
	o := decodeRotate(t, out)
	revocations := 0
	for _, d := range o.Digests {
		if d.Action == rotateRestated && d.Status != outputStatus(notarize.StatusTrusted) {
			revocations++
		}
	}
	if code != ExitInterrupted || revocations == 0 {
		t.Fatalf("rotate interrupted after 6 re-statements: exit %d with %d re-stated revocations, want %d with some\n%s%s", code, revocations, ExitInterrupted, out, errOut)
	}
	if o.Indexed == nil || *o.Indexed {
		t.Fatalf("interrupted before its wait, want \"indexed\": false, got %v\n%s%s", o.Indexed, out, errOut)
	}
}

// TestLostReceiptProvenAbsent: as TestLostReceiptNotLogged, but another
// key's statement is logged after the failure, so the ledger commits a map
// root dated after it: an answer under that root shows the untrust absent,
// and the command says the untrust was not in the ledger then, without
// waiting out its bound.
func TestLostReceiptProvenAbsent(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, []ledgertest.Option{ledgertest.WithConfig(func(c *ledger.Config) {
		c.MapCommitInterval = 200 * time.Millisecond
	})}, "alice", "bob")
	path, _ := writeFile(t, "asset", "a build that a dropped untrust leaves trusted")
	h.mustRun(0, "sign", "--key", "alice", path)
	dropped := make(chan struct{}, 1)
	front := interceptFront(t, h.ledger.URL, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries {
			http.Error(w, "bad gateway", http.StatusBadGateway)
			dropped <- struct{}{}
			return
		}
		next.ServeHTTP(w, r)
	})
	type run struct {
		out, errOut string
		code        int
	}
	// A revocation waited for looks for the whole --index-wait (lookBound):
	// 20 s rather than lostReceiptWait's 5, so that a loaded machine, slow
	// to commit and date a root past the failure, still gets one in time
	// (the look ends as soon as it does).
	h.indexHold = time.Millisecond
	done := make(chan run, 1)
	go func() {
		out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "untrust", "--index-wait", "20s", "--key", "alice", path)
		done <- run{out, errOut, code}
	}()
	<-dropped
	// Bob's statements keep the ledger committing map roots, as on a
	// ledger in use, until one is dated past the failure and the clock
	// margin (roots' times are whole seconds).
	bob := newThief(t, h, "bob")
	var got run
	for i := 0; ; i++ {
		select {
		case got = <-done:
		case <-time.After(300 * time.Millisecond):
			e, err := notarize.Sign(t.Context(), bob.signer, notarize.NewStatement(notarize.DigestOf(fmt.Appendf(nil, "busy %d", i)), "x",
				notarize.Predicate{Status: notarize.StatusTrusted, Kind: notarize.KindFile, Name: "bob", Timestamp: time.Now().UTC()}))
			if err == nil {
				_, _ = bob.client.Submit(t.Context(), e)
			}
			continue
		}
		break
	}
	if got.code != ExitError || !strings.Contains(got.errOut, "not logged then") {
		t.Fatalf("untrust dropped by a front, a map root committed after it: exit %d, want %d and the untrust proven absent:\n%s%s", got.code, ExitError, got.out, got.errOut)
	}
}

// TestLostReceiptResent: a front drops only the first submission (502,
// never forwarded) on an idle ledger, where no answer could show the
// outcome: the command sends the statement once more and records it.
func TestLostReceiptResent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	path, d := writeFile(t, "asset", "a build untrusted behind a flaky gateway")
	h.mustRun(0, "sign", path)
	var posts atomic.Int64
	front := interceptFront(t, h.ledger.URL, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries && posts.Add(1) == 1 {
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		next.ServeHTTP(w, r)
	})
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "untrust", "-o", "json", path)
	var res signResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 0 || len(res.Statements) != 1 || res.Statements[0].Digest != string(d) || posts.Load() != 2 || !strings.Contains(errOut, "sent again") {
		t.Fatalf("untrust whose first submission a front dropped: exit %d after %d submissions, want 0 after 2 with the untrust recorded:\n%s%s", code, posts.Load(), out, errOut)
	}
	if _, _, c := h.run("verify", path); c != VerdictExitCode(notarize.Untrusted) {
		t.Fatalf("verify after the resent untrust exits %d, want UNTRUSTED", c)
	}
}
