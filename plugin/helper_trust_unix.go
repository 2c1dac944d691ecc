//go:build unix

package plugin

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// checkHelperTrust refuses a helper program (what) at p that a user other
// than this process's (or root) could replace, and returns the path it
// checked, every symlink resolved: the caller runs that path. Every entry
// is checked as lstat(2) sees it, and only entries no other user can
// replace are accepted, so that what is run is what was checked: every
// symlink on the way (the first and every later one) must be owned by this
// user or root (one planted in a sticky directory is not) and lie in
// directories that pass the rules below; the helper, a regular file, must
// be owned by this user or root, and so must every directory from its own
// up to the root. None of them may be writable by others: not
// world-writable (a directory: unless sticky), and not group-writable
// unless the group's only member is the owner (a user private group;
// Debian's rule for OpenSSH's StrictModes) and no ACL may grant another
// user write (hasAccessACL). Whoever can replace the KMS helper signs with
// the user's KMS credentials; whoever can replace the full CLI reads the
// key passwords.
func checkHelperTrust(p, what string) (string, error) {
	euid := uint32(os.Geteuid())
	owner := func(fi os.FileInfo) (uid, gid uint32, ok bool) {
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return 0, 0, false
		}
		return st.Uid, st.Gid, true
	}
	ownedHere := func(fi os.FileInfo, name string) error {
		if uid, _, ok := owner(fi); !ok || (uid != euid && uid != 0) {
			return fmt.Errorf("%s %s: refused, %s is owned by uid %d, neither this user (%d) nor root: another user may replace it", what, p, name, uid, euid)
		}
		return nil
	}
	// trusted checks one entry, as lstat(2) saw it: no entry owned by this
	// user or root can be replaced by another user in a directory that
	// passes dirChain, so what is checked here is what exec(2) finds.
	trusted := func(fi os.FileInfo, name string) error {
		if err := ownedHere(fi, name); err != nil {
			return err
		}
		uid, gid, _ := owner(fi)
		mode := fi.Mode()
		sticky := mode.IsDir() && mode&os.ModeSticky != 0
		if mode.Perm()&0o002 != 0 && !sticky {
			return fmt.Errorf("%s %s: refused, anyone may replace it: %s is world-writable (%s): chmod o-w it", what, p, name, mode)
		}
		if mode.Perm()&0o020 != 0 && !sticky {
			if !groupOnlyOwner(gid, uid) {
				return fmt.Errorf("%s %s: refused, %s is writable by its group (gid %d), which has members besides its owner (%s): chmod g-w it", what, p, name, gid, mode)
			}
			// With an access ACL the group bits are its mask: a named
			// user or group may write it.
			if hasAccessACL(name) {
				return fmt.Errorf("%s %s: refused, %s has an ACL that may let other users write it (%s): chmod g-w it", what, p, name, mode)
			}
		}
		return nil
	}
	// dirChain checks dir and every directory above it, none a symlink.
	dirChain := func(dir string) error {
		for ; ; dir = filepath.Dir(dir) {
			di, err := os.Lstat(dir)
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			if !di.IsDir() {
				return fmt.Errorf("%s %s: refused, %s changed while it was checked (%s)", what, p, dir, di.Mode())
			}
			if err := trusted(di, dir); err != nil {
				return err
			}
			if filepath.Dir(dir) == dir {
				return nil
			}
		}
	}
	// Every symlink on the way, the first and every later one, must be
	// one that no other user can change: owned by this user or root (one
	// planted in a sticky directory is not), in directories that pass
	// dirChain.
	var refused error
	real, err := resolveLinks(p, func(link string, li os.FileInfo) error {
		if uid, _, ok := owner(li); !ok || (uid != euid && uid != 0) {
			refused = fmt.Errorf("%s %s: refused, the symlink %s is owned by uid %d, neither this user (%d) nor root: another user planted it", what, p, link, uid, euid)
			return refused
		}
		refused = dirChain(filepath.Dir(link))
		return refused
	})
	if refused != nil {
		return "", refused
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	fi, err := os.Lstat(real)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s %s: refused, %s is not a regular file (%s)", what, p, real, fi.Mode())
	}
	if err := trusted(fi, real); err != nil {
		return "", err
	}
	if err := dirChain(filepath.Dir(real)); err != nil {
		return "", err
	}
	return real, nil
}

// resolveLinks is filepath.EvalSymlinks for an absolute path, calling
// onLink with every symlink it meets (lstat(2)'s view of it) before it
// reads it; a refusal stops it.
func resolveLinks(p string, onLink func(link string, fi os.FileInfo) error) (string, error) {
	p, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	rest, resolved, links := strings.Split(p, "/"), "/", 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			resolved = filepath.Dir(resolved) // resolved holds no symlink
			continue
		}
		next := filepath.Join(resolved, c)
		fi, err := os.Lstat(next)
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			if len(rest) > 0 && !fi.IsDir() {
				return "", &os.PathError{Op: "resolve", Path: next, Err: syscall.ENOTDIR}
			}
			resolved = next
			continue
		}
		if links++; links > 255 {
			return "", &os.PathError{Op: "resolve", Path: p, Err: syscall.ELOOP}
		}
		if err := onLink(next, fi); err != nil {
			return "", err
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			resolved = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return resolved, nil
}

// The account databases groupOnlyOwner reads; tests replace them.
var (
	passwdFile = "/etc/passwd"
	groupFile  = "/etc/group"
)

// groupOnlyOwner reports whether the group gid has exactly one member,
// the user uid: every account whose primary group it is has that uid, and
// its member list names at most that user. A group or user found in
// neither file (a directory service) is not known to be private: false.
func groupOnlyOwner(gid, uid uint32) bool {
	if !accountsInFilesOnly() {
		return false
	}
	ownerName, members := "", 0
	ok := scanAccounts(passwdFile, func(f []string) bool {
		if len(f) < 4 {
			return false // not read as the C library reads it: fail closed
		}
		u, err1 := strconv.ParseUint(f[2], 10, 32)
		g, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			return false // glibc reads " 1000" or "+1000" as 1000
		}
		if uint32(u) == uid && ownerName == "" {
			ownerName = f[0]
		}
		if uint32(g) == gid {
			members++
			return uint32(u) == uid
		}
		return true
	})
	if !ok || ownerName == "" {
		return false
	}
	found := false
	ok = scanAccounts(groupFile, func(f []string) bool {
		if len(f) < 4 {
			return false
		}
		g, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			return false
		}
		if uint32(g) != gid {
			return true
		}
		found = true
		for _, m := range strings.Split(f[3], ",") {
			if m == "" {
				continue
			}
			if m != ownerName {
				return false
			}
			members++
		}
		return true
	})
	return ok && found && members > 0
}

// scanAccounts calls fn with the colon-separated fields of every line of
// the account file path (comments and blank lines skipped) while fn
// returns true. It returns false when fn stopped it or the file could not
// be read.
func scanAccounts(path string, fn func(fields []string) bool) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if line[0] == '+' || line[0] == '-' {
			return false // NIS compat: accounts not in this file
		}
		if !fn(strings.Split(line, ":")) {
			return false
		}
	}
	return sc.Err() == nil
}

// nsswitchFile is read by accountsInFilesOnly; tests replace it.
var nsswitchFile = "/etc/nsswitch.conf"

// accountsInFilesOnly reports whether the system takes its users and
// groups from the files groupOnlyOwner reads (and systemd's, whose users
// and groups are its own): with LDAP, SSSD, NIS or winbind, a member of a
// group may be found in neither file.
func accountsInFilesOnly() bool {
	b, err := os.ReadFile(nsswitchFile)
	if errors.Is(err, os.ErrNotExist) {
		return true // glibc's default, musl's only source
	}
	if err != nil {
		return false
	}
	users, ok1 := NSSwitchSources(string(b), "passwd")
	groups, ok2 := NSSwitchSources(string(b), "group")
	if !ok1 || !ok2 {
		return false
	}
	for _, src := range append(users, groups...) {
		switch src {
		case "files", "compat", "systemd":
		default:
			return false
		}
	}
	return true
}
