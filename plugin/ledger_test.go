package plugin

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/docker/cli/cli/command"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/notarize/docker-notarize/internal/witnesstest"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledger/storage/posix"
	"github.com/notarize/docker-notarize/ledgerclient"
)

// front is one address before one real ledger or another: a ledger reset
// or replaced behind its URL, or an attacker who took the URL over.
type front struct {
	URL string
	mu  sync.Mutex
	to  *url.URL
}

func newFront(t *testing.T, to string) *front {
	t.Helper()
	f := &front{}
	f.switchTo(t, to)
	srv := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			f.mu.Lock()
			defer f.mu.Unlock()
			r.SetURL(f.to)
		},
	})
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

func (f *front) switchTo(t *testing.T, to string) {
	t.Helper()
	u, err := url.Parse(to)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.to = u
	f.mu.Unlock()
}

// ledgers returns `ledger list -o json`.
func (h *harness) ledgers() []ledgerclient.LedgerPin {
	h.t.Helper()
	var out ledgerListOutput
	if err := json.Unmarshal([]byte(h.mustRun(0, "ledger", "list", "-o", "json")), &out); err != nil {
		h.t.Fatal(err)
	}
	return out.Ledgers
}

// snapshot is every file of the client's ledger state (pins and
// checkpoints), to show that a refused ledger changed nothing.
func (h *harness) snapshot() map[string]string {
	h.t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(filepath.Join(h.home, "ledgers"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, "lock") {
			return err
		}
		b, err := os.ReadFile(p)
		files[p] = string(b)
		return err
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return files
}

func sameFiles(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// mustFail runs a command that must fail with want and name the fix.
func (h *harness) mustFailChangedKey(url string, want int, args ...string) {
	h.t.Helper()
	out, errOut, code := h.run(args...)
	if code != want {
		h.t.Fatalf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, errOut)
	}
	for _, s := range []string{"docker notarize ledger trust " + url + " --key NEWKEY --force", "attack", "out of band"} {
		if !strings.Contains(errOut+out, s) {
			h.t.Fatalf("%s: the error does not say %q:\nstdout: %s\nstderr: %s", strings.Join(args, " "), s, out, errOut)
		}
	}
}

// TestLedgerReset: the ledger behind a URL is reset (rm -rf .notarize; make
// run): a new key, a new default origin. Commands are refused with the way
// out; `ledger trust URL --key NEW --force` is that way, and the old
// ledger's checkpoint does not get in the way.
func TestLedgerReset(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	app := h.reg.host + "/app:v1"
	fr := newFront(t, h.ledger.URL)
	h.mustRun(0, "--ledger", fr.URL, "sign", app)
	h.mustRun(0, "--ledger", fr.URL, "verify", app)
	before := h.snapshot()

	reset := ledgertest.Start(t)
	if reset.Origin == h.ledger.Origin {
		t.Fatalf("a new ledger has the old default origin %q", reset.Origin)
	}
	fr.switchTo(t, reset.URL)
	h.mustFailChangedKey(fr.URL, ExitCouldNotVerify, "--ledger", fr.URL, "verify", app)
	h.mustFailChangedKey(fr.URL, ExitError, "--ledger", fr.URL, "sign", app)
	if !sameFiles(before, h.snapshot()) {
		t.Fatal("a refused ledger changed the client state")
	}

	// Without --force the pin stays, and both keys are shown.
	pub := filepath.Join(reset.Dir, posix.PubFile)
	_, errOut, code := h.run("ledger", "trust", fr.URL, "--key", pub)
	if code != ExitError || !strings.Contains(errOut, h.ledger.VerifierKey) || !strings.Contains(errOut, reset.VerifierKey) || !strings.Contains(errOut, "--force") {
		t.Fatalf("trust over a pin without --force: exit %d, stderr %s", code, errOut)
	}
	if !sameFiles(before, h.snapshot()) {
		t.Fatal("a refused trust changed the client state")
	}
	h.mustRun(0, "ledger", "trust", fr.URL, "--key", pub, "--force")
	h.mustRun(2, "--ledger", fr.URL, "verify", app) // a new, empty ledger
	h.mustRun(0, "--ledger", fr.URL, "sign", app)
	h.mustRun(0, "--ledger", fr.URL, "verify", app)

	pins := h.ledgers()
	if len(pins) != 1 || pins[0].VerifierKey != reset.VerifierKey || pins[0].Origin != reset.Origin || pins[0].Checkpoint == nil || pins[0].Checkpoint.Size != 1 {
		t.Fatalf("ledger list after the reset: %+v", pins)
	}
	// The old ledger's checkpoint is kept, unchanged, as evidence.
	now := h.snapshot()
	for p, b := range before {
		if strings.HasSuffix(p, "checkpoint") && now[p] != b {
			t.Fatalf("the old ledger's checkpoint %s changed", p)
		}
	}
}

// TestTwoLedgersOneHost: two ledgers started without --origin on one host
// are used from one NOTARIZE_HOME.
func TestTwoLedgersOneHost(t *testing.T) {
	h := newHarness(t, "alice")
	other := ledgertest.Start(t)
	app := h.reg.host + "/app:v1"
	for _, l := range []*ledgertest.Server{h.ledger, other} {
		h.mustRun(0, "--ledger", l.URL, "sign", app)
		h.mustRun(0, "--ledger", l.URL, "verify", app)
	}
	pins := h.ledgers()
	if len(pins) != 2 || pins[0].Origin == pins[1].Origin || pins[0].Checkpoint == nil || pins[1].Checkpoint == nil {
		t.Fatalf("ledger list: %+v", pins)
	}
	text := h.mustRun(0, "ledger", "list")
	if !strings.Contains(text, h.ledger.Origin) || !strings.Contains(text, other.Origin) {
		t.Fatalf("ledger list:\n%s", text)
	}
}

// TestLedgerKeyChange: a ledger's operator moves to a new key under the
// same origin (--origin). The client refuses until the user trusts the new
// key; then the old key's state does not get in the way.
func TestLedgerKeyChange(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	const origin = "example.test/team-ledger"
	old := ledgertest.Start(t, ledgertest.WithOrigin(origin))
	fr := newFront(t, old.URL)
	app := h.reg.host + "/app:v1"
	h.mustRun(0, "--ledger", fr.URL, "sign", app)
	h.mustRun(0, "--ledger", fr.URL, "sign", app)

	renewed := ledgertest.Start(t, ledgertest.WithOrigin(origin))
	fr.switchTo(t, renewed.URL)
	h.mustFailChangedKey(fr.URL, ExitCouldNotVerify, "--ledger", fr.URL, "verify", app)
	h.mustRun(0, "ledger", "trust", fr.URL, "--key", renewed.VerifierKey, "--force")
	h.mustRun(0, "--ledger", fr.URL, "sign", app)
	h.mustRun(0, "--ledger", fr.URL, "verify", app)
	if pins := h.ledgers(); len(pins) != 1 || pins[0].Origin != origin || pins[0].VerifierKey != renewed.VerifierKey {
		t.Fatalf("ledger list: %+v", pins)
	}
}

// TestLedgerForgedKeyChange: a front takes the URL over and answers with a
// ledger of its own (another key, the same origin). Nothing the user did
// not confirm changes the pin or the state: every command is refused, and
// trusting the old key against it is refused too.
func TestLedgerForgedKeyChange(t *testing.T) {
	h := newHarness(t, "alice")
	fr := newFront(t, h.ledger.URL)
	app := h.reg.host + "/app:v1"
	h.mustRun(0, "--ledger", fr.URL, "sign", app)
	before := h.snapshot()

	forged := ledgertest.Start(t, ledgertest.WithOrigin(h.ledger.Origin))
	fr.switchTo(t, forged.URL)
	h.mustFailChangedKey(fr.URL, ExitCouldNotVerify, "--ledger", fr.URL, "verify", app)
	h.mustFailChangedKey(fr.URL, ExitError, "--ledger", fr.URL, "sign", app)
	h.mustFailChangedKey(fr.URL, ExitCouldNotVerify, "--ledger", fr.URL, "verify", app) // still, on a second try
	if _, errOut, code := h.run("ledger", "trust", fr.URL, "--key", h.ledger.VerifierKey); code != ExitError || !strings.Contains(errOut, "does not sign with") {
		t.Fatalf("trusting a key the answering ledger does not sign with: exit %d, %s", code, errOut)
	}
	if _, errOut, code := h.run("ledger", "trust", fr.URL); code != ExitUsage || !strings.Contains(errOut, "--yes") {
		t.Fatalf("trust without --key off a terminal: exit %d, %s", code, errOut)
	}
	if !sameFiles(before, h.snapshot()) {
		t.Fatal("a forged key change changed the client state")
	}
	// Forgetting the pin does not open the door: the log is known under
	// another key, so first use is refused too.
	h.mustRun(0, "ledger", "forget", fr.URL)
	h.mustFailChangedKey(fr.URL, ExitCouldNotVerify, "--ledger", fr.URL, "verify", app)
	// The honest ledger is back: its pin is trusted again, its history checked.
	fr.switchTo(t, h.ledger.URL)
	h.mustRun(0, "ledger", "trust", fr.URL, "--key", h.ledger.VerifierKey)
	h.mustRun(0, "--ledger", fr.URL, "verify", app)
}

// TestLedgerTrustForget covers trust on confirmation, forget and --purge.
func TestLedgerTrustForget(t *testing.T) {
	h := newHarness(t, "alice")
	out := h.mustRun(0, "ledger", "trust", h.ledger.URL, "--yes")
	if !strings.Contains(out, h.ledger.VerifierKey) {
		t.Fatalf("trust --yes printed %q", out)
	}
	h.mustRun(0, "ledger", "trust", h.ledger.URL, "--key", h.ledger.VerifierKey) // the same key again
	h.mustRun(0, "sign", h.reg.host+"/app:v1")
	pins := h.ledgers()
	if len(pins) != 1 || pins[0].Checkpoint == nil {
		t.Fatalf("ledger list: %+v", pins)
	}
	path := pins[0].Checkpoint.Path
	h.mustRun(0, "ledger", "forget", h.ledger.URL)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("forget without --purge removed the checkpoint: %v", err)
	}
	if pins := h.ledgers(); len(pins) != 0 {
		t.Fatalf("ledger list after forget: %+v", pins)
	}
	if _, _, code := h.run("ledger", "forget", h.ledger.URL); code != ExitError {
		t.Fatalf("forget of an unknown ledger: exit %d", code)
	}
	h.mustRun(0, "ledger", "trust", h.ledger.URL, "--key", h.ledger.VerifierKey)
	h.mustRun(0, "ledger", "forget", "--purge", h.ledger.URL)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("forget --purge kept the checkpoint: %v", err)
	}
	for _, args := range [][]string{
		{"ledger", "trust", "ftp://x"},
		{"ledger", "trust", h.ledger.URL, "--key", "not-a-key"},
		{"ledger", "list", "-o", "yaml"},
	} {
		if _, _, code := h.run(args...); code != ExitUsage {
			t.Fatalf("%v: exit %d, want %d", args, code, ExitUsage)
		}
	}
}

// runOnTerminal runs one command with stdin a terminal answering input.
func (h *harness) runOnTerminal(input string, args ...string) (stdout, stderr string, code int) {
	h.t.Helper()
	var out, errOut bytes.Buffer
	dockerCli, err := command.NewDockerCli(
		command.WithInputStream(io.NopCloser(strings.NewReader(input))),
		command.WithOutputStream(&out),
		command.WithErrorStream(&errOut),
	)
	if err != nil {
		h.t.Fatal(err)
	}
	vars := map[string]string{EnvHome: h.home, EnvLedger: h.ledger.URL}
	e := env{
		lookupEnv:    func(k string) (string, bool) { v, ok := vars[k]; return v, ok },
		now:          h.now,
		keychain:     authn.NewMultiKeychain(),
		isTerminal:   func(int) bool { return true },
		readPassword: func(int) ([]byte, error) { panic("no password in these tests") },
	}
	cmd := newRootCmd("docker-notarize", false, dockerCli, e)
	cmd.SetArgs(args)
	code, msg := Exit(cmd.ExecuteContext(h.t.Context()))
	if msg != "" {
		errOut.WriteString(msg + "\n")
	}
	return out.String(), errOut.String(), code
}

// TestLedgerTrustConfirm: without --key the announced key is shown and
// pinned only when the user says yes.
func TestLedgerTrustConfirm(t *testing.T) {
	h := newHarness(t)
	for _, answer := range []string{"", "n\n", "no\n", "yess\n"} {
		_, errOut, code := h.runOnTerminal(answer, "ledger", "trust", h.ledger.URL)
		if code != ExitError || !strings.Contains(errOut, h.ledger.VerifierKey) || !strings.Contains(errOut, "ledger.pub") {
			t.Fatalf("answer %q: exit %d, stderr %s", answer, code, errOut)
		}
		if pins := h.ledgers(); len(pins) != 0 {
			t.Fatalf("answer %q pinned %+v", answer, pins)
		}
	}
	if _, errOut, code := h.runOnTerminal("y\n", "ledger", "trust", h.ledger.URL); code != 0 {
		t.Fatalf("answer y: exit %d, stderr %s", code, errOut)
	}
	if pins := h.ledgers(); len(pins) != 1 || pins[0].VerifierKey != h.ledger.VerifierKey {
		t.Fatalf("pins %+v", pins)
	}
}

// TestLedgerKeyFlagAfterReset: --ledger-key with the new key works after a
// reset (before, the state of the old key under the same origin refused it),
// and leaves the pin alone.
func TestLedgerKeyFlagAfterReset(t *testing.T) {
	h := newHarness(t, "alice")
	const origin = "example.test/team-ledger"
	old := ledgertest.Start(t, ledgertest.WithOrigin(origin))
	fr := newFront(t, old.URL)
	app := h.reg.host + "/app:v1"
	h.mustRun(0, "--ledger", fr.URL, "sign", app)
	renewed := ledgertest.Start(t, ledgertest.WithOrigin(origin))
	fr.switchTo(t, renewed.URL)
	h.mustRun(0, "--ledger", fr.URL, "--ledger-key", renewed.VerifierKey, "sign", app)
	h.mustRun(0, "--ledger", fr.URL, "--ledger-key", renewed.VerifierKey, "verify", app)
	if pins := h.ledgers(); len(pins) != 1 || pins[0].VerifierKey != old.VerifierKey {
		t.Fatalf("pins %+v", pins)
	}
}

// TestLedgerTrustHonoursPolicyLogLine: `ledger trust` takes no key that the
// witness policy's log line rules out (red team 15, review): not one given
// with --key, and not one a front announces for --yes; the key the policy
// names is trusted.
func TestLedgerTrustHonoursPolicyLogLine(t *testing.T) {
	h := newHarness(t, "alice")
	fr := newFront(t, h.ledger.URL)
	w1 := witnesstest.New(t, "w1", "witness1.test")
	policy := filepath.Join(t.TempDir(), "policy")
	if err := os.WriteFile(policy, []byte("log "+h.ledger.VerifierKey+"\nwitness w1 "+w1.VKey+" http://127.0.0.1:1/\nquorum w1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	forged := ledgertest.Start(t, ledgertest.WithOrigin(h.ledger.Origin))
	h.mustRun(0, "--ledger", fr.URL, "sign", h.reg.host+"/app:v1")
	before := h.snapshot()
	if _, errOut, code := h.run("ledger", "trust", fr.URL, "--key", forged.VerifierKey, "--witness-policy", policy); code != ExitError || !strings.Contains(errOut, "witness policy names") {
		t.Fatalf("trusting a key the policy does not name: exit %d, %s", code, errOut)
	}
	fr.switchTo(t, forged.URL)
	if _, errOut, code := h.run("ledger", "trust", fr.URL, "--yes", "--force", "--witness-policy", policy); code != ExitError || !strings.Contains(errOut, "not a log key the witness policy names") {
		t.Fatalf("trusting the key a front announces, which the policy does not name: exit %d, %s", code, errOut)
	}
	if !sameFiles(before, h.snapshot()) {
		t.Fatal("a refused trust changed the client state")
	}
	// Unwitnessed, it is refused for what it is.
	fr.switchTo(t, h.ledger.URL)
	if _, errOut, code := h.run("ledger", "trust", fr.URL, "--key", h.ledger.VerifierKey, "--force", "--witness-policy", policy); code != ExitError || !strings.Contains(errOut, "does not meet the witness policy") {
		t.Fatalf("trusting the named key of an unwitnessed ledger: exit %d, %s", code, errOut)
	}
	// The ledger's key, the policy names: trusted (the ledger as its users
	// reach it, cosigned by the policy's witness).
	wf := witnesstest.NewFront(t, h.ledger.URL, w1)
	if out, errOut, code := h.run("ledger", "trust", wf.URL, "--key", h.ledger.VerifierKey, "--witness-policy", policy); code != 0 {
		t.Fatalf("trusting the key the policy names: exit %d\n%s%s", code, out, errOut)
	}
}
