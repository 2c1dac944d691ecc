package plugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/docker/cli/cli"

	"github.com/notarize/docker-notarize/notarize"
)

func TestExit(t *testing.T) {
	for _, tc := range []struct {
		name     string
		err      error
		wantCode int
		wantMsg  string
	}{
		{name: "success", err: nil, wantCode: 0, wantMsg: ""},
		{name: "verdict", err: withExitCode(2, nil), wantCode: 2, wantMsg: ""},
		{name: "could not verify", err: withExitCode(ExitCouldNotVerify, errors.New("ledger down")), wantCode: 4, wantMsg: "ledger down"},
		{name: "wrapped status", err: fmt.Errorf("run: %w", withExitCode(3, nil)), wantCode: 3, wantMsg: ""},
		{name: "zero status is a failure", err: cli.StatusError{Status: "odd"}, wantCode: 1, wantMsg: "odd"},
		{name: "usage", err: cli.StatusError{StatusCode: 125, Status: "bad flag"}, wantCode: 125, wantMsg: "bad flag"},
		{name: "plain error", err: errors.New("boom"), wantCode: 1, wantMsg: "boom"},
		{name: "interrupted", err: context.Canceled, wantCode: 130, wantMsg: "interrupted: context canceled"},
		{name: "escape sequences neutralized", err: errors.New("ledger says \x1b[2Jhi\nline2"), wantCode: 1, wantMsg: "ledger says ?[2Jhi\nline2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, msg := Exit(tc.err)
			if code != tc.wantCode || msg != tc.wantMsg {
				t.Fatalf("Exit(%v) = %d, %q; want %d, %q", tc.err, code, msg, tc.wantCode, tc.wantMsg)
			}
		})
	}
}

// TestVerdictExitCode pins the exit codes of the README's table: the
// core's verdicts are not exit codes, the plugin maps them.
func TestVerdictExitCode(t *testing.T) {
	for v, want := range map[notarize.Verdict]int{
		notarize.Trusted: 0, notarize.Untrusted: 1, notarize.Unknown: 2, notarize.Unsupported: 3,
		notarize.Unverifiable: 4, notarize.Verdict(99): 4,
	} {
		if got := VerdictExitCode(v); got != want {
			t.Errorf("VerdictExitCode(%v) = %d, want %d", v, got, want)
		}
	}
}

// TestExitCodeTable runs, for every row of the exit-code table, real
// commands that must exit with its code (against a real ledger and
// registry), and fails when a row has no command or a command's code is not
// in the table.
func TestExitCodeTable(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	app, multi := h.reg.host+"/app:v1", h.reg.host+"/multi:v1"
	other := filepath.Join(t.TempDir(), "other.tar")
	if err := os.WriteFile(other, []byte("an artifact that is no longer supported"), 0o600); err != nil {
		t.Fatal(err)
	}
	other = "file:" + other
	down := closedLedgerURL(t)
	h.mustRun(0, "sign", app)
	h.mustRun(0, "unsupport", other)
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()

	type row struct {
		name string
		ctx  context.Context
		env  map[string]string
		args []string
	}
	rows := map[int][]row{
		0: {
			{name: "verify TRUSTED", args: []string{"verify", app}},
			{name: "sign", args: []string{"sign", "--attr", "a=b", app}},
			{name: "key list", args: []string{"key", "list"}},
			{name: "audit of a repository, all TRUSTED", args: []string{"audit", "--tags", "v1", h.reg.host + "/app"}},
		},
		1: {
			{name: "sign with the ledger down", args: []string{"sign", "--ledger", down, app}},
			{name: "inspect with the ledger down", args: []string{"inspect", "--ledger", down, app}},
			{name: "key generate over an existing key", args: []string{"key", "generate", "--name", "alice"}},
		},
		2: {{name: "verify UNKNOWN", args: []string{"verify", multi}}},
		3: {{name: "verify UNSUPPORTED", args: []string{"verify", other}}},
		ExitCouldNotVerify: {
			{name: "verify with the ledger down", args: []string{"verify", "--ledger", down, app}},
			{name: "verify a missing image", args: []string{"verify", h.reg.host + "/nope:v1"}},
			{name: "verify interrupted: no verdict", ctx: cancelled, args: []string{"verify", app}},
		},
		ExitUsage: {
			{name: "unknown command", args: []string{"frobnicate"}},
			{name: "unknown flag", args: []string{"verify", "--nope", app}},
			{name: "missing argument", args: []string{"verify"}},
			{name: "missing required flag", args: []string{"key", "generate"}},
			{name: "typo in --signer", args: []string{"verify", "--signer", "alcie", "--ledger", down, app}},
			{name: "typo in --key", args: []string{"sign", "--key", "alcie", "--ledger", down, app}},
			{name: "bad --output", args: []string{"inspect", "-o", "yaml", app}},
			{name: "bad --ledger", args: []string{"sign", "--ledger", "ledger.example:7070", app}},
			{name: "bad --ledger-key", args: []string{"verify", "--ledger-key", "./missing.pub", app}},
			{name: "missing --signer file", args: []string{"verify", "--signer", "alice", "--signer", "./missing.pub", app}},
			{name: "verify with an empty key store", env: map[string]string{EnvHome: t.TempDir()}, args: []string{"verify", app}},
			{name: "audit with an empty key store", env: map[string]string{EnvHome: t.TempDir()}, args: []string{"audit", "--tags", "v1", h.reg.host + "/app"}},
			{name: "inspect with an empty key store", env: map[string]string{EnvHome: t.TempDir()}, args: []string{"inspect", app}},
		},
		ExitInterrupted: {{name: "sign interrupted", ctx: cancelled, args: []string{"sign", app}}},
	}
	for _, r := range ExitCodes {
		if len(rows[r.Code]) == 0 {
			t.Errorf("exit code %d (%s) is in the table but no command here exits with it", r.Code, r.Name)
		}
	}
	for code, cmds := range rows {
		if !slices.ContainsFunc(ExitCodes, func(r ExitCodeRow) bool { return r.Code == code }) {
			t.Errorf("commands exit %d, which the exit-code table does not list", code)
		}
		for _, r := range cmds {
			t.Run(fmt.Sprintf("%d %s", code, r.name), func(t *testing.T) {
				ctx := r.ctx
				if ctx == nil {
					ctx = t.Context()
				}
				out, errOut, got := h.runContext(ctx, r.env, r.args...)
				if got != code {
					t.Fatalf("%v: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.args, got, code, out, errOut)
				}
				if code != 0 && code != 2 && code != 3 && errOut == "" && out == "" {
					t.Fatalf("%v: exit %d with no message", r.args, got)
				}
			})
		}
	}
}

// TestUsageErrorsBeforeNetwork: usage and configuration errors are found
// before any request, so they exit 125 even with a registry and a ledger
// that would refuse every request (and must not be asked).
func TestUsageErrorsBeforeNetwork(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	var asked atomic.Int32
	trap := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		asked.Add(1)
		http.Error(w, "nobody should ask", http.StatusTeapot)
	}))
	t.Cleanup(trap.Close)
	img := strings.TrimPrefix(trap.URL, "http://") + "/app:v1"
	for _, args := range [][]string{
		{"verify", "--ledger", trap.URL, "--signer", "alcie", img},
		{"inspect", "--ledger", trap.URL, "--signer", "./missing.pub", img},
		{"sign", "--ledger", trap.URL, "--key", "alcie", img},
		{"sign", "--ledger", trap.URL, "--ledger-key", "bogus", img},
		{"verify", "--ledger", trap.URL, "--ledger-ca", "./missing.pem", img},
		{"verify", "--ledger", trap.URL, "--witness-policy", "./missing.policy", img},
		{"untrust", "--ledger", "ftp://" + strings.TrimPrefix(trap.URL, "http://"), img},
	} {
		if _, errOut, code := h.run(args...); code != ExitUsage {
			t.Errorf("%v: exit %d, want %d; stderr %q", args, code, ExitUsage, errOut)
		}
	}
	if n := asked.Load(); n != 0 {
		t.Fatalf("%d requests before a usage error was reported", n)
	}
}

// TestREADMEExitCodes: the README's exit-code table is the code's.
func TestREADMEExitCodes(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), ExitCodeTable()) {
		t.Fatalf("README.md's exit-code table differs from plugin.ExitCodes; it must read:\n\n%s", ExitCodeTable())
	}
}

// closedLedgerURL is the URL of a loopback port nobody listens on.
func closedLedgerURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}
