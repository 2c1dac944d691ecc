//go:build !notarize_verifyonly

package plugin

import (
	"github.com/docker/cli/cli/command"
	"github.com/spf13/cobra"
)

// ManCommandTree returns the command tree of docker-notarize as its man
// pages show it (package plugin/manpages renders them): the same tree as
// --help, with the defaults a fresh environment has (no NOTARIZE_*
// variables), so that the pages do not depend on who runs `make man`. The
// renderer is not in this package: its packages' initialisation would run
// in every run of the plugin.
func ManCommandTree() (*cobra.Command, error) {
	dockerCli, err := command.NewDockerCli()
	if err != nil {
		return nil, err
	}
	e := defaultEnv()
	e.lookupEnv = func(string) (string, bool) { return "", false }
	root := newRootCmd("docker-notarize", false, dockerCli, e)
	visitAll(root, func(c *cobra.Command) { c.DisableAutoGenTag = true })
	return root, nil
}
