//go:build unix

package plugin

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// checkHelperTrust refuses a helper program (what) at p that a user other
// than this process's (or root) could replace, and returns the path it
// checked, every symlink resolved: the caller runs that path, so that a
// symlink changed after the check cannot redirect the run. p itself, if a
// symlink, must be owned by this user or root (one planted in a sticky
// directory is not); the helper, symlinks resolved, must be owned by this
// user or root, and so must every directory from its own up to the root.
// None of them may be writable by others: not world-writable (a directory:
// unless sticky), and not group-writable unless the group's only member is
// the owner (a user private group; Debian's rule for OpenSSH's
// StrictModes, which sudo and ssh apply to what they run or read). Whoever
// can replace the KMS helper signs with the user's KMS credentials; whoever
// can replace the full CLI reads the key passwords.
func checkHelperTrust(p, what string) (string, error) {
	euid := uint32(os.Geteuid())
	owner := func(fi os.FileInfo) (uid, gid uint32, ok bool) {
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return 0, 0, false
		}
		return st.Uid, st.Gid, true
	}
	trusted := func(fi os.FileInfo, name string) error {
		uid, gid, ok := owner(fi)
		if !ok || (uid != euid && uid != 0) {
			return fmt.Errorf("%s %s: refused, %s is owned by uid %d, neither this user (%d) nor root: another user may replace it", what, p, name, uid, euid)
		}
		mode := fi.Mode()
		if mode.Perm()&0o020 != 0 && !(mode.IsDir() && mode&os.ModeSticky != 0) && !groupOnlyOwner(gid, uid) {
			return fmt.Errorf("%s %s: refused, %s is writable by its group (gid %d), which has members besides its owner (%s): chmod g-w it", what, p, name, gid, mode)
		}
		return nil
	}
	li, err := os.Lstat(p)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if li.Mode()&os.ModeSymlink != 0 {
		if uid, _, ok := owner(li); !ok || (uid != euid && uid != 0) {
			return "", fmt.Errorf("%s %s: refused, the symlink is owned by uid %d, neither this user (%d) nor root: another user planted it", what, p, uid, euid)
		}
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if real, err = filepath.Abs(real); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return "", fmt.Errorf("%s %s: refused, anyone may write %s (%s): chmod o-w it", what, p, real, fi.Mode())
	}
	if err := trusted(fi, real); err != nil {
		return "", err
	}
	for dir := filepath.Dir(real); ; dir = filepath.Dir(dir) {
		di, err := os.Stat(dir)
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		if di.Mode().Perm()&0o002 != 0 && di.Mode()&os.ModeSticky == 0 {
			return "", fmt.Errorf("%s %s: refused, anyone may replace it: %s is world-writable (%s)", what, p, dir, di.Mode())
		}
		if err := trusted(di, dir); err != nil {
			return "", err
		}
		if parent := filepath.Dir(dir); parent == dir {
			return real, nil
		}
	}
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
	ownerName, members := "", 0
	ok := scanAccounts(passwdFile, func(f []string) bool {
		if len(f) < 4 {
			return true
		}
		u, err1 := strconv.ParseUint(f[2], 10, 32)
		g, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			return true
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
			return true
		}
		if g, err := strconv.ParseUint(f[2], 10, 32); err != nil || uint32(g) != gid {
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
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if !fn(strings.Split(line, ":")) {
			return false
		}
	}
	return sc.Err() == nil
}
