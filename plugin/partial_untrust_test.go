package plugin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
)

// TestPartialRecursiveUntrustWaits: untrust --recursive whose second
// statement fails (the ledger's front answers 500 from then on) exits
// non-zero, but what it did record, the index's untrust, is a revocation
// in the log all the same: the command must wait for it as for a whole
// run before it returns. Otherwise a front replaying the map root from
// before the untrust, still within verify's default --max-index-lag, gets
// a default verify of the index to exit 0 right after the command said it
// untrusted it. Fails without the wait on a partial failure.
func TestPartialRecursiveUntrustWaits(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, []ledgertest.Option{ledgertest.WithConfig(func(c *ledger.Config) {
		c.MapCommitInterval = 200 * time.Millisecond
	})}, "alice")
	multi := h.reg.host + "/multi:v1"
	var s signResult
	if err := json.Unmarshal([]byte(h.mustRun(0, "sign", "--recursive", "-o", "json", multi)), &s); err != nil || len(s.Statements) < 3 {
		t.Fatalf("sign --recursive: %v %+v", err, s)
	}
	index := s.Statements[0] // the index itself, recorded first
	before := rt10CoveredTrust(t, h.ledger.URL, index.Digest, index.KeyID)

	// A front that passes everything to the ledger but refuses every
	// submission after the first.
	var posts atomic.Int32
	failing := interceptFront(t, h.ledger.URL, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries && posts.Add(1) > 1 {
			http.Error(w, `{"error":"broken"}`, http.StatusInternalServerError)
			return
		}
		next.ServeHTTP(w, r)
	})

	h.indexHold = defaultIndexHold // as in production
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: failing.URL}, "untrust", "--recursive", "-o", "json", multi)
	returned := time.Now()
	if code == 0 {
		t.Fatalf("untrust --recursive through a front refusing its second submission exits 0:\n%s%s", out, errOut)
	}
	var u signResult
	if err := json.Unmarshal([]byte(out), &u); err != nil || len(u.Statements) != 1 || u.Statements[0].Digest != index.Digest {
		t.Fatalf("untrust --recursive, failed after one statement: want the index's untrust reported: %v\n%s%s", err, out, errOut)
	}
	if u.Indexed == nil || !*u.Indexed {
		t.Errorf("the recorded untrust was not waited for: \"indexed\" %v\n%s%s", u.Indexed, out, errOut)
	}

	front := rt9ReplayFront(t, h.ledger.URL, index.Digest, before.Map, before.Entries[0])
	target := h.reg.host + "/multi@" + index.Digest
	vout, verr, vcode := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "verify", target)
	if vcode == 0 {
		t.Fatalf("BYPASS: untrust --recursive recorded the index's untrust (log index %d), then failed and returned; %v later a default verify of the index through a front replaying the root before the untrust exits 0:\n%s%s",
			u.Statements[0].LogIndex, time.Since(returned).Round(time.Millisecond), vout, verr)
	}
	if vcode != ExitCouldNotVerify {
		t.Fatalf("verify %s through the replaying front: exit %d, want %d\n%s%s", target, vcode, ExitCouldNotVerify, vout, verr)
	}
}

// interceptFront serves ledgerURL through a front on loopback: handle sees
// every request first and either answers it itself or passes it on to the
// ledger with next (a reverse proxy). The front stops with the test.
func interceptFront(t *testing.T, ledgerURL string, handle func(w http.ResponseWriter, r *http.Request, next http.Handler)) *httptest.Server {
	t.Helper()
	u, err := url.Parse(ledgerURL)
	if err != nil {
		t.Fatal(err)
	}
	next := httputil.NewSingleHostReverseProxy(u)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handle(w, r, next) }))
	t.Cleanup(front.Close)
	return front
}
