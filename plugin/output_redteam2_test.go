package plugin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/ledger/api"
)

// refusingFront is a front before the ledger at upstream that passes every
// request through but answers current lookups with status and an API error
// whose message is msg: a lying front (or ledger) choosing the text of the
// error the client shows.
func refusingFront(t *testing.T, upstream string, status int, msg string) *httptest.Server {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	passthrough := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, api.PathCurrentSuffix) {
			w.Header().Set("Content-Type", api.MediaTypeJSON)
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(api.ErrorResponse{Code: "INTERNAL", Message: msg})
			return
		}
		passthrough.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestRedteam2VerifyErrorCannotSpoofVerdict: a front that fails verify's
// lookup with an error message of its choosing — a forged verdict block
// "TRUSTED sha256:… / reason: …" on lines of their own, terminal escapes —
// gets exit 4 in both formats; in JSON one object with status ERROR and
// exitCode 4; in text nothing on stdout, and no line of stderr that starts
// like a verdict or carries an escape. A script or a person reading the
// output must never see TRUSTED for an image that could not be verified.
func TestRedteam2VerifyErrorCannotSpoofVerdict(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	app := h.reg.host + "/app:v1"
	h.mustRun(0, "sign", app)
	h.mustRun(0, "untrust", app)
	out := h.mustRun(1, "verify", app)
	digest := strings.Fields(out)[1]
	forged := fmt.Sprintf("busy\nTRUSTED %s\n  reason:     alice says trusted\n\x1b[2K\rTRUSTED %s\u2028TRUSTED", digest, digest)
	for _, status := range []int{http.StatusInternalServerError, http.StatusTooManyRequests, http.StatusBadRequest} {
		front := refusingFront(t, h.ledger.URL, status, forged)
		env := map[string]string{EnvLedger: front.URL}

		stdout, stderr, code := h.runWithEnv(env, "verify", app)
		if code != ExitCouldNotVerify {
			t.Fatalf("HTTP %d: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", status, code, ExitCouldNotVerify, stdout, stderr)
		}
		if strings.Contains(stdout, "TRUSTED") {
			t.Errorf("BYPASS: HTTP %d: stdout of a failed verify shows a verdict:\n%s", status, stdout)
		}
		for _, line := range strings.Split(stderr, "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "TRUSTED") || strings.ContainsAny(line, "\x1b\r\u2028") {
				t.Errorf("BYPASS: HTTP %d: the ledger's error text puts a line of its own on stderr: %q\nstderr:\n%s", status, line, stderr)
			}
		}

		stdout, stderr, code = h.runWithEnv(env, "verify", "-o", "json", app)
		if code != ExitCouldNotVerify {
			t.Fatalf("HTTP %d json: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", status, code, ExitCouldNotVerify, stdout, stderr)
		}
		dec := json.NewDecoder(strings.NewReader(stdout))
		var o map[string]any
		if err := dec.Decode(&o); err != nil {
			t.Fatalf("HTTP %d json: %v\n%s", status, err, stdout)
		}
		if dec.More() {
			t.Errorf("BYPASS: HTTP %d json: more than one document on stdout:\n%s", status, stdout)
		}
		if o["status"] != statusError || o["exitCode"] != float64(ExitCouldNotVerify) || o["keyId"] != nil || o["logIndex"] != nil {
			t.Errorf("BYPASS: HTTP %d json: a failed verify printed %v", status, o)
		}
	}
}

// TestRedteam2RegistryErrorCannotSpoofVerdict: a registry that fails the
// resolution of a tag with an error message of its choosing, a forged
// verdict on a line of its own, gets exit 4 and no line of stderr that
// starts like a verdict.
func TestRedteam2RegistryErrorCannotSpoofVerdict(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	forged := "denied\nTRUSTED sha256:" + strings.Repeat("ab", 32) + "\n  reason:     alice says trusted"
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": "DENIED", "message": forged}}})
	}))
	t.Cleanup(reg.Close)
	app := strings.TrimPrefix(reg.URL, "http://") + "/app:v1"
	stdout, stderr, code := h.run("verify", app)
	if code != ExitCouldNotVerify {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, ExitCouldNotVerify, stdout, stderr)
	}
	if strings.Contains(stdout, "TRUSTED") {
		t.Errorf("BYPASS: stdout of a failed verify shows a verdict:\n%s", stdout)
	}
	for _, line := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "TRUSTED") {
			t.Errorf("BYPASS: the registry's error text puts a line of its own on stderr: %q\nstderr:\n%s", line, stderr)
		}
	}
}
