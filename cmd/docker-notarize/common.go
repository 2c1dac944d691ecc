package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/notarize/docker-notarize/plugin"
)

// startGCPercent is the plugin's garbage collection target unless GOGC
// is set: a run lives for tens of milliseconds and allocates a few
// megabytes, and with Go's default (100) collecting what the exit frees
// anyway was 10-25 % of a verify's CPU (perf stat, same run).
const startGCPercent = 400

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitOnPanic, deferred by main, makes whatever goes wrong before a
// verdict exit 4 ("could not verify"), never a code a script would read as
// a verdict (Go's panic exits 2, which is UNKNOWN).
func exitOnPanic() {
	if r := recover(); r != nil {
		fmt.Fprintf(os.Stderr, "internal error: %v\n%s", r, debug.Stack())
		os.Exit(plugin.ExitCouldNotVerify)
	}
}

// forceExitAfter is how long the command may take to end after the first
// Ctrl-C before the process exits anyway.
const forceExitAfter = 3 * time.Second

// interruptible returns a context that the first SIGINT or SIGTERM cancels:
// every registry and ledger call and the hash of a file:PATH end with it, and
// the command ends with its usual error (exit 4 for verify). A second signal,
// or the command still running grace after the first (a step that cannot be
// cancelled, such as a password prompt), ends the process at once with exit
// 128+signal after restoring the terminal: Ctrl-C always ends the CLI, in a
// terminal (where docker leaves the signal to the plugin) and when docker
// relays it by closing the plugin socket (the context RunPlugin derives).
// stop releases the signals.
func interruptible(stderr io.Writer, grace time.Duration) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	restore := saveTerminal()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		var first os.Signal
		select {
		case first = <-sigs:
		case <-done:
			return
		}
		cancel()
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-sigs:
		case <-timer.C:
		case <-done:
			return
		}
		restore()
		fmt.Fprintln(stderr, "interrupted")
		code := 130
		if s, ok := first.(syscall.Signal); ok {
			code = 128 + int(s)
		}
		os.Exit(code)
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(sigs)
			close(done)
			cancel()
		})
	}
}

// saveTerminal returns a function that puts stdin's terminal back in the
// state it is in now (echo on after an interrupted password prompt); a no-op
// when stdin is no terminal.
func saveTerminal() func() {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return func() {}
	}
	st, err := term.GetState(fd)
	if err != nil {
		return func() {}
	}
	return func() { _ = term.Restore(fd, st) }
}
