package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/plugin"
)

// TestVerifyOnlyFront drives the installed pair (`make install`): the
// verify-only docker-notarize runs verify itself and hands every other
// command line, usage errors included, to the full CLI next to it, in
// place, with its arguments and environment; a missing or replaceable full
// CLI is refused before anything runs.
func TestVerifyOnlyFront(t *testing.T) {
	c, led, reg, app := signedForFront(t)

	// The real full CLI keeps the front's name (its argv[0]) in what it prints.
	if h := c.standalone(0, "--help").stdout; !strings.Contains(h, "docker-notarize [command]") || strings.Contains(h, plugin.FullCLIName) {
		t.Fatalf("docker-notarize --help, run by the full CLI:\n%s", h)
	}

	full := filepath.Join(c.dockerConfig, "cli-plugins", plugin.FullCLIName)
	// A full CLI that only says it ran, with what, and exits 99.
	marker := filepath.Join(t.TempDir(), "ran")
	fake := "#!/bin/sh\nprintf '%s\\n' \"$@\" \"plugin=$DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND\" >" + marker + "\nexit 99\n"
	if err := os.WriteFile(full, []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	ran := func(t *testing.T) string {
		t.Helper()
		b, err := os.ReadFile(marker)
		if os.IsNotExist(err) {
			return ""
		}
		if err != nil {
			t.Fatal(err)
		}
		_ = os.Remove(marker)
		return string(b)
	}

	t.Run("verify runs in the front", func(t *testing.T) {
		if plugin.NeedsSystemResolver() {
			t.Skip("this machine's resolver configuration sends every verify to the full CLI (plugin.NeedsSystemResolver)")
		}
		if r := c.notarize(0, "verify", app); !strings.HasPrefix(r.stdout, "TRUSTED ") {
			t.Fatalf("verify: %s", r.stdout)
		}
		c.notarize(0, "verify", "-o", "json", "--signer", "alice", app)
		c.standalone(0, "verify", app)
		c.notarize(2, "verify", reg.host+"/other:v1") // UNKNOWN
		if got := ran(t); got != "" {
			t.Fatalf("verify ran the full CLI:\n%s", got)
		}
	})
	t.Run("everything else runs the full CLI in place", func(t *testing.T) {
		for _, args := range [][]string{
			{"key", "list"},
			{"sign", app},
			{"verify"},                 // a usage error: the full CLI words it
			{"verify", "--bogus", app}, // likewise
			{"verify", "--help"},       // its help
			{"--ledger", led.URL, "ls", app},
		} {
			r := c.notarize(99, args...)
			got := ran(t)
			want := "notarize\n" + strings.Join(args, "\n") + "\nplugin=docker\n"
			if got != want {
				t.Errorf("docker notarize %q ran the full CLI with\n%s\nwant\n%s\n(stderr %s)", args, got, want, r.stderr)
			}
		}
		// A verify the front cannot resolve names for as the full CLI
		// would (plugin.NeedsSystemResolver).
		c.env["GODEBUG"] = "netdns=cgo"
		c.notarize(99, "verify", app)
		if got := ran(t); got != "notarize\nverify\n"+app+"\nplugin=docker\n" {
			t.Errorf("verify with GODEBUG=netdns=cgo ran the full CLI with\n%s", got)
		}
		delete(c.env, "GODEBUG")
		c.standalone(99, "key", "list")
		if got := ran(t); got != "key\nlist\nplugin=\n" {
			t.Errorf("docker-notarize key list ran the full CLI with\n%s", got)
		}
	})
	t.Run("a replaceable full CLI is refused", func(t *testing.T) {
		if err := os.Chmod(full, 0o777); err != nil {
			t.Fatal(err)
		}
		r := c.notarize(125, "key", "list")
		if got := ran(t); got != "" || !strings.Contains(r.stderr, "anyone may write it") {
			t.Fatalf("world-writable full CLI: ran %q, stderr %s", got, r.stderr)
		}
		if err := os.Chmod(full, 0o755); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a missing full CLI is named", func(t *testing.T) {
		if err := os.Remove(full); err != nil {
			t.Fatal(err)
		}
		r := c.notarize(125, "key", "list")
		if !strings.Contains(r.stderr, plugin.FullCLIName) || !strings.Contains(r.stderr, "make install") {
			t.Fatalf("missing full CLI: stderr %s", r.stderr)
		}
		c.notarize(0, "verify", app) // verify needs only the front
	})
}

// signedForFront is the verify-only front's tests' set-up: a ledger, a
// registry, the installed pair, a key and a signed image (app). It skips
// the test without the docker CLI.
func signedForFront(t *testing.T) (c *cli, led *ledgertest.Server, reg *registryFixture, app string) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("the docker CLI is not installed; the CI installs it (.ci/run)")
	}
	led = ledgertest.Start(t)
	reg = startRegistry(t)
	c = newCLI(t, led.URL)
	app = reg.host + "/app:v1"
	c.notarize(0, "key", "generate", "--name", "alice")
	c.notarize(0, "sign", app)
	return c, led, reg, app
}
