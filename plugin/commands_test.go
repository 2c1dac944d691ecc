package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/cli/cli/command"
	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
)

var update = flag.Bool("update", false, "rewrite testdata/golden files")

// testPassword encrypts the fixed test keys in testdata/keys (alice, bob).
const testPassword = "test-password"

// harness runs the command tree in-process, one fresh root per invocation as
// a new process would, against a real ledger and registry on loopback, with a
// fixed clock and the fixed test keys.
type harness struct {
	t      *testing.T
	home   string
	ledger *ledgertest.Server
	reg    *testRegistry

	mu    sync.Mutex
	clock time.Time
	// indexHold is the commands' env.indexHold: 0 unless a test attacks
	// the window after a revocation (indexed.go).
	indexHold time.Duration
}

func newHarness(t *testing.T, keys ...string) *harness {
	t.Helper()
	return newHarnessWith(t, nil, keys...)
}

// quietMap keeps the ledger's verifiable-index commits (map-root entries,
// which take log indices of their own on a timer) out of the test's log, so
// that the log indices and checkpoint sizes in golden files do not depend on
// how fast the machine is.
func quietMap(c *ledger.Config) {
	c.MapCommitEntries = 1 << 20
	c.MapCommitInterval = time.Hour
}

// newHarnessWith is newHarness with options for its ledger.
func newHarnessWith(t *testing.T, opts []ledgertest.Option, keys ...string) *harness {
	t.Helper()
	h := &harness{
		t:      t,
		home:   t.TempDir(),
		ledger: ledgertest.Start(t, opts...),
		reg:    newTestRegistry(t, nil),
		clock:  time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC),
	}
	if err := os.MkdirAll(filepath.Join(h.home, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		for _, ext := range []string{".key", ".pub"} {
			b, err := os.ReadFile(filepath.Join("testdata", "keys", k+ext))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(h.home, "keys", k+ext), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return h
}

// now is the injected clock: one minute later on every call.
func (h *harness) now() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clock = h.clock.Add(time.Minute)
	return h.clock
}

// run executes one command and returns its stdout, stderr and exit code.
func (h *harness) run(args ...string) (stdout, stderr string, code int) {
	h.t.Helper()
	return h.runWithEnv(nil, args...)
}

// runWithEnv is harness.run with more environment variables.
func (h *harness) runWithEnv(extra map[string]string, args ...string) (stdout, stderr string, code int) {
	h.t.Helper()
	return h.runContext(h.t.Context(), extra, args...)
}

// runContext is harness.runWithEnv under ctx (a cancelled one: an
// interrupted command).
func (h *harness) runContext(ctx context.Context, extra map[string]string, args ...string) (stdout, stderr string, code int) {
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
	for k, v := range extra {
		vars[k] = v
	}
	e := env{
		lookupEnv:    func(k string) (string, bool) { v, ok := vars[k]; return v, ok },
		now:          h.now,
		keychain:     authn.NewMultiKeychain(),
		isTerminal:   func(int) bool { return false },
		readPassword: func(int) ([]byte, error) { panic("no terminal in tests") },
		indexHold:    h.indexHold,
	}
	cmd := newRootCmd("docker-notarize", false, dockerCli, e)
	cmd.SetArgs(args)
	// Help and completions go where docker's do: stdout (and stderr).
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	code, msg := Exit(cmd.ExecuteContext(ctx))
	if msg != "" {
		errOut.WriteString(msg + "\n")
	}
	return out.String(), errOut.String(), code
}

// mustRun runs a command that must exit with want.
func (h *harness) mustRun(want int, args ...string) string {
	h.t.Helper()
	out, errOut, code := h.run(args...)
	if code != want {
		h.t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out, errOut)
	}
	return out
}

// golden compares got, with the registry address and home directory
// replaced by placeholders, to testdata/golden/name (rewritten with -update).
func (h *harness) golden(name, got string) {
	h.t.Helper()
	got = strings.ReplaceAll(got, h.reg.host, "REGISTRY")
	got = strings.ReplaceAll(got, h.home, "HOME")
	checkGolden(h.t, name, got)
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestCommands(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, []ledgertest.Option{ledgertest.WithConfig(quietMap)}, "alice")
	app := h.reg.host + "/app:v1"
	multi := h.reg.host + "/multi:v1"

	h.golden("key-list.txt", h.mustRun(0, "key", "list"))

	h.golden("sign.txt", h.mustRun(0, "sign", "--attr", "team=payments", "--attr", "ci.run=42", app))
	h.golden("verify-trusted.txt", h.mustRun(0, "verify", app))
	h.golden("verify-trusted.json", h.mustRun(0, "verify", "-o", "json", app))

	h.golden("verify-unknown.txt", h.mustRun(2, "verify", multi))
	h.golden("verify-unknown-signer.txt", h.mustRun(2, "verify", "--signer", "testdata/keys/bob.pub", app))

	h.golden("untrust.json", h.mustRun(0, "untrust", "-o", "json", app))
	h.golden("verify-untrusted.txt", h.mustRun(1, "verify", app))
	h.golden("inspect.txt", h.mustRun(0, "inspect", app))
	h.golden("inspect.json", h.mustRun(0, "inspect", "-o", "json", app))

	h.golden("sign-recursive.txt", h.mustRun(0, "sign", "--recursive", multi))
	h.golden("verify-index.json", h.mustRun(0, "verify", "-o", "json", multi))

	h.ledger.Stop()
	out := h.mustRun(ExitCouldNotVerify, "verify", "-o", "json", app)
	var v verifyOutput
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Status != statusError || v.Digest == "" || v.Reason == "" {
		t.Fatalf("verify with the ledger down printed %q (%v); want status ERROR with digest and reason", out, err)
	}
	if _, _, code := h.run("sign", app); code == 0 {
		t.Fatal("sign with the ledger down succeeded")
	}
}

// TestSignSupersedesDespiteClockSkew: a statement signed on a machine whose
// clock runs ahead must not make a later untrust from a machine with an
// earlier clock a silent no-op.
func TestSignSupersedesDespiteClockSkew(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	app := h.reg.host + "/app:v1"
	h.mustRun(0, "sign", app)
	h.mu.Lock()
	h.clock = h.clock.Add(-time.Hour) // this machine's clock is an hour behind the signing one
	h.mu.Unlock()
	_, errOut, code := h.run("untrust", app)
	if code != 0 || !strings.Contains(errOut, "warning:") || !strings.Contains(errOut, "supersedes") {
		t.Fatalf("untrust behind the clock: exit %d, stderr %q; want success with a warning", code, errOut)
	}
	h.mustRun(1, "verify", app)

	var in inspectOutput
	if err := json.Unmarshal([]byte(h.mustRun(0, "inspect", "-o", "json", app)), &in); err != nil {
		t.Fatal(err)
	}
	if len(in.Statements) != 2 || !in.Statements[1].Timestamp.After(in.Statements[0].Timestamp) {
		t.Fatalf("statements %+v: want the untrust dated after the trust", in.Statements)
	}

	// With the clock in order again, no warning and the clock's time.
	h.mu.Lock()
	h.clock = h.clock.Add(2 * time.Hour)
	h.mu.Unlock()
	if _, errOut, code := h.run("sign", app); code != 0 || errOut != "" {
		t.Fatalf("sign with the clock ahead of the ledger: exit %d, stderr %q", code, errOut)
	}
	h.mustRun(0, "verify", app)
}

// failingWriter fails every write, as a closed pipe or a full disk would.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

// TestVerifyUnprintableVerdictCannotVerify: a verdict that could not be
// written must not exit 1, which a script reads as UNTRUSTED, nor 0.
func TestVerifyUnprintableVerdictCannotVerify(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	app := h.reg.host + "/app:v1"
	h.mustRun(0, "sign", app)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"trusted, text", []string{"verify", app}},
		{"trusted, json", []string{"verify", "-o", "json", app}},
		{"unknown", []string{"verify", h.reg.host + "/multi:v1"}},
		{"unknown signer", []string{"verify", "--signer", "testdata/keys/bob.pub", app}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dockerCli, err := command.NewDockerCli(
				command.WithInputStream(io.NopCloser(strings.NewReader(""))),
				command.WithOutputStream(failingWriter{}),
				command.WithErrorStream(io.Discard),
			)
			if err != nil {
				t.Fatal(err)
			}
			vars := map[string]string{EnvHome: h.home, EnvLedger: h.ledger.URL}
			e := defaultEnv()
			e.lookupEnv = func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
			e.keychain = authn.NewMultiKeychain()
			cmd := newRootCmd("docker-notarize", false, dockerCli, e)
			cmd.SetArgs(tc.args)
			code, msg := Exit(cmd.ExecuteContext(t.Context()))
			if code != ExitCouldNotVerify || !strings.Contains(msg, "no space left") {
				t.Fatalf("exit %d %q, want %d naming the write error", code, msg, ExitCouldNotVerify)
			}
		})
	}
}

// TestVerifyWithoutSigners: verifying with an empty key store is a
// configuration error with a hint (125), not UNKNOWN (2), which would read as
// "nobody signed it"; found before any request, so even with no registry
// and no ledger.
func TestVerifyWithoutSigners(t *testing.T) {
	h := newHarness(t)
	for _, args := range [][]string{
		{"verify", h.reg.host + "/app:v1"},
		{"verify", "--ledger", "http://127.0.0.1:1", "127.0.0.1:1/app@sha256:2181334efa40a79364938fab1719774de580df6e930eee1c1422c41f2642324f"},
	} {
		out, errOut, code := h.run(args...)
		if code != ExitUsage || out != "" || !strings.Contains(errOut, "no accepted signers") || !strings.Contains(errOut, "--signer") || !strings.Contains(errOut, "key import") {
			t.Fatalf("%v with an empty key store: exit %d, stdout %q, stderr %q; want %d and a hint", args, code, out, errOut, ExitUsage)
		}
	}
	out, _, code := h.run("verify", "-o", "json", h.reg.host+"/app:v1")
	var v verifyOutput
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != ExitUsage || v.Status != statusError || v.ExitCode != ExitUsage || !strings.Contains(v.Error, "no accepted signers") {
		t.Fatalf("verify -o json with an empty key store: exit %d, %q (%v)", code, out, err)
	}
	if _, errOut, code := h.run("sign", h.reg.host+"/app:v1"); code != ExitUsage || !strings.Contains(errOut, "key generate") {
		t.Fatalf("sign without keys: exit %d, stderr %q; want %d and a hint", code, errOut, ExitUsage)
	}
}

func TestUsageErrors(t *testing.T) {
	h := newHarness(t, "alice", "bob")
	app := h.reg.host + "/app:v1"
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"no image", []string{"verify"}, ExitUsage},
		{"two images", []string{"sign", "--key", "alice", "a", "b"}, ExitUsage},
		{"unknown flag", []string{"verify", "--nope", app}, ExitUsage},
		{"bad output", []string{"verify", "-o", "yaml", app}, ExitUsage},
		{"bad attr", []string{"sign", "--key", "alice", "--attr", "novalue", app}, ExitUsage},
		{"two keys, none chosen", []string{"sign", app}, ExitUsage},
		{"bad key name", []string{"key", "generate", "--name", "../x"}, ExitUsage},
		{"unknown command", []string{"frobnicate"}, ExitUsage},
		{"verify with a missing signer file", []string{"verify", "--signer", "./missing.pub", app}, ExitUsage},
		{"verify with a typo in --signer", []string{"verify", "--signer", "carol", app}, ExitUsage},
		{"verify with a signer file that is no key", []string{"verify", "--signer", "testdata/keys/alice.key", app}, ExitUsage},
		{"inspect with a typo in --signer", []string{"inspect", "--signer", "carol", app}, ExitUsage},
		{"sign with a typo in --key", []string{"sign", "--key", "carol", app}, ExitUsage},
		{"sign with a missing key file", []string{"sign", "--key", "./missing.key", app}, ExitUsage},
		{"generate without --name", []string{"key", "generate"}, ExitUsage},
		{"bad ledger URL", []string{"verify", "--ledger", "ftp://ledger.example", app}, ExitUsage},
		{"bad ledger key", []string{"verify", "--ledger-key", "not-a-key", app}, ExitUsage},
		{"missing ledger CA file", []string{"sign", "--key", "alice", "--ledger-ca", "./missing.pem", app}, ExitUsage},
		{"missing witness policy", []string{"inspect", "--witness-policy", "./missing.policy", app}, ExitUsage},
		{"ledger flag on a command without a ledger", []string{"key", "list", "--ledger", "http://127.0.0.1:1"}, ExitUsage},
		{"bad --max-age", []string{"verify", "--max-age", "soon", app}, ExitUsage},
		{"verify a missing file cannot verify", []string{"verify", "file:./missing"}, ExitCouldNotVerify},
		{"verify a missing image cannot verify", []string{"verify", h.reg.host + "/nope:v1"}, ExitCouldNotVerify},
		{"generate over an existing key", []string{"key", "generate", "--name", "alice"}, ExitError},
		{"export a missing key", []string{"key", "export", "carol"}, ExitError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := h.run(tc.args...)
			if code != tc.want {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.want, out, errOut)
			}
			if errOut == "" {
				t.Fatal("no message on stderr")
			}
		})
	}
}

// TestLedgerKeyFileOrValue: --ledger-key (and NOTARIZE_LEDGER_KEY) take the
// ledger's verifier key or a file holding it (its ledger.pub), as the
// proxy's ledgerKey does; the key from the file is enforced: a file with
// another ledger's key is refused, exit 4, and nothing is pinned.
func TestLedgerKeyFileOrValue(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	app := h.reg.host + "/app:v1"
	dir := t.TempDir()
	pub := filepath.Join(dir, "ledger.pub")
	if err := os.WriteFile(pub, []byte(h.ledger.VerifierKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := ledgertest.Start(t)
	otherPub := filepath.Join(dir, "other.pub")
	if err := os.WriteFile(otherPub, []byte(other.VerifierKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	if out, errOut, code := h.run("verify", "--ledger-key", otherPub, app); code != ExitCouldNotVerify {
		t.Fatalf("verify with another ledger's key file: exit %d, want %d\n%s\n%s", code, ExitCouldNotVerify, out, errOut)
	}
	if pins := h.mustRun(0, "ledger", "list"); strings.Contains(pins, h.ledger.URL) {
		t.Fatalf("a refused key was pinned:\n%s", pins)
	}
	h.mustRun(2, "verify", "--ledger-key", pub, app)
	h.mustRun(2, "verify", "--ledger-key", h.ledger.VerifierKey, app)
	if out, errOut, code := h.runWithEnv(map[string]string{EnvLedgerKey: pub}, "sign", app); code != 0 {
		t.Fatalf("sign with NOTARIZE_LEDGER_KEY=FILE: exit %d\n%s\n%s", code, out, errOut)
	}
	h.mustRun(0, "inspect", "--ledger-key", pub, app)
}
