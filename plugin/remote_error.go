package plugin

// remoteError is an error whose text comes, in part, from a server (a
// registry's error message): its Error is printable and on one line, so
// that a registry cannot put a forged verdict ("TRUSTED sha256:…") on a line
// of its own in the output of a command that failed. It unwraps to the
// error it carries, for errors.Is and errors.As.
type remoteError struct{ err error }

// Error returns the carried error's text with line breaks, control and
// invisible formatting characters replaced.
func (e remoteError) Error() string { return printable(e.err.Error()) }

// Unwrap returns the carried error.
func (e remoteError) Unwrap() error { return e.err }
