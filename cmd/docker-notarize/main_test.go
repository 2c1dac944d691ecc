package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/internal/testutil"
	"github.com/notarize/docker-notarize/plugin"
)

// envRole makes the test binary act as the CLI (main) or as a command that
// ignores its context (stuck) instead of running the tests.
const envRole = "DOCKER_NOTARIZE_TEST_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(envRole) {
	case "main":
		main()
		os.Exit(0)
	case "stuck":
		// A step that cannot be cancelled, as a password prompt reading
		// the terminal: only the forced exit ends it.
		_, stop := interruptible(os.Stderr, 500*time.Millisecond)
		defer stop()
		os.Stdout.WriteString("ready\n")
		select {}
	}
	os.Exit(m.Run())
}

// cli starts this test binary in role with args and extra environment. Its
// stdout is read from the returned pipe; its stderr is complete once waited.
func cli(t *testing.T, role string, env []string, args ...string) (*exec.Cmd, *bufio.Reader, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(filepath.Join("..", "..", "plugin", "testdata", "keys", "alice.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "keys", "alice.pub"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), envRole+"="+role, plugin.EnvHome+"="+home, "DOCKER_CONFIG="+t.TempDir())
	cmd.Env = append(cmd.Env, env...)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	var errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = w, &errOut
	err = cmd.Start()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewReader(r), &errOut
}

// waitExit waits for cmd to end, at most a minute, and returns its wait
// status.
func waitExit(t *testing.T, cmd *exec.Cmd) syscall.WaitStatus {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cmd.ProcessState.Sys().(syscall.WaitStatus)
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatal("still running a minute after the interrupt")
	}
	return 0
}

// TestInterruptEndsNetworkCall: Ctrl-C while verify waits for a ledger that
// never answers ends the CLI with "could not verify" (4), standalone and as
// a docker plugin, where docker leaves the terminal's SIGINT to the plugin.
func TestInterruptEndsNetworkCall(t *testing.T) {
	digest := "registry.test/app@sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"standalone", nil, []string{"verify", digest}},
		{"plugin", []string{"DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND=docker"}, []string{"notarize", "verify", digest}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, accepted := testutil.HangingServer(t)
			cmd, _, errOut := cli(t, "main", append(tc.env, plugin.EnvLedger+"="+url), tc.args...)
			select {
			case <-accepted:
			case <-time.After(time.Minute):
				cmd.Process.Kill()
				t.Fatal("the CLI never called the ledger")
			}
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			ws := waitExit(t, cmd)
			if ws.Signaled() || ws.ExitStatus() != plugin.ExitCouldNotVerify {
				t.Fatalf("wait status %v (signaled %v, exit %d), want exit %d; stderr: %s", ws, ws.Signaled(), ws.ExitStatus(), plugin.ExitCouldNotVerify, errOut)
			}
			if !strings.Contains(errOut.String(), "could not verify") {
				t.Fatalf("stderr %q", errOut)
			}
		})
	}
}

// TestInterruptForcesExit: a step that does not end with its context (a
// password prompt) still ends: at a second Ctrl-C, or a short while after
// the first, with exit 130.
func TestInterruptForcesExit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		signals int
	}{
		{"second interrupt", 2},
		{"grace period over", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, out, errOut := cli(t, "stuck", nil)
			if line, err := out.ReadString('\n'); line != "ready\n" {
				cmd.Process.Kill()
				t.Fatalf("not ready: %q, %v", line, err)
			}
			for range tc.signals {
				if err := cmd.Process.Signal(os.Interrupt); err != nil {
					t.Fatal(err)
				}
				time.Sleep(50 * time.Millisecond)
			}
			ws := waitExit(t, cmd)
			if ws.Signaled() || ws.ExitStatus() != plugin.ExitInterrupted || !strings.Contains(errOut.String(), "interrupted") {
				t.Fatalf("wait status %v, stderr %q; want exit %d", ws, errOut, plugin.ExitInterrupted)
			}
		})
	}
}
