package plugin

import (
	"github.com/spf13/cobra"
)

// NewVerifyOnlyCmd returns the command tree of the verify-only build of
// docker notarize (cmd/docker-notarize built with the tag
// notarize_verifyonly): the root and its verify command, the same code as
// the full CLI's, without the commands that link the docker CLI's command
// package. name and isPlugin are NewRootCmd's; out is where it prints.
func NewVerifyOnlyCmd(name string, isPlugin bool, out stdio) *cobra.Command {
	opts := &rootOptions{env: defaultEnv()}
	return newRootBase(name, isPlugin, opts, nil, newVerifyCmd(out, opts))
}
