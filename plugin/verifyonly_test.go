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
		// Flags after the image: pflag parses interspersed arguments, so
		// these fail to parse with the image already read (review).
		{[]string{"verify", "reg.example/app:1", "--help"}, false},
		{[]string{"verify", "reg.example/app:1", "-h"}, false},
		{[]string{"verify", "reg.example/app:1", "--bogus"}, false},
		{[]string{"verify", "reg.example/app:1", "--max-age", "soon"}, false},
		{[]string{"verify", "reg.example/app:1", "--signer"}, false},
		{[]string{"verify", "reg.example/app:1", "-o"}, false},
		{[]string{"verify", "reg.example/app:1", "--version"}, false},
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
		front, full := installPair(t, dir, 0o755)
		if mode == 0 {
			if err := os.Remove(full); err != nil {
				t.Fatal(err)
			}
		} else if err := os.Chmod(full, mode); err != nil {
			t.Fatal(err)
		}
		return front
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

// FullCLIPath never takes notarize-cli from PATH (as TestKMSHelperLocation
// checks for the KMS helper): the test binary has no full CLI next to it.
func TestFullCLIPathNeverFromPATH(t *testing.T) {
	onPath := t.TempDir()
	if err := os.WriteFile(filepath.Join(onPath, FullCLIName), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", onPath+string(os.PathListSeparator)+os.Getenv("PATH"))
	p, err := FullCLIPath()
	if !errors.Is(err, ErrFullCLIMissing) {
		t.Fatalf("FullCLIPath() = %q, %v; want ErrFullCLIMissing (never from PATH)", p, err)
	}
}

// installPair writes a front and a full CLI of mode into dir.
func installPair(t *testing.T, dir string, mode os.FileMode) (front, full string) {
	t.Helper()
	front, full = filepath.Join(dir, "docker-notarize"), filepath.Join(dir, FullCLIName)
	for _, p := range []string{front, full} {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(full, mode); err != nil {
		t.Fatal(err)
	}
	return front, full
}

func fullNextTo(exe string) (string, error) { return fullCLINextTo(exe) }

// checkHelperTrust's walk up the directories, and its check of a symlink's
// target (a review found no test of either: disabling checkHelperTrust
// passed every test of both helpers).
func TestHelperTrustAncestorsAndTarget(t *testing.T) {
	t.Run("world-writable ancestor", func(t *testing.T) {
		ww := t.TempDir()
		if err := os.Chmod(ww, 0o777); err != nil {
			t.Fatal(err)
		}
		sub := filepath.Join(ww, "sub")
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		front, _ := installPair(t, sub, 0o755)
		if _, err := fullNextTo(front); err == nil || !strings.Contains(err.Error(), "world-writable") {
			t.Fatalf("full CLI under a world-writable ancestor: %v, want a refusal", err)
		}
	})
	t.Run("symlink into a world-writable directory", func(t *testing.T) {
		dir, ww := t.TempDir(), t.TempDir()
		if err := os.Chmod(ww, 0o777); err != nil {
			t.Fatal(err)
		}
		front, full := installPair(t, dir, 0o755)
		target := filepath.Join(ww, "cli")
		if err := os.Rename(full, target); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
		if _, err := fullNextTo(front); err == nil || !strings.Contains(err.Error(), "world-writable") {
			t.Fatalf("full CLI symlinked into a world-writable directory: %v, want a refusal", err)
		}
	})
}

// The owner checks need a file of another user: root can make one.
func TestHelperTrustOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	const other = 4242
	t.Run("file", func(t *testing.T) {
		front, full := installPair(t, t.TempDir(), 0o755)
		if err := os.Chown(full, other, other); err != nil {
			t.Fatal(err)
		}
		if _, err := fullNextTo(front); err == nil || !strings.Contains(err.Error(), "owned by uid 4242") {
			t.Fatalf("full CLI of another user: %v, want a refusal", err)
		}
	})
	t.Run("ancestor", func(t *testing.T) {
		top := t.TempDir()
		sub := filepath.Join(top, "sub")
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		front, _ := installPair(t, sub, 0o755)
		if err := os.Chown(top, other, other); err != nil {
			t.Fatal(err)
		}
		if _, err := fullNextTo(front); err == nil || !strings.Contains(err.Error(), "owned by uid 4242") {
			t.Fatalf("full CLI under a directory of another user: %v, want a refusal", err)
		}
	})
}

// A group-writable full CLI, or directory above it, is one another user
// may replace, unless its group's only member is its owner (a user private
// group, as Debian's OpenSSH accepts).
func TestHelperGroupWritable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chgrp")
	}
	const gid = 4300
	front, full := installPair(t, t.TempDir(), 0o775)
	if err := os.Chown(full, 0, gid); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, passwd, group string
		ok                  bool
	}{
		{"a group with another member", "root:x:0:0::/root:/bin/sh\nmallory:x:4301:4301::/home/m:/bin/sh\n", "shared:x:4300:root,mallory\n", false},
		{"another user's primary group", "root:x:0:0::/root:/bin/sh\nmallory:x:4301:4300::/home/m:/bin/sh\n", "shared:x:4300:\n", false},
		{"a group not in the group file", "root:x:0:0::/root:/bin/sh\n", "other:x:4399:\n", false},
		{"a group without members", "root:x:0:0::/root:/bin/sh\n", "empty:x:4300:\n", false},
		{"the owner's private group", "root:x:0:0::/root:/bin/sh\nrootpriv:x:0:4300::/root:/bin/sh\n", "rootpriv:x:4300:\n", true},
		{"the owner alone, as a listed member", "root:x:0:0::/root:/bin/sh\n", "solo:x:4300:root\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			useAccounts(t, tc.passwd, tc.group, "passwd: files\ngroup: files\n")
			_, err := fullNextTo(front)
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && (err == nil || !strings.Contains(err.Error(), "writable by its group")) {
				t.Fatalf("err = %v, want a refusal naming the group", err)
			}
		})
	}
}

// A symlink another user planted beside the front (in a sticky directory,
// where it could not replace the front's own files) is refused, whatever
// trusted program it points to.
func TestHelperPlantedSymlink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown a symlink")
	}
	dir := t.TempDir()
	front, full := installPair(t, dir, 0o755)
	if err := os.Remove(full); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/bin/echo", full); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(full, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if _, err := fullNextTo(front); err == nil || !strings.Contains(err.Error(), "another user planted it") {
		t.Fatalf("err = %v, want the planted symlink refused", err)
	}
}

// The path returned, and executed, has no symlink left in it, so that a
// symlink changed between the check and exec(2) cannot redirect the exec to
// a program the check never saw (a review raced one: 35 of 400 runs as root
// ran the other program before this).
func TestHelperPathResolved(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	front, full := installPair(t, dir, 0o755)
	target := filepath.Join(elsewhere, FullCLIName)
	if err := os.Rename(full, target); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, full); err != nil {
		t.Fatal(err)
	}
	got, err := fullNextTo(front)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.EvalSymlinks(target)
	if got != want {
		t.Fatalf("fullNextTo = %q, want the resolved %q: the exec must run what was checked", got, want)
	}
}

// A full CLI that is the front itself (a symlink to it) is refused instead
// of executing itself forever; a copy of the front, run, refuses to go on
// (cmd/docker-notarize TestVerifyOnlyFrontsInACycle).
func TestFullCLINotTheFront(t *testing.T) {
	dir := t.TempDir()
	front, full := installPair(t, dir, 0o755)
	if err := os.Remove(full); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("docker-notarize", full); err != nil {
		t.Fatal(err)
	}
	if _, err := fullNextTo(front); err == nil {
		t.Fatal("a full CLI that is the front itself was accepted: the front would exec itself forever")
	}
}
