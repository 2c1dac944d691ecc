//go:build notarize_verifyonly

// The verify-only build: see doc.go.

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/docker/cli/cli-plugins/metadata"
	"github.com/docker/cli/cli-plugins/socket"
	"github.com/docker/cli/cli/streams"

	// Answers `docker-cli-plugin-metadata` from its package initialisation,
	// as in the full CLI.
	_ "github.com/notarize/docker-notarize/cmd/docker-notarize/internal/fastmeta"
	"github.com/notarize/docker-notarize/plugin"
)

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(startGCPercent)
	}
	// As in the full CLI: whatever goes wrong before a verdict exits 4.
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "internal error: %v\n%s", r, debug.Stack())
			os.Exit(plugin.ExitCouldNotVerify)
		}
	}()
	name, args := filepath.Base(os.Args[0]), os.Args[1:]
	// The docker CLI runs a plugin with this variable set and with its own
	// command line after the program's name: `notarize verify IMAGE`, or
	// the docker CLI's global flags first, which only the full CLI reads.
	isPlugin := os.Getenv(metadata.ReexecEnvvar) != ""
	if isPlugin {
		if len(args) == 0 || args[0] != plugin.PluginName {
			runFullCLI()
		}
		name, args = plugin.PluginName, args[1:]
	}
	if !plugin.VerifyOnlyRuns(name, isPlugin, args) {
		runFullCLI()
	}
	plugin.Version = version
	ctx, stop := interruptible(os.Stderr, forceExitAfter)
	defer stop()
	if isPlugin {
		// As docker/cli's plugin hook does: the docker CLI closes the plugin
		// socket to end the command (its Ctrl-C), which cancels ctx.
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		socket.ConnectAndWait(cancel)
	}
	root := plugin.NewVerifyOnlyCmd(name, isPlugin, stdio{})
	root.SetArgs(args)
	code, msg := plugin.Exit(root.ExecuteContext(ctx))
	if msg != "" {
		fmt.Fprintln(os.Stderr, msg)
	}
	stop()
	os.Exit(code)
}

// stdio is the process's standard streams, as docker/cli's command.Cli
// gives them to a command.
type stdio struct{}

func (stdio) In() *streams.In   { return streams.NewIn(os.Stdin) }
func (stdio) Out() *streams.Out { return streams.NewOut(os.Stdout) }
func (stdio) Err() *streams.Out { return streams.NewOut(os.Stderr) }

// runFullCLI runs the full CLI in place of this process, with the same
// arguments, environment and standard streams (exec.go), or exits 125 when
// it is missing or refused: nothing has run yet.
func runFullCLI() {
	path, err := plugin.FullCLIPath()
	if err == nil {
		err = execFullCLI(path)
	}
	fmt.Fprintln(os.Stderr, err)
	os.Exit(plugin.ExitUsage)
}
