//go:build !notarize_verifyonly

// The full CLI: every command, docker/cli's plugin machinery. Built as
// docker-notarize by `go install`, and as notarize-cli, behind the
// verify-only build, by `make build`.

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"

	dockerplugin "github.com/docker/cli/cli-plugins/plugin"
	"github.com/docker/cli/cli/command"
	// Answers `docker-cli-plugin-metadata` (the first of the docker CLI's
	// two runs of the plugin per command) and exits before the packages
	// below are initialised: see its doc.
	_ "github.com/notarize/docker-notarize/cmd/docker-notarize/internal/fastmeta"
	"github.com/notarize/docker-notarize/plugin"
	"github.com/spf13/cobra"
)

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(startGCPercent)
	}
	defer exitOnPanic()
	dockerCli, err := command.NewDockerCli()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(plugin.ExitCouldNotVerify)
	}
	code, msg := plugin.Exit(run(dockerCli))
	if msg != "" {
		fmt.Fprintln(dockerCli.Err(), msg)
	}
	os.Exit(code)
}

// run executes the command tree as a plugin (docker/cli's plugin.RunPlugin,
// as docker/buildx does, so that verdict exit codes reach the shell without
// an extra line on stderr) or standalone, under a context that Ctrl-C ends.
func run(dockerCli *command.DockerCli) error {
	ctx, stop := interruptible(dockerCli.Err(), forceExitAfter)
	defer stop()
	plugin.Version = version
	if dockerplugin.RunningStandalone() {
		return plugin.NewRootCmd(filepath.Base(os.Args[0]), false, dockerCli).ExecuteContext(ctx)
	}
	root := plugin.NewRootCmd(plugin.PluginName, true, dockerCli)
	// docker's plugin root has no context of its own, and cobra hands it to
	// a subcommand only when that has none: set ours on every command.
	visitAll(root, func(c *cobra.Command) { c.SetContext(ctx) })
	return dockerplugin.RunPlugin(dockerCli, root, plugin.Metadata(version))
}

func visitAll(cmd *cobra.Command, fn func(*cobra.Command)) {
	for _, c := range cmd.Commands() {
		visitAll(c, fn)
	}
	fn(cmd)
}
