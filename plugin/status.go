package plugin

// leanStatusError is docker/cli's cli.StatusError for the verify-only
// build (tag notarize_verifyonly, status_lean.go), which must not link
// package cli: importing it initialises github.com/distribution/reference's
// regular expressions, the largest part of a run's start-up. The fields and
// methods are cli.StatusError's; TestLeanStatusErrorMatchesDockerCLI holds
// the two equal.
type leanStatusError struct {
	Cause      error
	Status     string
	StatusCode int
}

// Error is the Status if set, else the Cause's message, else "".
func (e leanStatusError) Error() string {
	if e.Status != "" {
		return e.Status
	}
	if e.Cause != nil {
		return e.Cause.Error()
	}
	return ""
}

// Unwrap returns the Cause.
func (e leanStatusError) Unwrap() error { return e.Cause }
