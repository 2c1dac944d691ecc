package plugin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/cli/cli"
	"github.com/docker/cli/cli/command"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The verify-only build's twin of cli.StatusError prints and unwraps as
// docker/cli's does: its messages and exit codes are the full CLI's.
func TestLeanStatusErrorMatchesDockerCLI(t *testing.T) {
	cause := errors.New("ledger down")
	for _, tc := range []struct {
		status string
		cause  error
		code   int
	}{
		{"", nil, 0}, {"", nil, 2}, {"bad flag", nil, 125}, {"", cause, 4}, {"status wins", cause, 1},
	} {
		lean := leanStatusError{Status: tc.status, Cause: tc.cause, StatusCode: tc.code}
		docker := cli.StatusError{Status: tc.status, Cause: tc.cause, StatusCode: tc.code}
		if lean.Error() != docker.Error() || !errors.Is(lean.Unwrap(), docker.Unwrap()) {
			t.Errorf("%+v: lean %q / %v, docker/cli %q / %v", tc, lean.Error(), lean.Unwrap(), docker.Error(), docker.Unwrap())
		}
	}
}

// The verify-only build runs only what it runs exactly as the full CLI
// would; every other command line goes to the full CLI, which words its
// errors and help.
func TestVerifyOnlyRuns(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"verify", "reg.example/app:1"}, true},
		{[]string{"verify", "-o", "json", "reg.example/app:1"}, true},
		{[]string{"verify", "--signer", "a", "--signer", "./b.pub", "--revoker", "c", "reg.example/app:1"}, true},
		{[]string{"--ledger", "https://ledger.example", "verify", "file:app.tar"}, true},
		{[]string{"verify", "--max-age", "1h", "--max-index-lag=0", "--witness-policy", "w.txt", "reg.example/app@sha256:" + strings.Repeat("0", 64)}, true},
		{[]string{"verify", "--", "reg.example/app:1"}, true},
		// Usage errors, help, completion, version and the other commands.
		{nil, false},
		{[]string{"verify"}, false},
		{[]string{"verify", "a", "b"}, false},
		{[]string{"verify", "--bogus", "reg.example/app:1"}, false},
		{[]string{"verify", "--max-age", "soon", "reg.example/app:1"}, false},
		{[]string{"verify", "--signer"}, false},
		{[]string{"verify", "--help"}, false},
		{[]string{"verify", "-h", "reg.example/app:1"}, false},
		{[]string{"--help"}, false},
		{[]string{"--version"}, false},
		{[]string{"--bogus", "verify", "reg.example/app:1"}, false},
		{[]string{"help", "verify"}, false},
		{[]string{"__complete", "verify", ""}, false},
		{[]string{"completion", "bash"}, false},
		{[]string{"sign", "reg.example/app:1"}, false},
		{[]string{"untrust", "reg.example/app:1"}, false},
		{[]string{"key", "list"}, false},
		{[]string{"ledger", "info"}, false},
		{[]string{"reg.example/app:1", "verify"}, false},
		{[]string{"verifyx", "reg.example/app:1"}, false},
	} {
		for _, isPlugin := range []bool{false, true} {
			name := "docker-notarize"
			if isPlugin {
				name = PluginName
			}
			if got := VerifyOnlyRuns(name, isPlugin, tc.args); got != tc.want {
				t.Errorf("VerifyOnlyRuns(%q, plugin %v) = %v, want %v", tc.args, isPlugin, got, tc.want)
			}
		}
	}
}

// The verify-only tree is the full tree's root and verify command: the same
// flags (names, types, defaults, help), the same help text. A flag added
// to one and not the other would be parsed differently by the two builds.
func TestVerifyOnlyTreeIsTheFullTrees(t *testing.T) {
	dockerCli, err := command.NewDockerCli()
	if err != nil {
		t.Fatal(err)
	}
	for _, isPlugin := range []bool{false, true} {
		name := "docker-notarize"
		if isPlugin {
			name = PluginName
		}
		full := NewRootCmd(name, isPlugin, dockerCli)
		lean := NewVerifyOnlyCmd(name, isPlugin, dockerCli)
		fullVerify, _, err := full.Find([]string{"verify"})
		if err != nil {
			t.Fatal(err)
		}
		leanVerify, _, err := lean.Find([]string{"verify"})
		if err != nil || leanVerify == lean {
			t.Fatalf("verify-only tree has no verify: %v", err)
		}
		if got := commandNames(lean); got != "verify" {
			t.Errorf("verify-only tree's commands: %s", got)
		}
		for _, pair := range []struct {
			what       string
			full, lean *cobra.Command
		}{{"root", full, lean}, {"verify", fullVerify, leanVerify}} {
			if pair.full.Use != pair.lean.Use || pair.full.Short != pair.lean.Short || pair.full.Long != pair.lean.Long || pair.full.Example != pair.lean.Example {
				t.Errorf("plugin %v: %s: help differs", isPlugin, pair.what)
			}
			if f, l := flagSummary(pair.full.Flags()), flagSummary(pair.lean.Flags()); f != l {
				t.Errorf("plugin %v: %s: flags differ\nfull:\n%s\nverify-only:\n%s", isPlugin, pair.what, f, l)
			}
			if f, l := flagSummary(pair.full.PersistentFlags()), flagSummary(pair.lean.PersistentFlags()); f != l {
				t.Errorf("plugin %v: %s: persistent flags differ\nfull:\n%s\nverify-only:\n%s", isPlugin, pair.what, f, l)
			}
		}
	}
}

func commandNames(c *cobra.Command) string {
	var names []string
	for _, sub := range c.Commands() {
		names = append(names, sub.Name())
	}
	return strings.Join(names, " ")
}

func flagSummary(fs *pflag.FlagSet) string {
	var b strings.Builder
	fs.VisitAll(func(f *pflag.Flag) {
		fmt.Fprintf(&b, "--%s -%s %s default=%q hidden=%v %q\n", f.Name, f.Shorthand, f.Value.Type(), f.DefValue, f.Hidden, f.Usage)
	})
	return b.String()
}

// The full CLI is found next to the verify-only build, symlinks resolved,
// and refused when missing or replaceable by another user: whoever replaces
// it reads the key passwords of every command but verify.
func TestFullCLINextTo(t *testing.T) {
	install := func(t *testing.T, dir string, mode os.FileMode) string {
		t.Helper()
		front := filepath.Join(dir, "docker-notarize")
		if err := os.WriteFile(front, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if mode != 0 {
			p := filepath.Join(dir, FullCLIName)
			if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, mode); err != nil {
				t.Fatal(err)
			}
		}
		return front
	}
	fullNextTo := func(exe string) (string, error) {
		return executableNextTo(exe, FullCLIName, "full CLI", ErrFullCLIMissing)
	}
	t.Run("found", func(t *testing.T) {
		dir := t.TempDir()
		got, err := fullNextTo(install(t, dir, 0o755))
		if want := filepath.Join(dir, FullCLIName); err != nil || got != want {
			t.Fatalf("= %q, %v; want %s", got, err, want)
		}
	})
	t.Run("missing", func(t *testing.T) {
		_, err := fullNextTo(install(t, t.TempDir(), 0))
		if !errors.Is(err, ErrFullCLIMissing) || !strings.Contains(err.Error(), "make install") {
			t.Fatalf("err = %v, want ErrFullCLIMissing naming make install", err)
		}
	})
	t.Run("world-writable", func(t *testing.T) {
		_, err := fullNextTo(install(t, t.TempDir(), 0o777))
		if err == nil || !strings.Contains(err.Error(), "full CLI") || !strings.Contains(err.Error(), "anyone may write it") {
			t.Fatalf("err = %v, want a refusal naming the full CLI", err)
		}
	})
	t.Run("symlinked front", func(t *testing.T) {
		real, links := t.TempDir(), t.TempDir()
		front := install(t, real, 0o755)
		link := filepath.Join(links, "docker-notarize")
		if err := os.Symlink(front, link); err != nil {
			t.Fatal(err)
		}
		got, err := fullNextTo(link)
		if want := filepath.Join(real, FullCLIName); err != nil || got != want {
			t.Fatalf("= %q, %v; want the target's directory %s", got, err, want)
		}
	})
}
