//go:build unix

package plugin

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// checkHelperTrust refuses a helper program (what) that a user other than this
// process's (or root) could replace: the helper, symlinks resolved, must be
// owned by this process's user or root, and so must every directory from
// its own up to the root, none of them world-writable without the sticky
// bit (as sudo and ssh's StrictModes require of what they run or read).
// Whoever can replace the KMS helper signs with the user's KMS
// credentials; whoever can replace the full CLI reads the key passwords.
func checkHelperTrust(p, what string) error {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if real, err = filepath.Abs(real); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	euid := uint32(os.Geteuid())
	owner := func(fi os.FileInfo) (uint32, bool) {
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return 0, false
		}
		return st.Uid, true
	}
	fi, err := os.Stat(real)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return fmt.Errorf("%s %s: refused, anyone may write %s (%s): chmod o-w it", what, p, real, fi.Mode())
	}
	if uid, ok := owner(fi); !ok || (uid != euid && uid != 0) {
		return fmt.Errorf("%s %s: refused, %s is owned by uid %d, neither this user (%d) nor root: another user may replace it", what, p, real, uid, euid)
	}
	for dir := filepath.Dir(real); ; dir = filepath.Dir(dir) {
		di, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if di.Mode().Perm()&0o002 != 0 && di.Mode()&os.ModeSticky == 0 {
			return fmt.Errorf("%s %s: refused, anyone may replace it: %s is world-writable (%s)", what, p, dir, di.Mode())
		}
		if uid, ok := owner(di); !ok || (uid != euid && uid != 0) {
			return fmt.Errorf("%s %s: refused, %s is owned by uid %d, neither this user (%d) nor root: another user may replace it", what, p, dir, uid, euid)
		}
		if parent := filepath.Dir(dir); parent == dir {
			return nil
		}
	}
}
