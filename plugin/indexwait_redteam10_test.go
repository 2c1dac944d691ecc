package plugin

import (
	"bytes"
	"encoding/json"
	"io"
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

// Red team 10: a front that lies only while untrust or key revoke waits
// for the ledger's index (after the receipt) must not make the revocation
// vanish: the command fails (exit 1), says what it recorded, and the
// ledger holds it.

// rt10LyingAfterSubmit is a front before upstream that passes everything
// through until a submission (POST to api.PathEntries) went through it;
// from then on it answers current lookups of digest d with the ledger's
// JSON answer whose map root inclusion proof has one byte flipped (a lie
// that every client catches).
func rt10LyingAfterSubmit(t *testing.T, upstream string, d string) *httptest.Server {
	t.Helper()
	u, err := url.Parse(upstream + "/")
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	var submitted atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries {
			submitted.Store(true)
		}
		if !submitted.Load() || r.URL.Path != api.PathDigests+d+api.PathCurrentSuffix {
			rp.ServeHTTP(w, r)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, upstream+r.URL.RequestURI(), nil)
		req.Header.Set("Accept", api.MediaTypeJSON) // the answer as JSON, its tail inline
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var lr api.LookupResponse
		if err := json.Unmarshal(b, &lr); err != nil || lr.Map == nil || len(lr.Map.RootInclusionProof) == 0 {
			w.WriteHeader(resp.StatusCode)
			_, _ = w.Write(b)
			return
		}
		p := bytes.Clone(lr.Map.RootInclusionProof[0])
		p[0] ^= 1
		lr.Map.RootInclusionProof[0] = p
		w.Header().Set("Content-Type", api.MediaTypeJSON)
		_ = json.NewEncoder(w).Encode(&lr)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestRedteam10LieWhileWaitingKeepsUntrust: untrust through a front that
// lies once the untrust is submitted exits 1, prints the statement it
// recorded (text and JSON), and an honest verify afterwards says
// UNTRUSTED. Fails if the lie made untrust exit 0 ("indexed" on a lie) or
// hid what was recorded.
func TestRedteam10LieWhileWaitingKeepsUntrust(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, []ledgertest.Option{ledgertest.WithConfig(func(c *ledger.Config) {
		c.MapCommitInterval = 200 * time.Millisecond
	})}, "alice")
	h.indexHold = defaultIndexHold
	app := h.reg.host + "/app:v1"
	d := string(digestOf(t, h.reg.image))
	h.mustRun(0, "sign", app)
	for _, format := range []string{"text", "json"} {
		front := rt10LyingAfterSubmit(t, h.ledger.URL, d)
		start := time.Now()
		out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "untrust", "-o", format, app)
		if code == 0 {
			t.Fatalf("DoS/BYPASS: untrust -o %s through a front lying while it waited exited 0\n%s%s", format, out, errOut)
		}
		if code != ExitError {
			t.Fatalf("untrust -o %s through the lying front: exit %d, want %d\n%s%s", format, code, ExitError, out, errOut)
		}
		if took := time.Since(start); took >= DefaultIndexWait {
			t.Errorf("untrust -o %s: took %v: a lie met while waiting should end the wait, not be waited out", format, took)
		}
		if format == "json" {
			var s signResult
			if err := json.Unmarshal([]byte(out), &s); err != nil || len(s.Statements) != 1 || !strings.EqualFold(s.Statements[0].Status, string(notarize.StatusUntrusted)) || s.ExitCode != ExitError || s.Error == "" {
				t.Fatalf("DoS: untrust -o json through the lying front does not report what it recorded: %v\n%s%s", err, out, errOut)
			}
		} else if !strings.Contains(out, "UNTRUSTED") || !strings.Contains(out, "log index") {
			t.Fatalf("DoS: untrust through the lying front does not print what it recorded\nstdout:\n%s\nstderr:\n%s", out, errOut)
		}
		if !strings.Contains(errOut+out, "is recorded") {
			t.Errorf("untrust -o %s: the error does not say the untrust is recorded\n%s%s", format, out, errOut)
		}
	}
	// The revocation stands, for a verifier that no front lies to.
	if out, errOut, code := h.run("verify", app); code != 1 || !strings.Contains(out, "UNTRUSTED") {
		t.Fatalf("DoS: after untrust through the lying front, an honest verify: exit %d, want 1 UNTRUSTED\n%s%s", code, out, errOut)
	}
}

// TestRedteam10LieWhileWaitingKeepsKeyRevoke: key revoke through a front
// that lies once the revocation is submitted exits 1 and prints the
// revocation it recorded; the ledger holds it (a second key revoke, no
// front, finds it: "Already revoked").
func TestRedteam10LieWhileWaitingKeepsKeyRevoke(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, []ledgertest.Option{ledgertest.WithConfig(func(c *ledger.Config) {
		c.MapCommitInterval = 200 * time.Millisecond
	})}, "alice")
	// A map root before the revocation (a ledger with none answers without
	// a map, which ends the asking at once).
	_, _ = rt9SignedBefore(t, h, h.reg.host+"/app:v1")
	h.indexHold = defaultIndexHold
	kid := newHarnessKeyID(t, "alice")
	kd, err := notarize.KeyRevocationDigest(kid)
	if err != nil {
		t.Fatal(err)
	}
	front := rt10LyingAfterSubmit(t, h.ledger.URL, string(kd))
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "key", "revoke", "--yes", "alice")
	if code == 0 {
		t.Fatalf("DoS/BYPASS: key revoke through a front lying while it waited exited 0\n%s%s", out, errOut)
	}
	if code != ExitError || !strings.Contains(errOut, "Revoked key") || !strings.Contains(errOut, "log index") {
		t.Fatalf("DoS: key revoke through the lying front: exit %d (want %d) and what was recorded on stderr\nstdout:\n%s\nstderr:\n%s", code, ExitError, out, errOut)
	}
	h.indexHold = 0
	if again := h.mustRun(0, "key", "revoke", "--yes", "alice"); !strings.Contains(again, "Already revoked") {
		t.Fatalf("DoS: the revocation made through the lying front is not in the ledger:\n%s", again)
	}
}
