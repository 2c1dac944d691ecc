//go:build unix

package plugin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// groupOnlyOwner must fail closed on every line that the C library would
// read as naming the group but this parser cannot read (review 2). glibc's
// nss_files parses a uid or gid with strtoul: leading blanks, a '+' or a
// "-0" are accepted, and '+'/'-' lines are NIS compat entries.
func TestGroupOnlyOwnerFailsClosed(t *testing.T) {
	const alice, gid = 1000, 1000
	basePasswd := "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n"
	baseGroup := "root:x:0:\nalice:x:1000:\n"
	for _, tc := range []struct {
		name, passwd, group string
		want                bool
	}{
		{"user private group", basePasswd, baseGroup, true},
		{"another user's primary gid, before the owner", "mallory:x:1001:1000::/:/bin/sh\n" + basePasswd, baseGroup, false},
		{"another user's primary gid with a leading blank (glibc: 1000)", basePasswd + "mallory:x:1001: 1000::/:/bin/sh\n", baseGroup, false},
		{"another user's primary gid with a plus sign (glibc: 1000)", basePasswd + "mallory:x:1001:+1000::/:/bin/sh\n", baseGroup, false},
		{"NIS compat line in passwd", basePasswd + "+::::::\n", baseGroup, false},
		{"NIS compat line in group", basePasswd, baseGroup + "+:::\n", false},
		{"the group again with a leading blank gid (glibc: 1000)", basePasswd, baseGroup + "evil:x: 1000:mallory\n", false},
		{"the group listed twice", basePasswd, baseGroup + "evil:x:1000:mallory\n", false},
		{"a long line (a big group) is read", basePasswd, baseGroup + "big:x:5000:" + strings.Repeat("u,", 40000) + "\n", true},
		{"an unreadably long line", basePasswd, baseGroup + "big:x:5000:" + strings.Repeat("u,", 600000) + "\n", false},
		{"a short line", basePasswd + "mallory:x:1001\n", baseGroup, false},
		{"the owner's primary gid in no group line (systemd's userdb may list members)", basePasswd, "root:x:0:\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			useAccounts(t, tc.passwd, tc.group, "passwd: files systemd\ngroup: files systemd\n")
			if got := groupOnlyOwner(gid, alice); got != tc.want {
				t.Errorf("groupOnlyOwner = %v, want %v", got, tc.want)
			}
		})
	}
}

// useAccounts makes groupOnlyOwner read a passwd, a group and an
// nsswitch.conf file of these contents.
func useAccounts(t *testing.T, passwd, group, nss string) {
	t.Helper()
	dir := t.TempDir()
	pf, gf, nf := filepath.Join(dir, "passwd"), filepath.Join(dir, "group"), filepath.Join(dir, "nsswitch.conf")
	for f, content := range map[string]string{pf: passwd, gf: group, nf: nss} {
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	oldP, oldG, oldN := passwdFile, groupFile, nsswitchFile
	passwdFile, groupFile, nsswitchFile = pf, gf, nf
	t.Cleanup(func() { passwdFile, groupFile, nsswitchFile = oldP, oldG, oldN })
}

// Users and groups from a directory service are not in the files: a group
// that looks private there may not be.
func TestGroupOnlyOwnerDirectoryService(t *testing.T) {
	for nss, want := range map[string]bool{
		"passwd: files systemd\ngroup: files systemd\n":                  true,
		"passwd: compat\ngroup: compat\n":                                true,
		"passwd: files [NOTFOUND=return] systemd\ngroup: files\n":        true,
		"passwd: files sss\ngroup: files sss\n":                          false,
		"passwd: files\ngroup: files ldap # comment\n":                   false,
		"passwd:files winbind\ngroup:files\n":                            false,
		"hosts: files dns\npasswd: files\ngroup: files nis\nshadow: x\n": false,
		"passwd: files [NOTFOUND=return sss\ngroup: files\n":             false, // an action left open
	} {
		useAccounts(t, "alice:x:1000:1000::/home/alice:/bin/sh\n", "alice:x:1000:\n", nss)
		if got := groupOnlyOwner(1000, 1000); got != want {
			t.Errorf("nsswitch.conf %q: groupOnlyOwner = %v, want %v", nss, got, want)
		}
	}
	// An nsswitch.conf that cannot be read (here: a directory) fails closed.
	useAccounts(t, "alice:x:1000:1000::/home/alice:/bin/sh\n", "alice:x:1000:\n", "")
	nsswitchFile = t.TempDir()
	if groupOnlyOwner(1000, 1000) {
		t.Error("an unreadable nsswitch.conf: groupOnlyOwner = true")
	}
}

// A symlink later in the chain, in a directory another user may write,
// lets that user choose what runs (any program of root's: /bin/sh runs
// ./notarize from the working directory): refused, as the first one is.
func TestHelperLaterSymlinkOfAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	dir, theirs := t.TempDir(), t.TempDir()
	front, full := installPair(t, dir, 0o755)
	if err := os.Remove(full); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(theirs, "current")
	if err := os.Symlink("/bin/sh", link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(link, full); err != nil { // root's own symlink
		t.Fatal(err)
	}
	for _, p := range []string{theirs} {
		if err := os.Lchown(p, 4242, 4242); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := fullNextTo(front); err == nil {
		t.Fatalf("fullNextTo = %q: a symlink in another user's directory chose the program", got)
	}
	// Their symlink in a sticky directory of root's: refused too.
	if err := os.Chown(theirs, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(theirs, 0o1777); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	if got, err := fullNextTo(front); err == nil || !strings.Contains(err.Error(), "another user planted it") {
		t.Fatalf("fullNextTo = %q, %v: their symlink in a sticky directory was followed", got, err)
	}
}

// A directory above the full CLI that a shared group may write is refused
// as a group-writable full CLI is (no test held this: dropping the check
// for directories passed every test).
func TestHelperGroupWritableDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chgrp")
	}
	useAccounts(t, "root:x:0:0::/root:/bin/sh\nmallory:x:4301:4301::/:/bin/sh\n", "shared:x:4300:root,mallory\n", "passwd: files\ngroup: files\n")
	sub := filepath.Join(t.TempDir(), "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	front, _ := installPair(t, sub, 0o755)
	if err := os.Chown(sub, 0, 4300); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sub, 0o775); err != nil {
		t.Fatal(err)
	}
	if got, err := fullNextTo(front); err == nil || !strings.Contains(err.Error(), "writable by its group") {
		t.Fatalf("fullNextTo = %q, %v: want the group-writable directory refused", got, err)
	}
}
