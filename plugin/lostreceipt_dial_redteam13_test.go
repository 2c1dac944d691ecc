package plugin

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
)

// rt13ForwardThenRedirectDead is a front before the ledger that forwards
// the first submission (the ledger logs it), then stops listening and
// answers it with a 307 to its own address (the same scheme and host, which
// the client's redirect policy follows) and Connection: close. The client
// sends the submission again on a new connection, whose dial is refused:
// the error the command sees is a *net.OpError "dial", which outcomeUnknown
// takes for "a connection never made", so nothing is looked up.
func rt13ForwardThenRedirectDead(t *testing.T, ledgerURL string) (string, *atomic.Int64) {
	t.Helper()
	up, err := url.Parse(ledgerURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(up)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	var posts atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries && posts.Add(1) == 1 {
			proxy.ServeHTTP(httptest.NewRecorder(), r) // the ledger logs it
			_ = ln.Close()                             // the redirect's dial is refused
			w.Header().Set("Connection", "close")
			w.Header().Set("Location", base+api.PathEntries)
			w.WriteHeader(http.StatusTemporaryRedirect)
			return
		}
		proxy.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return base, &posts
}

// TestRedteam13UntrustLostReceiptDialAfterForward: a front forwards
// untrust's submission (the ledger logs it) and makes the client's next
// connection fail to dial (rt13ForwardThenRedirectDead). outcomeUnknown
// reads a dial error as "a connection never made", so the submission is
// not looked up: the command exits 1 at once without waiting for the
// untrust in the log, and right after it a default verify through a front
// replaying the root before the untrust exits 0 (red team 12 F1 again).
// SECURITY.md names only a held submission and a forged refusal as not
// looked behind.
//
// Fails with "BYPASS: ..." while a dial error anywhere in a submission's
// error chain counts as "nothing sent". Fix: the client does not follow
// redirects of a submission (http.Client.CheckRedirect returning
// http.ErrUseLastResponse for POST, a 3xx is then an outcome-unknown
// APIError), or outcomeUnknown treats a dial error as known only when no
// request was written (httptrace.WroteRequest never fired).
func TestRedteam13UntrustLostReceiptDialAfterForward(t *testing.T) {
	t.Parallel()
	ua := newUntrustAttack(t)
	h, multi, index, before := ua.h, ua.ref, ua.index, ua.before

	lying, posts := rt13ForwardThenRedirectDead(t, h.ledger.URL)
	h.indexHold = defaultIndexHold // as in production
	start := time.Now()
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: lying}, "untrust", "-o", "json", multi)
	returned := time.Now()
	if posts.Load() != 1 {
		t.Fatalf("the front saw %d submissions, want 1:\n%s%s", posts.Load(), out, errOut)
	}
	after := rt9WaitRoot(t, h.ledger.URL, index.Digest, index.KeyID)
	if after.Entries[0].Index <= before.Entries[0].Index {
		t.Skipf("the ledger did not log the untrust (current index %d): nothing to hide", after.Entries[0].Index)
	}
	front := rt9ReplayFront(t, h.ledger.URL, index.Digest, before.Map, before.Entries[0])
	target := h.reg.host + "/multi@" + index.Digest
	vout, verr, vcode := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "verify", target)
	if vcode == 0 {
		t.Fatalf("BYPASS: untrust's submission was logged (log index %d); the front then made the redirected re-send fail to dial, the command took %v, looked up nothing (%v) and exited %d without waiting; %v later a default verify through a front replaying the root before the untrust exits 0:\nuntrust stdout:\n%s\nuntrust stderr:\n%s\nverify:\n%s%s",
			after.Entries[0].Index, returned.Sub(start).Round(time.Millisecond), !strings.Contains(out+errOut, "not found in the ledger"), code,
			time.Since(returned).Round(time.Millisecond), out, errOut, vout, verr)
	}
	if vcode != ExitCouldNotVerify {
		t.Fatalf("verify %s through the replaying front: exit %d, want %d\n%s%s", target, vcode, ExitCouldNotVerify, vout, verr)
	}
}
