package plugin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestVerifyRegistryErrorFirst: verify asks the ledger about the signers'
// revocations while the registry resolves the image. When the registry
// fails, its error is the one reported (exit 4, naming the image), whatever
// the ledger does meanwhile: down, or holding its requests open, which are
// then cancelled rather than waited for.
func TestVerifyRegistryErrorFirst(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	missing := h.reg.host + "/nope:v1"
	var held, cancelled atomic.Int32
	hang := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		held.Add(1)
		<-r.Context().Done()
		cancelled.Add(1)
	}))
	t.Cleanup(hang.Close)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"ledger down", []string{"--ledger", closedLedgerURL(t)}},
		{"ledger holds its answers, key given", []string{"--ledger", hang.URL, "--ledger-key", h.ledger.VerifierKey}},
		{"ledger holds its answers, first use", []string{"--ledger", hang.URL}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, format := range []string{"text", "json"} {
				args := append(append([]string{"verify", "--output", format}, tc.args...), missing)
				out, errOut, code := h.run(args...)
				if code != ExitCouldNotVerify {
					t.Fatalf("%v: exit %d, want %d\n%s\n%s", args, code, ExitCouldNotVerify, out, errOut)
				}
				msg := errOut + out
				if !strings.Contains(msg, "nope") || strings.Contains(strings.ToLower(msg), "ledger") {
					t.Fatalf("%v: the registry's error should be reported, not the ledger's:\n%s", args, msg)
				}
			}
		})
	}
	if held.Load() == 0 {
		t.Fatal("the held ledger was never asked: the test proves nothing about asking it early")
	}
}
