package plugin

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/notarize"
)

// TestRedteam12InterruptedRecursiveUntrustReports: untrust --recursive
// interrupted (its context cancelled, as Ctrl-C does) while its second
// submission is in flight, after the index's untrust was recorded. Ctrl-C
// means stop now, so the index wait cannot run; held if the command still
// tells the truth: exit ExitInterrupted, the recorded untrust listed in
// its JSON with "indexed": false (not absent, not true), and a warning on
// stderr that the index does not cover it yet. Tried: an interrupt that
// loses the record of a revocation already in the log, or claims it was
// waited for.
func TestRedteam12InterruptedRecursiveUntrustReports(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, []ledgertest.Option{ledgertest.WithConfig(func(c *ledger.Config) {
		c.MapCommitInterval = 200 * time.Millisecond
	})}, "alice")
	multi := h.reg.host + "/multi:v1"
	var s signResult
	if err := json.Unmarshal([]byte(h.mustRun(0, "sign", "--recursive", "-o", "json", multi)), &s); err != nil || len(s.Statements) < 3 {
		t.Fatalf("sign --recursive: %v %+v", err, s)
	}
	index := s.Statements[0]

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var posts atomic.Int32
	front := interceptFront(t, h.ledger.URL, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries && posts.Add(1) > 1 {
			cancel() // Ctrl-C while the second submission is in flight
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			http.Error(w, `{"error":"unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r)
	})

	h.indexHold = defaultIndexHold // as in production
	out, errOut, code := h.runContext(ctx, map[string]string{EnvLedger: front.URL}, "untrust", "--recursive", "-o", "json", multi)
	if code != ExitInterrupted {
		t.Fatalf("untrust --recursive interrupted after one statement: exit %d, want %d\n%s%s", code, ExitInterrupted, out, errOut)
	}
	var u signResult
	if err := json.Unmarshal([]byte(out), &u); err != nil || len(u.Statements) != 1 || u.Statements[0].Digest != index.Digest || u.Statements[0].Status != outputStatus(notarize.StatusUntrusted) {
		t.Fatalf("untrust --recursive interrupted after one statement: want the index's untrust reported: %v\n%s%s", err, out, errOut)
	}
	if u.Indexed == nil || *u.Indexed {
		t.Errorf("interrupted before its wait, want \"indexed\": false, got %v\n%s%s", u.Indexed, out, errOut)
	}
	if !strings.Contains(errOut, "not yet in the ledger's verifiable index") {
		t.Errorf("no warning that the recorded untrust is not indexed:\n%s", errOut)
	}
}
