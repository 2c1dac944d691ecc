package plugin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/docker/cli/cli/command"
	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/notarize/docker-notarize/internal/testutil"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// TestLsRevokedKeyCountsWhatCameBefore: alice trusted a file, then revoked
// her stolen key, and the thief untrusted the same file (a newer statement:
// the ledger's key index now has the thief's as alice's current one). ls
// counts alice's statement from before the revocation, lists the thief's
// marked, and --status trusted still finds the file.
func TestLsRevokedKeyCountsWhatCameBefore(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	approved, approvedD := writeFile(t, "approved", "approved before the theft")
	h.mustRun(0, "sign", "--key", "alice", approved)
	h.mustRun(0, "key", "revoke", "--yes", "alice")
	th := newThief(t, h, "alice")
	th.state(approvedD, notarize.StatusUntrusted, notarize.KindFile, time.Now().Add(time.Minute))

	ls := func(args ...string) lsOutput {
		t.Helper()
		var out lsOutput
		if err := json.Unmarshal([]byte(h.mustRun(0, append([]string{"ls", "-o", "json", "--signer", "alice"}, args...)...)), &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	o := ls()
	// The revocation itself is one more asset (sha256:<key ID>), untrusted.
	if len(o.Signers) != 1 || o.Team.Trusted != 1 || o.Team.Untrusted != 1 || o.Signers[0].Trusted != 1 {
		t.Fatalf("ls: the thief's statement after the revocation hid alice's trusted one: %+v", o)
	}
	var marked, counted int
	for _, st := range o.Signers[0].Statements {
		if st.Digest != string(approvedD) {
			continue
		}
		if st.KeyRevokedAt != nil {
			marked++
			if st.Status != "UNTRUSTED" {
				t.Errorf("the marked statement is %s, want the thief's UNTRUSTED", st.Status)
			}
		} else {
			counted++
			if st.Status != "TRUSTED" {
				t.Errorf("the counted statement is %s, want alice's TRUSTED", st.Status)
			}
		}
	}
	if marked != 1 || counted != 1 {
		t.Fatalf("statements about the file: %d marked, %d counted; want 1 and 1: %+v", marked, counted, o.Signers[0].Statements)
	}
	if o := ls("--status", "trusted"); len(o.Signers) != 1 || o.Signers[0].Trusted != 1 || len(o.Signers[0].Statements) != 1 {
		t.Fatalf("ls --status trusted: %+v", o)
	}
	o = ls("--status", "untrusted")
	if len(o.Signers) != 1 || o.Signers[0].Untrusted != 1 || len(o.Signers[0].Statements) != 2 {
		t.Fatalf("ls --status untrusted: want the revocation (counted) and the thief's statement (marked): %+v", o)
	}
	for _, st := range o.Signers[0].Statements {
		if st.Digest == string(approvedD) && st.KeyRevokedAt == nil {
			t.Fatalf("ls --status untrusted counts the thief's statement: %+v", o)
		}
	}
}

// runLs runs ls with opts (its options that no flag sets, such as a lower
// maxRevokedLookups) against the harness's ledger and home, as harness.run
// runs a command line, and returns its stdout, stderr and exit code.
func (h *harness) runLs(opts lsOptions) (stdout, stderr string, code int) {
	h.t.Helper()
	var out, errOut bytes.Buffer
	dockerCli, err := command.NewDockerCli(
		command.WithInputStream(io.NopCloser(strings.NewReader(""))),
		command.WithOutputStream(&out),
		command.WithErrorStream(&errOut),
	)
	if err != nil {
		h.t.Fatal(err)
	}
	vars := map[string]string{EnvHome: h.home, EnvPassword: testPassword, EnvLedger: h.ledger.URL}
	opts.root = &rootOptions{env: env{
		lookupEnv:    func(k string) (string, bool) { v, ok := vars[k]; return v, ok },
		now:          h.now,
		keychain:     authn.NewMultiKeychain(),
		isTerminal:   func(int) bool { return false },
		readPassword: func(int) ([]byte, error) { panic("no terminal in tests") },
	}, ledgerURL: h.ledger.URL}
	if opts.format == "" {
		opts.format = formatText
	}
	code, msg := Exit(runLs(h.t.Context(), dockerCli, opts))
	if msg != "" {
		errOut.WriteString(msg + "\n")
	}
	return out.String(), errOut.String(), code
}

// TestLsRevokedKeyFloodBounded: a thief who floods assets with the revoked
// key's statements cannot make ls read each back without bound: past the
// bound (lsMaxRevokedLookups, lowered here through ls's options) it fails
// (exit 4) rather than count what it did not read.
func TestLsRevokedKeyFloodBounded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	h.mustRun(0, "key", "revoke", "--yes", "alice")
	th := newThief(t, h, "alice")
	for i := range 3 {
		_, d := writeFile(t, fmt.Sprint("flood-", i), fmt.Sprint("the thief's build ", i))
		th.state(d, notarize.StatusTrusted, notarize.KindFile, time.Now())
	}
	_, errOut, code := h.runLs(lsOptions{signers: []string{"alice"}, maxRevokedLookups: 2})
	if code != ExitCouldNotVerify || !strings.Contains(errOut, "too many statements after a key's revocation") {
		t.Fatalf("ls over the bound: exit %d, want %d and the bound named\n%s", code, ExitCouldNotVerify, errOut)
	}
	out, errOut, code := h.runLs(lsOptions{signers: []string{"alice"}, format: formatJSON, maxRevokedLookups: 3})
	if code != 0 {
		t.Fatalf("ls within the bound: exit %d\n%s", code, errOut)
	}
	if o := decodeLs(t, out); len(o.Signers) != 1 || o.Signers[0].Trusted != 0 {
		t.Fatalf("ls within the bound counts the thief's statements: %+v", o)
	}
}

// TestLsRevokedLookupsAtOnce: ls reads back what a revoked key said before
// its revocation lsRevokedLookups (8) assets at a time, never more, however
// many assets the thief's statements cover. A front before the ledger holds
// every lookup until more than 8 are in flight or none comes for a while,
// so every lookup ls starts at once is counted together.
func TestLsRevokedLookupsAtOnce(t *testing.T) {
	t.Parallel()
	const assets = 12
	h := newHarness(t, "alice")
	h.mustRun(0, "key", "revoke", "--yes", "alice")
	th := newThief(t, h, "alice")
	for i := range assets {
		_, d := writeFile(t, fmt.Sprint("flood-", i), fmt.Sprint("the thief's build ", i))
		th.state(d, notarize.StatusTrusted, notarize.KindFile, time.Now())
	}
	gate := &testutil.InFlight{Bound: lsRevokedLookups, Idle: 100 * time.Millisecond}
	u, err := url.Parse(h.ledger.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, api.PathDigests) {
			proxy.ServeHTTP(w, r)
			return
		}
		// The lookup leaves the count before ls reads a byte of its
		// answer, so that ls's next lookup never overlaps it here.
		leave := gate.Enter()
		rec := httptest.NewRecorder()
		proxy.ServeHTTP(rec, r)
		leave()
		maps.Copy(w.Header(), rec.Header())
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(front.Close)
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "ls", "--signer", "alice", "-o", "json")
	if code != 0 {
		t.Fatalf("ls: exit %d\n%s", code, errOut)
	}
	if o := decodeLs(t, out); len(o.Signers) != 1 || len(o.Signers[0].Statements) != assets+1 || o.Signers[0].Trusted != 0 {
		t.Fatalf("ls: want the revocation and the thief's %d statements listed, none counted as trusted: %+v", assets, o)
	}
	if gate.Calls() < 2*assets {
		t.Fatalf("%d digest lookups through the front, want at least two per asset read back (%d)", gate.Calls(), 2*assets)
	}
	if most := gate.Most(); most > lsRevokedLookups {
		t.Fatalf("%d digest lookups in flight at once, at most %d", most, lsRevokedLookups)
	}
}
