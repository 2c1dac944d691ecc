//go:build notarize_verifyonly

// The verify-only build: see doc.go.

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/docker/cli/cli-plugins/metadata"
	"github.com/docker/cli/cli-plugins/socket"
	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/context/store"
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
	defer exitOnPanic()
	name, args := filepath.Base(os.Args[0]), os.Args[1:]
	// The docker CLI runs a plugin with this variable set and with its own
	// command line after the program's name: `notarize verify IMAGE`, or
	// the docker CLI's global flags first, which only the full CLI reads.
	isPlugin := os.Getenv(metadata.ReexecEnvvar) != ""
	if isPlugin {
		if len(args) == 0 || args[0] != plugin.PluginName || contextSetsGoDebug() {
			runFullCLI()
		}
		name, args = plugin.PluginName, args[1:]
	}
	if !plugin.VerifyOnlyRuns(name, isPlugin, args) || plugin.NeedsSystemResolver() {
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

// envExecuted marks the full CLI's environment: a verify-only build that
// finds it set was run by one, so what is installed as the full CLI is a
// copy of this build, which would execute itself forever.
const envExecuted = "NOTARIZE_VERIFYONLY_EXECUTED"

// runFullCLI runs the full CLI in place of this process, with the same
// arguments, environment (plus envExecuted) and standard streams
// (exec_unix.go), or exits 125 when it is missing or refused: nothing has
// run yet.
func runFullCLI() {
	path, err := plugin.FullCLIPath()
	if err == nil && os.Getenv(envExecuted) != "" {
		err = fmt.Errorf("full CLI %s: refused, it is a verify-only build too (it ran this one): install notarize-cli from `make build`", path)
	}
	if err == nil {
		err = os.Setenv(envExecuted, "1")
	}
	if err == nil {
		err = execFullCLI(path)
	}
	fmt.Fprintln(os.Stderr, err)
	os.Exit(plugin.ExitUsage)
}

// contextSetsGoDebug reports whether the docker context a plugin command
// runs in sets GODEBUG, which docker/cli's plugin set-up copies into the
// environment (when GODEBUG is not set) and which can change how TLS,
// certificates and names are handled: such a command is the full CLI's to
// run. The context is found as docker/cli's ResolveContextName finds it
// for a command line without the docker CLI's global flags (the others
// go to the full CLI already): DOCKER_HOST means the default context, then
// DOCKER_CONTEXT, then the config file's currentContext. A context that
// cannot be read is the full CLI's too, which reports it.
func contextSetsGoDebug() bool {
	if os.Getenv("GODEBUG") != "" || os.Getenv("DOCKER_HOST") != "" {
		return false
	}
	name := os.Getenv("DOCKER_CONTEXT")
	if name == "" {
		name = config.LoadDefaultConfigFile(io.Discard).CurrentContext
	}
	if name == "" || name == "default" {
		return false
	}
	meta, err := store.New(config.ContextStoreDir(), store.NewConfig(nil)).GetMetadata(name)
	if err != nil {
		return true
	}
	fields, ok := meta.Metadata.(map[string]any)
	if !ok {
		return meta.Metadata != nil
	}
	_, set := fields["GODEBUG"]
	return set
}
