package plugin

import (
	"context"
	"errors"
	"fmt"

	"github.com/docker/cli/cli"
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

// withExitCode returns err as a cli.StatusError carrying code, the error type
// docker/cli's plugin machinery and this module's main both understand. A nil
// err gives a silent exit with code (a verdict already printed on stdout).
func withExitCode(code int, err error) error {
	return cli.StatusError{StatusCode: code, Cause: err}
}

// Exit maps the error a command returned to the process exit code and the
// message to print on stderr ("" for none). nil is success. A cli.StatusError
// carries its own code (never 0: an error always fails); an interrupted
// command exits 130; any other error exits 1.
func Exit(err error) (code int, message string) {
	if err == nil {
		return 0, ""
	}
	var st cli.StatusError
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
