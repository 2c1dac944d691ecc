//go:build !notarize_verifyonly

package plugin

import (
	"github.com/docker/cli/cli-plugins/metadata"
	dockerplugin "github.com/docker/cli/cli-plugins/plugin"
	"github.com/docker/cli/cli/command"
	"github.com/spf13/cobra"
)

// Metadata is the plugin metadata docker reads from the binary.
func Metadata(version string) metadata.Metadata {
	return metadata.Metadata{
		SchemaVersion:    "0.1.0",
		Vendor:           "docker notarize",
		Version:          version,
		ShortDescription: "Sign and verify image digests against a tamper-evident ledger",
		URL:              "https://github.com/notarize/docker-notarize",
	}
}

// NewRootCmd returns the command tree of docker notarize. name is the command
// name: PluginName when run by docker (isPlugin), else the executable's base
// name.
func NewRootCmd(name string, isPlugin bool, dockerCli command.Cli) *cobra.Command {
	return newRootCmd(name, isPlugin, dockerCli, defaultEnv())
}

func newRootCmd(name string, isPlugin bool, dockerCli command.Cli, e env) *cobra.Command {
	opts := &rootOptions{env: e}
	var pluginPreRun func(*cobra.Command, []string) error
	if isPlugin {
		// RunPlugin sets dockerplugin.PersistentPreRunE after the tree is
		// built: read it when the hook runs.
		pluginPreRun = func(cmd *cobra.Command, args []string) error {
			return dockerplugin.PersistentPreRunE(cmd, args)
		}
	}
	return newRootBase(name, isPlugin, opts, pluginPreRun,
		newKeyCmd(dockerCli, opts),
		newSignCmd(dockerCli, opts, signTrusted),
		newSignCmd(dockerCli, opts, signUntrusted),
		newSignCmd(dockerCli, opts, signUnsupported),
		newVerifyCmd(dockerCli, opts),
		newAuditCmd(dockerCli, opts),
		newLsCmd(dockerCli, opts),
		newInspectCmd(dockerCli, opts),
		newLedgerCmd(dockerCli, opts),
		newVersionCmd(dockerCli),
	)
}
