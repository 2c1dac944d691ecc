//go:build notarize_verifyonly

package plugin

import (
	"fmt"

	"github.com/spf13/cobra"
)

// codedError is an error carrying its exit code. In the verify-only build
// it is leanStatusError, cli.StatusError's twin: no docker/cli package that
// links distribution/reference.
type codedError = leanStatusError

// flagError is the usage error of a bad flag (exit 125), worded as
// docker/cli's cli.FlagErrorFunc words it. The verify-only front hands any
// command line whose flags do not parse to the full CLI before running
// (cmd/docker-notarize), so this is a fallback.
func flagError(cmd *cobra.Command, err error) error {
	if err == nil {
		return nil
	}
	return codedError{
		Status:     fmt.Sprintf("%s\n\nUsage:  %s\n\nRun '%s --help' for more information", err, cmd.UseLine(), cmd.CommandPath()),
		StatusCode: ExitUsage,
	}
}
