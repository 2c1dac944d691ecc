package plugin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/ledger/api"
)

// currentRewritingFront is a front before the ledger at upstream that
// passes every request through and rewrites the answers of current
// lookups with rewrite (given the request, for its query).
func currentRewritingFront(t *testing.T, upstream string, rewrite func(*http.Request, *api.LookupResponse)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequestWithContext(r.Context(), r.Method, upstream+r.URL.RequestURI(), r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK && strings.HasSuffix(r.URL.Path, api.PathCurrentSuffix) {
			var lr api.LookupResponse
			if err := json.Unmarshal(body, &lr); err == nil {
				rewrite(r, &lr)
				body, _ = json.Marshal(&lr)
			}
		}
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestVerifyThroughLyingFront: verify through a front before a real ledger
// that hides alice's revocation (UNKNOWN instead of UNTRUSTED) or puts her
// older "trusted" in its place (TRUSTED instead of UNTRUSTED) exits 4: the
// answer is not proven complete by the ledger's verifiable index. Every
// entry the front returns is genuine, logged and proven included, so
// without the index both lies verified.
func TestVerifyThroughLyingFront(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	app := h.reg.host + "/app:v1"
	h.mustRun(0, "sign", app)
	h.mustRun(0, "untrust", app)
	h.mustRun(1, "verify", app)

	drop := currentRewritingFront(t, h.ledger.URL, func(_ *http.Request, lr *api.LookupResponse) {
		lr.Entries = []api.LookupEntry{}
	})
	older := currentRewritingFront(t, h.ledger.URL, func(r *http.Request, lr *api.LookupResponse) {
		// The first entry the key made about the digest, with its genuine
		// inclusion proof, from the ledger's paginated lookup.
		resp, err := http.Get(h.ledger.URL + api.PathDigests + lr.Digest + "?" + r.URL.RawQuery)
		if err != nil {
			t.Error(err)
			return
		}
		defer resp.Body.Close()
		var page api.LookupResponse
		if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || len(page.Entries) < 2 {
			t.Errorf("paginated lookup: %v, %d entries", err, len(page.Entries))
			return
		}
		lr.Entries = page.Entries[:1]
		lr.Checkpoint = page.Checkpoint
	})
	for name, front := range map[string]*httptest.Server{"revocation dropped": drop, "older trust substituted": older} {
		out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "verify", app)
		if code != ExitCouldNotVerify {
			t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", name, code, ExitCouldNotVerify, out, errOut)
		}
		if !strings.Contains(errOut+out, "complete") && !strings.Contains(errOut+out, "proof") {
			t.Errorf("%s: the error does not say what failed:\n%s%s", name, out, errOut)
		}
	}
	h.mustRun(1, "verify", app) // the honest ledger still answers
}
