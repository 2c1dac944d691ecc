package plugin

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
)

// TestSignRateLimitedSaysWhenToRetry: a real ledger's key rate limit (one
// statement per 90 s) refuses alice's second statement. sign says when to
// try again, in its message and, with -o json, in "retryAfter" (seconds),
// and does not send the statement again.
func TestSignRateLimitedSaysWhenToRetry(t *testing.T) {
	t.Parallel()
	schema := compileSchema(t)
	h := newHarnessWith(t, []ledgertest.Option{ledgertest.WithRateLimits(ledger.RateLimits{KeyPerSecond: 1.0 / 90, KeyBurst: 1})}, "alice")
	u, err := url.Parse(h.ledger.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	var posts atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	run := func(args ...string) (string, string, int) {
		return h.runWithEnv(map[string]string{EnvLedger: front.URL}, args...)
	}
	first, _ := writeFile(t, "first", "the first build")
	if _, errOut, code := run("sign", "--key", "alice", first); code != 0 {
		t.Fatalf("the first sign: exit %d\n%s", code, errOut)
	}

	second, _ := writeFile(t, "second", "the second build")
	_, errOut, code := run("sign", "--key", "alice", second)
	// The key's token refills while the first sign finishes: the wait
	// asked for is 90 s less the time since.
	if code != ExitError || !strings.Contains(errOut, "HTTP 429") || !regexp.MustCompile(`try again in (1m[0-9]+s|[0-9]+s)\)`).MatchString(errOut) {
		t.Fatalf("sign over the key's rate: exit %d, want %d and when to try again\n%s", code, ExitError, errOut)
	}
	out, errOut, code := run("sign", "-o", "json", "--key", "alice", second)
	v := checkJSONOutput(t, schema, "error", out, code)
	if ra, _ := v["retryAfter"].(float64); code != ExitError || ra < 1 || ra > 90 {
		t.Fatalf("sign -o json over the key's rate: exit %d, retryAfter %v, want 1 to 90\n%s\n%s", code, v["retryAfter"], out, errOut)
	}
	if n := posts.Load(); n != 3 {
		t.Fatalf("%d submissions for three signs: a refused statement was sent again", n)
	}
}

// TestBusyLedgerSaysWhenToRetry: a ledger that answers lookups 503 busy
// with Retry-After (as the ledger does when its lookup slots are full)
// makes verify and ls fail (exit 4) saying when to try again: in the
// message and, with -o json, in "retryAfter".
func TestBusyLedgerSaysWhenToRetry(t *testing.T) {
	t.Parallel()
	schema := compileSchema(t)
	h := newHarness(t, "alice")
	file := filepath.Join(t.TempDir(), "dist.tar")
	if err := os.WriteFile(file, []byte("an artifact"), 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(h.ledger.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, api.PathDigests) || strings.HasPrefix(r.URL.Path, api.PathKeys) {
			w.Header().Set("Retry-After", "2")
			w.Header().Set("Content-Type", api.MediaTypeJSON)
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"code":"` + api.CodeUnavailable + `","message":"too many lookups in progress"}`))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	busy := map[string]string{EnvLedger: front.URL}

	_, errOut, code := h.runWithEnv(busy, "verify", "file:"+file)
	if code != ExitCouldNotVerify || !strings.Contains(errOut, "try again in 2s") {
		t.Fatalf("verify against a busy ledger: exit %d, want %d and when to try again\n%s", code, ExitCouldNotVerify, errOut)
	}
	for _, tc := range []struct {
		def  string
		args []string
	}{
		{"verify", []string{"verify", "-o", "json", "file:" + file}},
		{"ls", []string{"ls", "-o", "json", "--signer", "alice"}},
	} {
		out, errOut, code := h.runWithEnv(busy, tc.args...)
		v := checkJSONOutput(t, schema, tc.def, out, code)
		if code != ExitCouldNotVerify || v["retryAfter"] != float64(2) || !strings.Contains(v["error"].(string), "try again in 2s") {
			t.Errorf("%s against a busy ledger: exit %d, retryAfter %v, want %d and 2\n%s\n%s", tc.def, code, v["retryAfter"], ExitCouldNotVerify, out, errOut)
		}
	}
}
