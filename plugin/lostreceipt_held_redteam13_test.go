package plugin

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/notarize"
)

// Red team 13: attacks on the lost receipt's look-up (lostreceipt.go) that
// the defence held.

// rt13Recursive signs multi:v1 (an index and its manifests) with alice and
// returns the three statements.
func rt13Recursive(t *testing.T, h *harness) []signOutput {
	t.Helper()
	var s signResult
	if err := json.Unmarshal([]byte(h.mustRun(0, "sign", "--recursive", "-o", "json", h.reg.host+"/multi:v1")), &s); err != nil || len(s.Statements) != 3 {
		t.Fatalf("sign --recursive: %v %+v", err, s)
	}
	return s.Statements
}

// TestRedteam13RecursiveSecondLostFound: untrust --recursive whose second
// of three submissions the ledger logs but a front answers 502. The look
// finds it: every statement is reported with the log index the ledger
// holds, the command waits for the last one ("indexed": true) and exits 0,
// and each digest verifies UNTRUSTED.
func TestRedteam13RecursiveSecondLostFound(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, []ledgertest.Option{ledgertest.WithConfig(func(c *ledger.Config) {
		c.MapCommitInterval = 200 * time.Millisecond
	})}, "alice")
	signed := rt13Recursive(t, h)
	var posts atomic.Int64
	front := interceptFront(t, h.ledger.URL, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries && posts.Add(1) == 2 {
			next.ServeHTTP(httptest.NewRecorder(), r) // the ledger logs it
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		next.ServeHTTP(w, r)
	})
	h.indexHold = time.Millisecond // wait for a covering root, not the window
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "untrust", "--recursive", "-o", "json", h.reg.host+"/multi:v1")
	var u signResult
	if err := json.Unmarshal([]byte(out), &u); err != nil || code != 0 || len(u.Statements) != 3 || posts.Load() != 4 { // the lost one sent twice
		t.Fatalf("untrust --recursive with its second receipt lost: exit %d, %d submissions (%v), want 0, 3 statements:\n%s%s", code, posts.Load(), err, out, errOut)
	}
	if u.Indexed == nil || !*u.Indexed || !strings.Contains(errOut, "was lost") {
		t.Errorf("want \"indexed\": true and the lost answer warned about; got %v:\n%s", u.Indexed, errOut)
	}
	for i, st := range u.Statements {
		if st.Digest != signed[i].Digest || st.Status != outputStatus(notarize.StatusUntrusted) || (st.Duplicate && i != 1) { // the lost one's repeat is a duplicate
			t.Errorf("statement %d: %+v, want %s UNTRUSTED", i, st, signed[i].Digest)
		}
		cur := rt9WaitRoot(t, h.ledger.URL, st.Digest, st.KeyID)
		if cur.Entries[0].Index != st.LogIndex {
			t.Errorf("statement %d reported at log index %d, the ledger's current one is %d", i, st.LogIndex, cur.Entries[0].Index)
		}
		if _, _, c := h.run("verify", h.reg.host+"/multi@"+st.Digest); c != VerdictExitCode(notarize.Untrusted) {
			t.Errorf("verify %s after the untrust: exit %d, want UNTRUSTED", st.Digest, c)
		}
	}
}

// TestRedteam13RecursiveSecondDroppedStops: untrust --recursive whose
// second of three submissions a front drops (502, never forwarded). The
// look does not take the earlier trust for it: the command exits 1 saying
// to run it again, reports only the first untrust, waits for it
// ("indexed": true), sends no third submission, and the second digest
// still verifies TRUSTED.
func TestRedteam13RecursiveSecondDroppedStops(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, []ledgertest.Option{ledgertest.WithConfig(func(c *ledger.Config) {
		c.MapCommitInterval = 200 * time.Millisecond
	})}, "alice")
	signed := rt13Recursive(t, h)
	var posts atomic.Int64
	front := interceptFront(t, h.ledger.URL, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries {
			if n := posts.Add(1); n == 2 || n == 3 { // the second and its repeat
				http.Error(w, "bad gateway", http.StatusBadGateway)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
	h.indexHold = time.Millisecond
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "untrust", "--recursive", "-o", "json", h.reg.host+"/multi:v1")
	var u signResult
	if err := json.Unmarshal([]byte(out), &u); err != nil || code != ExitError || len(u.Statements) != 1 || u.Statements[0].Digest != signed[0].Digest {
		t.Fatalf("untrust --recursive with its second submission dropped: exit %d (%v), want %d and only the first untrust:\n%s%s", code, err, ExitError, out, errOut)
	}
	if posts.Load() != 3 || !strings.Contains(u.Error, "run the command again") || u.ExitCode != ExitError || strings.Contains(errOut, "was lost") {
		t.Errorf("want 2 submissions, the dropped one not claimed and the error saying to run the command again; got %d, %+v\n%s", posts.Load(), u, errOut)
	}
	if u.Indexed == nil || !*u.Indexed {
		t.Errorf("the first untrust was not waited for: \"indexed\" %v", u.Indexed)
	}
	if _, _, c := h.run("verify", h.reg.host+"/multi@"+signed[1].Digest); c != VerdictExitCode(notarize.Trusted) {
		t.Errorf("verify of the digest whose untrust was dropped: exit %d, want TRUSTED", c)
	}
}

// TestRedteam13LostUntrustSupersededNotClaimed: a front forwards untrust's
// submission (logged), then a newer "trusted" by the same key (another
// machine, or the front replaying one the key signed) is logged before the
// look, and the front answers 502. The key's proven current statement is
// that trust, not the untrust: the command must not claim the untrust took
// effect. It exits 1, reports no log index, and verify says TRUSTED, as the
// command's failure implies.
func TestRedteam13LostUntrustSupersededNotClaimed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	path, d := writeFile(t, "asset", "a build re-trusted while its untrust's answer was lost")
	h.mustRun(0, "sign", path)
	th := newThief(t, h, "alice") // alice's key on another machine
	var posts atomic.Int64
	front := interceptFront(t, h.ledger.URL, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries {
			posts.Add(1)
			next.ServeHTTP(httptest.NewRecorder(), r) // the untrust is logged
			th.state(d, notarize.StatusTrusted, notarize.KindFile, h.now().Add(time.Hour))
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		next.ServeHTTP(w, r)
	})
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "untrust", "-o", "json", path)
	if code != ExitError || strings.Contains(out, `"logIndex"`) || strings.Contains(errOut, "was lost") || posts.Load() != 2 {
		t.Fatalf("BYPASS: an untrust superseded by a newer trust before the look: exit %d (%d submissions), want %d with nothing reported as recorded:\n%s%s", code, posts.Load(), ExitError, out, errOut)
	}
	if _, _, c := h.run("verify", path); c != VerdictExitCode(notarize.Trusted) {
		t.Fatalf("verify after the superseded untrust exits %d, want TRUSTED", c)
	}
}

// TestRedteam13LostLookHungFrontBounded: a front drops untrust's
// submission (502) and then never answers a lookup (it holds each until
// the client gives up). The look must end on its own bound, not the
// client's per-call timeout times the retries: the command exits 1,
// claims nothing and says that the last lookup failed.
func TestRedteam13LostLookHungFrontBounded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	path, _ := writeFile(t, "asset", "a build whose untrust's look hangs")
	h.mustRun(0, "sign", path)
	var posted atomic.Bool
	front := interceptFront(t, h.ledger.URL, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries {
			posted.Store(true)
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		if posted.Load() && strings.HasPrefix(r.URL.Path, api.PathDigests) {
			<-r.Context().Done() // hold it until the client gives up
			return
		}
		next.ServeHTTP(w, r)
	})
	type result struct {
		out, errOut string
		code        int
	}
	done := make(chan result, 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		o, e, c := h.runContext(ctx, map[string]string{EnvLedger: front.URL}, "untrust", path)
		done <- result{o, e, c}
	}()
	select {
	case r := <-done:
		if r.code != ExitError || strings.Contains(r.errOut, "was lost") || !strings.Contains(r.errOut, "last lookup failed") {
			t.Fatalf("untrust whose look hangs: exit %d, want %d, nothing claimed and the failed lookup named:\n%s%s", r.code, ExitError, r.out, r.errOut)
		}
	case <-time.After(50 * time.Second): // lostReceiptWait is 5 s; the client's own timeout 1 min
		cancel()
		t.Fatalf("DoS: untrust whose lost receipt's look hangs on a front did not return within 50 s (lostReceiptWait %s)", lostReceiptWait)
	}
}

// TestRedteam13NotSentFailsWithoutLook: the ledger's front goes away
// between untrust's lookup and its submission (a connection refused: the
// submission wrote nothing anywhere). That failure is known, not lost: the
// command fails at once with the dial error, without a look (which on a
// quiet ledger would run the whole --index-wait) and without claiming or
// doubting anything about the log.
func TestRedteam13NotSentFailsWithoutLook(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	path, _ := writeFile(t, "asset", "a build whose untrust finds the front gone")
	h.mustRun(0, "sign", path)
	up, err := url.Parse(h.ledger.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(up)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var lookups, posts atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
		}
		if strings.HasSuffix(r.URL.Path, api.PathCurrentSuffix) && lookups.Add(1) == 1 {
			// statementTime's lookup: answered, then the front goes away.
			w.Header().Set("Connection", "close")
			proxy.ServeHTTP(w, r)
			_ = ln.Close()
			return
		}
		proxy.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	h.indexHold = defaultIndexHold // a look would run the whole --index-wait
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: "http://" + ln.Addr().String()}, "untrust", path)
	if code != ExitError || posts.Load() != 0 || !strings.Contains(errOut, "connection refused") ||
		strings.Contains(errOut, "after the failure") || strings.Contains(errOut, "was lost") || lookups.Load() != 1 {
		t.Fatalf("DoS: untrust whose submission could not connect: exit %d, %d submissions, %d lookups; want %d, 0, 1, the dial error and no look:\n%s%s", code, posts.Load(), lookups.Load(), ExitError, out, errOut)
	}
}
