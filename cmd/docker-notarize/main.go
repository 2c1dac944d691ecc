// Command docker-notarize is the docker notarize CLI plugin: installed in
// ~/.docker/cli-plugins it runs as `docker notarize ...`; it also runs
// standalone as `docker-notarize ...`. All behaviour lives in package plugin.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	dockerplugin "github.com/docker/cli/cli-plugins/plugin"
	"github.com/docker/cli/cli/command"
	"github.com/notarize/docker-notarize/plugin"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// Whatever goes wrong before a verdict exits 4 ("could not verify"),
	// never a code a script would read as a verdict (Go's panic exits 2,
	// which is UNKNOWN).
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "internal error: %v\n%s", r, debug.Stack())
			os.Exit(plugin.ExitCouldNotVerify)
		}
	}()
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
// an extra line on stderr) or standalone.
func run(dockerCli *command.DockerCli) error {
	if dockerplugin.RunningStandalone() {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return plugin.NewRootCmd(filepath.Base(os.Args[0]), false, dockerCli).ExecuteContext(ctx)
	}
	return dockerplugin.RunPlugin(dockerCli, plugin.NewRootCmd(plugin.PluginName, true, dockerCli), plugin.Metadata(version))
}
