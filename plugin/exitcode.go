package plugin

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/notarize/docker-notarize/notarize"
)

// Exit codes beyond the verdicts (notarize.Verdict values 0–3 are the exit
// codes of verify).
const (
	// ExitError is the exit code of a command that failed (other than verify).
	ExitError = 1
	// ExitCouldNotVerify is verify's exit code when no verdict could be reached.
	ExitCouldNotVerify = 4
	// ExitUsage is the exit code for bad flags or arguments, as in docker/cli.
	ExitUsage = 125
	// ExitInterrupted is the exit code after an interrupt (128 + SIGINT).
	ExitInterrupted = 130
)

// VerdictExitCode maps a verdict to the exit code of verify (and of audit,
// for its worst verdict): TRUSTED 0, UNTRUSTED 1, UNKNOWN 2, UNSUPPORTED 3,
// and ExitCouldNotVerify for UNVERIFIABLE or anything else. The verdict is
// the core's; the exit code is this command line's contract.
func VerdictExitCode(v notarize.Verdict) int {
	switch v {
	case notarize.Trusted:
		return 0
	case notarize.Untrusted:
		return 1
	case notarize.Unknown:
		return 2
	case notarize.Unsupported:
		return 3
	}
	return ExitCouldNotVerify
}

// withExitCode returns err as a codedError carrying code, the error type
// docker/cli's plugin machinery and this module's main both understand. A nil
// err gives a silent exit with code (a verdict already printed on stdout).
func withExitCode(code int, err error) error {
	return codedError{StatusCode: code, Cause: err}
}

// Exit maps the error a command returned to the process exit code and the
// message to print on stderr ("" for none). nil is success. A codedError
// carries its own code (never 0: an error always fails); an interrupted
// command exits 130; any other error exits 1.
func Exit(err error) (code int, message string) {
	if err == nil {
		return 0, ""
	}
	var st codedError
	if errors.As(err, &st) {
		code = st.StatusCode
		if code == 0 {
			code = ExitError
		}
		return code, printableLines(st.Error())
	}
	if errors.Is(err, context.Canceled) {
		return ExitInterrupted, printableLines(fmt.Sprintf("interrupted: %v", err))
	}
	return ExitError, printableLines(err.Error())
}

// ExitCodeRow is one row of the exit-code table of docker notarize: every
// exit code the CLI uses, what it means and which commands use it.
type ExitCodeRow struct {
	Code int
	// Name is the verdict (in backquotes: the README's cell, which the
	// quickstart's test reads), or the kind of failure.
	Name string
	// Meaning says when it happens.
	Meaning string
}

// ExitCodes is the exit-code table, the one the README prints (a test keeps
// the two the same) and `docker notarize --help` summarizes.
var ExitCodes = []ExitCodeRow{
	{0, "`TRUSTED`", "verify: an accepted signer says trusted and none says otherwise; audit: every subject is TRUSTED; any other command: success"},
	{1, "`UNTRUSTED`", "verify: an accepted signer's current statement is untrusted; audit: a subject is UNTRUSTED; any other command: failed after it started its work (ledger or registry unreachable or refusing, a receipt that did not verify, a wrong key password)"},
	{2, "`UNKNOWN`", "verify: no statement about the digest by any accepted signer; audit: the worst subject is UNKNOWN or has no registry digest"},
	{3, "`UNSUPPORTED`", "verify: an accepted signer's current statement is unsupported (and none untrusted); audit: the worst subject is UNSUPPORTED"},
	{ExitCouldNotVerify, "could not verify", "verify, audit, ls: no verdict could be reached: ledger or registry unreachable, bad proof, bad signature, a ledger that rewrote its history, a witness quorum missing or too old, a verdict that could not be written"},
	{ExitUsage, "usage or configuration error", "found before any network call: an unknown command or flag, a bad flag value (`--output`, `--attr`, `--ledger`, `--ledger-key`, `--ledger-ca`, `--witness-policy`), a missing argument or required flag, a `--signer` or `--key` that names no key or no readable key file, an empty key store (verify, audit, inspect, sign without `--key`)"},
	{ExitInterrupted, "interrupted", "Ctrl-C or SIGTERM stopped the command (verify exits 4 instead: no verdict); 128 + the signal's number when it had to be ended at once"},
}

// ExitCodeTable is ExitCodes as the Markdown table of the README.
func ExitCodeTable() string {
	var b strings.Builder
	b.WriteString("| exit | verdict or failure | when |\n|---|---|---|\n")
	for _, r := range ExitCodes {
		fmt.Fprintf(&b, "| %d | %s | %s |\n", r.Code, r.Name, r.Meaning)
	}
	return b.String()
}
