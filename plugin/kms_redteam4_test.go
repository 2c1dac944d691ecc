package plugin

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/plugin/kmswire"
)

// Red team 4: the KMS helper executable (notarize-kms). The plugin runs it
// with the user's cloud credentials in its environment and signs with what
// it returns, so whoever can replace the helper signs as the user: the
// helper must be found only where nobody else could have put it, and it
// must see none of the plugin's own secrets.

// redteam4Install writes a plugin and a helper into dir and returns the
// plugin's path.
func redteam4Install(t *testing.T, dir string) string {
	t.Helper()
	plugin := filepath.Join(dir, "docker-notarize")
	if err := os.WriteFile(plugin, []byte("plugin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, kmswire.HelperName), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return plugin
}

// TestRedteam4KMSHelperReplaceableByAnotherUser: a helper another
// (unprivileged) user owns, or that sits in a directory another user owns,
// can be replaced by that user; the plugin, run by root or by the user who
// installed it, would then hand its KMS credentials and its signatures to
// that user's program (sudo, ssh's StrictModes and git's safe.directory
// refuse the same). Needs root to chown.
func TestRedteam4KMSHelperReplaceableByAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another user needs root")
	}
	const nobody = 65534
	t.Run("helper owned by another user", func(t *testing.T) {
		dir := t.TempDir()
		plugin := redteam4Install(t, dir)
		if err := os.Chown(filepath.Join(dir, kmswire.HelperName), nobody, nobody); err != nil {
			t.Fatal(err)
		}
		if p, err := helperNextTo(plugin); err == nil {
			t.Fatalf("BYPASS: a helper owned by uid %d (who may rewrite it) is run by uid %d: %s", nobody, os.Geteuid(), p)
		}
	})
	t.Run("directory owned by another user", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "bin")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		plugin := redteam4Install(t, dir)
		if err := os.Chown(dir, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		if p, err := helperNextTo(plugin); err == nil {
			t.Fatalf("BYPASS: a helper in a directory owned by uid %d (who may replace it) is run by uid %d: %s", nobody, os.Geteuid(), p)
		}
	})
}

// TestRedteam4KMSHelperAncestorWorldWritable: the helper's own directory
// is safe, but a directory above it is world-writable without the sticky
// bit: anyone may rename the plugin's directory away and put one of their
// own, holding their helper, in its place. Only the last directory is
// checked.
func TestRedteam4KMSHelperAncestorWorldWritable(t *testing.T) {
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(open, "cli-plugins")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	plugin := redteam4Install(t, dir)
	if err := os.Chmod(open, 0o777); err != nil { // no sticky bit
		t.Fatal(err)
	}
	if p, err := helperNextTo(plugin); err == nil {
		t.Fatalf("BYPASS: a helper under a world-writable, non-sticky directory %s is run: %s", open, p)
	}
}

// TestRedteam4KMSHelperSymlinkIntoWritableDir: the helper next to the
// plugin is a symlink (as a package manager's symlink farm installs it)
// into a world-writable, non-sticky directory: its permission check reads
// the target file's mode but the symlink's directory, so anyone may
// replace the file that is run.
func TestRedteam4KMSHelperSymlinkIntoWritableDir(t *testing.T) {
	dir := t.TempDir()
	plugin := redteam4Install(t, dir)
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(open, kmswire.HelperName)
	if err := os.WriteFile(target, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, kmswire.HelperName)
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if p, err := helperNextTo(plugin); err == nil {
		t.Fatalf("BYPASS: a helper symlinked into the world-writable, non-sticky directory %s is run: %s", open, p)
	}
}

// TestRedteam4KMSHelperSeesNoSecrets: the plugin's secrets (the key
// store's password, a PKCS#11 PIN, any NOTARIZE_ variable) reach the helper
// neither by argv, nor by environment, nor in the request on stdin; and a
// failing helper that echoes everything it got into its stderr (which the
// plugin quotes in its error) leaks none of them either.
func TestRedteam4KMSHelperSeesNoSecrets(t *testing.T) {
	secrets := map[string]string{
		EnvPassword:           "pw-hunter2-redteam4",
		"NOTARIZE_PKCS11_PIN": "pin-31337-redteam4",
		"NOTARIZE_TOKEN":      "tok-deadbeef-redteam4",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	k := newTestKMSKey(t)
	dump := t.TempDir()
	record := "printf '%s\\n' \"$#\" \"$@\" > '" + dump + "/argv'; env > '" + dump + "/env'; cat > '" + dump + "/stdin'; "
	check := func(t *testing.T, what string, b []byte) {
		t.Helper()
		for name, v := range secrets {
			if bytes.Contains(b, []byte(v)) || bytes.Contains(b, []byte(name+"=")) {
				t.Fatalf("BYPASS: %s carries %s:\n%s", what, name, b)
			}
		}
	}
	write := func(t *testing.T, body string) string {
		p := filepath.Join(t.TempDir(), kmswire.HelperName)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("signing", func(t *testing.T) {
		h := write(t, record+answering(t, kmswire.Response{Version: kmswire.Version, PublicKeyPEM: k.pem, Signature: k.sign(t, "payload")}))
		if err := signThrough(t, h, k.record, time.Minute, "payload"); err != nil {
			t.Fatal(err)
		}
		argv := mustRead(t, filepath.Join(dump, "argv"))
		if strings.TrimSpace(string(argv)) != "0" {
			t.Fatalf("BYPASS: the helper was given arguments (argv is visible to every user in ps):\n%s", argv)
		}
		check(t, "the helper's environment", mustRead(t, filepath.Join(dump, "env")))
		stdin := mustRead(t, filepath.Join(dump, "stdin"))
		if !bytes.Contains(stdin, []byte(`"op":"sign"`)) {
			t.Fatalf("the helper's request was not recorded: %s", stdin)
		}
		check(t, "the helper's request", stdin)
	})
	t.Run("a helper echoing its input into the error", func(t *testing.T) {
		h := write(t, "cat >&2; env >&2; echo \"$@\" >&2; exit 7")
		err := signThrough(t, h, k.record, time.Minute, "payload")
		if err == nil {
			t.Fatal("a helper exiting 7 with no answer signed")
		}
		check(t, "the plugin's error", []byte(err.Error()))
	})
}

// TestRedteam4KMSHelperChildHoldsPipes: a helper that answers, exits, and
// leaves a child holding its stdout and stderr (a daemonised agent) does
// not hold the plugin for the child's lifetime; an answer that is then
// cut short by the child's garbage is refused, not half-read.
func TestRedteam4KMSHelperChildHoldsPipes(t *testing.T) {
	k := newTestKMSKey(t)
	t.Run("answer then a lingering child", func(t *testing.T) {
		h := fakeHelper(t, answering(t, kmswire.Response{Version: kmswire.Version, PublicKeyPEM: k.pem, Signature: k.sign(t, "payload")})+"; sleep 300 &")
		done := make(chan error, 1)
		go func() { done <- signThrough(t, h, k.record, time.Minute, "payload") }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("an honest answer followed by a lingering child: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("BYPASS: a helper's lingering child held the plugin for a minute")
		}
	})
	t.Run("a child writing after the answer", func(t *testing.T) {
		h := fakeHelper(t, answering(t, kmswire.Response{Version: kmswire.Version, PublicKeyPEM: k.pem, Signature: k.sign(t, "payload")})+
			"; (sleep 0.2; printf '{\"version\":1}') &")
		if err := signThrough(t, h, k.record, time.Minute, "payload"); err == nil {
			t.Fatal("BYPASS: a second JSON value written by the helper's child after its answer was ignored")
		}
	})
}
