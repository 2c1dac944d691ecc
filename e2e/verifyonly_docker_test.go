package e2e

// The verify-only front's interrupts, and the command lines it leaves to
// the full CLI because of the docker CLI (a review of issue 14's change:
// without these tests, dropping the front's plugin socket, its SIGINT
// handling, its "args start with notarize" check in plugin mode or its
// docker context check passed every test).

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
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

func TestVerifyOnlyFrontDockerCLI(t *testing.T) {
	c, _, _, app := signedForFront(t)
	front := filepath.Join(c.dockerConfig, "cli-plugins", "docker-notarize")

	// A verify waiting on a ledger that never answers ends with exit 4 at
	// an interrupt: sent to the docker CLI alone (which relays it by
	// closing the plugin socket: the front must connect it), and to the
	// front run standalone (its own SIGINT handling).
	t.Run("interrupt", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			bin  string
			args []string
		}{
			{"docker CLI only", "docker", []string{"notarize", "verify", app}},
			{"standalone", front, []string{"verify", app}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				url, accepted := testutil.HangingServer(t)
				cmd := exec.Command(tc.bin, tc.args...)
				for k, v := range c.env {
					cmd.Env = append(cmd.Env, k+"="+v)
				}
				cmd.Env = append(cmd.Env, "NOTARIZE_LEDGER="+url)
				var errOut bytes.Buffer
				cmd.Stderr = &errOut
				// Its own process group, so that a stuck plugin child is
				// killed with it, and Wait does not wait for its stderr.
				cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
				cmd.WaitDelay = time.Second
				kill := func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				select {
				case <-accepted:
				case <-time.After(time.Minute):
					kill()
					t.Fatal("never called the ledger")
				}
				if err := cmd.Process.Signal(os.Interrupt); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case err := <-done:
					var ee *exec.ExitError
					if !errors.As(err, &ee) || ee.ExitCode() != plugin.ExitCouldNotVerify {
						t.Fatalf("%v after SIGINT, want exit %d; stderr %s", err, plugin.ExitCouldNotVerify, errOut.String())
					}
				case <-time.After(15 * time.Second):
					kill()
					<-done
					t.Fatalf("still running 15 s after SIGINT; stderr %s", errOut.String())
				}
			})
		}
	})

	// Every command line the front does not run as the full CLI would,
	// docker's global flags first included, goes to the full CLI unchanged.
	t.Run("docker global flags go to the full CLI", func(t *testing.T) {
		full := filepath.Join(c.dockerConfig, "cli-plugins", plugin.FullCLIName)
		orig, err := os.ReadFile(full)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = os.WriteFile(full, orig, 0o755) })
		marker := filepath.Join(t.TempDir(), "ran")
		fake := "#!/bin/sh\nprintf '%s\\n' \"$@\" >" + marker + "\nexit 99\n"
		if err := os.WriteFile(full, []byte(fake), 0o755); err != nil {
			t.Fatal(err)
		}
		ran := func() string {
			b, _ := os.ReadFile(marker)
			_ = os.Remove(marker)
			return string(b)
		}
		for _, args := range [][]string{
			{"-D", "notarize", "verify", app},
			{"--config", c.dockerConfig, "notarize", "verify", app},
			{"-l", "debug", "notarize", "verify", app},
		} {
			r := c.docker(args...)
			if got, want := ran(), strings.Join(args, "\n")+"\n"; r.code != 99 || got != want {
				t.Errorf("docker %q: exit %d, full CLI ran with %q, want %q", args, r.code, got, want)
			}
		}
		// A docker context that sets GODEBUG, which docker/cli's plugin
		// set-up applies: the full CLI's. One that does not: the front's.
		for name, meta := range map[string]string{"gd": `{"GODEBUG":"x509negativeserial=1"}`, "plain": `{"Description":"no GODEBUG"}`} {
			dir := filepath.Join(c.dockerConfig, "contexts", "meta", fmt.Sprintf("%x", sha256.Sum256([]byte(name))))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			doc := `{"Name":"` + name + `","Metadata":` + meta + `,"Endpoints":{"docker":{"Host":"unix:///nonexistent.sock","SkipTLSVerify":false}}}`
			if err := os.WriteFile(filepath.Join(dir, "meta.json"), []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		// From docker CLI v29 the docker CLI sets the context's GODEBUG
		// itself before it runs a plugin; the front then runs the verify
		// (cmd/docker-notarize TestContextSetsGoDebug holds the check).
		c.env["DOCKER_CONTEXT"] = "gd"
		r := c.docker("notarize", "verify", app)
		got := ran()
		v := c.docker("--version").stdout
		var major int
		_, _ = fmt.Sscanf(v, "Docker version %d.", &major)
		switch {
		case r.code == 99 && got == "notarize\nverify\n"+app+"\n":
		case r.code == 0 && got == "" && major >= 29:
		default:
			t.Errorf("docker notarize verify in a context with GODEBUG (%s): exit %d, full CLI ran with %q", strings.TrimSpace(v), r.code, got)
		}
		c.env["DOCKER_CONTEXT"] = "plain"
		if r := c.docker("notarize", "verify", app); r.code != 0 || ran() != "" {
			t.Errorf("docker notarize verify in a context without GODEBUG: exit %d (want 0, run by the front)\n%s", r.code, r.stderr)
		}
		delete(c.env, "DOCKER_CONTEXT")

		// The docker CLI never runs a plugin so, but the front must not
		// strip an argument that is not its name: plugin mode, `-D verify
		// IMAGE` is the full CLI's (docker/cli's root parses -D).
		r = c.exec("env", "DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND=docker", front, "-D", "verify", app)
		if got := ran(); r.code != 99 || got != "-D\nverify\n"+app+"\n" {
			t.Errorf("plugin mode -D verify IMAGE: exit %d, full CLI ran with %q; stdout %s", r.code, got, r.stdout)
		}
	})
}
