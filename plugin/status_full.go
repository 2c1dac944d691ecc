//go:build !notarize_verifyonly

package plugin

import (
	"github.com/docker/cli/cli"
	"github.com/spf13/cobra"
)

// codedError is an error carrying its exit code: docker/cli's
// cli.StatusError, which the docker CLI's own plugin and flag errors are.
// The verify-only build has its own (status_lean.go).
type codedError = cli.StatusError

// flagError is the usage error of a bad flag (exit 125), as docker's.
func flagError(cmd *cobra.Command, err error) error { return cli.FlagErrorFunc(cmd, err) }
