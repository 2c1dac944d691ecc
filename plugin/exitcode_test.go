package plugin

import (
	"context"
	"errors"
	"fmt"
	"github.com/notarize/docker-notarize/notarize"
	"testing"

	"github.com/docker/cli/cli"
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
