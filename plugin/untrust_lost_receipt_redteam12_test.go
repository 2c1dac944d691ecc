package plugin

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
)

// rt12ForwardThenFail is a front that passes everything to the ledger, and
// passes every submission too, but answers each one 502 instead of the
// ledger's receipt: the revocation is in the log, the command never learns
// its index (a proxy that lost the connection after forwarding, or a
// lying one).
func rt12ForwardThenFail(t *testing.T, ledgerURL string) *httptest.Server {
	t.Helper()
	up, err := url.Parse(ledgerURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(up)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries {
			rec := httptest.NewRecorder()
			proxy.ServeHTTP(rec, r) // the ledger logs it
			http.Error(w, `{"error":"bad gateway"}`, http.StatusBadGateway)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	return front
}

// TestRedteam12UntrustReceiptLost: untrust whose FIRST (here only)
// submission the ledger logs but whose receipt a front replaces with a 502.
// Before the fix the command exited non-zero having recorded nothing it
// knew of, so it did not wait, and right after it returned a front
// replaying the map root from before the untrust (still within verify's
// default --max-index-lag) got a default verify to exit 0 (BYPASS). Now a
// submission of unknown outcome is looked up (submitStatement): the untrust
// is found, reported with its log index and a warning, and waited for.
func TestRedteam12UntrustReceiptLost(t *testing.T) {
	t.Parallel()
	ua := newUntrustAttack(t)
	h, multi, index, before := ua.h, ua.ref, ua.index, ua.before

	lying := rt12ForwardThenFail(t, h.ledger.URL)
	h.indexHold = defaultIndexHold // as in production
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: lying.URL}, "untrust", "-o", "json", multi)
	returned := time.Now()
	if code != 0 || !strings.Contains(errOut, "answer to the submission") {
		t.Errorf("untrust through a front that logs it and answers 502: exit %d, want 0 with a warning that the answer was lost:\n%s%s", code, out, errOut)
	}

	// The ledger logged the untrust: its current statement by this key is
	// a newer one than the trust.
	after := rt9WaitRoot(t, h.ledger.URL, index.Digest, index.KeyID)
	if after.Entries[0].Index <= before.Entries[0].Index {
		t.Skipf("the ledger did not log the untrust behind the 502 (current index %d): nothing to hide", after.Entries[0].Index)
	}
	reported := bytes.Contains([]byte(out), []byte(`"logIndex"`))

	front := rt9ReplayFront(t, h.ledger.URL, index.Digest, before.Map, before.Entries[0])
	target := h.reg.host + "/multi@" + index.Digest
	vout, verr, vcode := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "verify", target)
	if vcode == 0 {
		t.Fatalf("BYPASS: untrust's submission was logged by the ledger (log index %d) behind a 502; the command exited %d without waiting (reported as recorded: %v); %v later a default verify through a front replaying the root before the untrust exits 0:\nuntrust stdout:\n%s\nuntrust stderr:\n%s\nverify:\n%s%s",
			after.Entries[0].Index, code, reported, time.Since(returned).Round(time.Millisecond), out, errOut, vout, verr)
	}
	if vcode != ExitCouldNotVerify {
		t.Fatalf("verify %s through the replaying front: exit %d, want %d\n%s%s", target, vcode, ExitCouldNotVerify, vout, verr)
	}
}
