package plugin

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// The helper programs docker notarize runs, the KMS helper (kms_helper.go)
// and the full CLI behind the verify-only build (fullcli.go), are found next
// to this executable, symlinks resolved, never on PATH, and refused when
// another user could have replaced them.

// executableNextTo returns the program name (".exe" added on Windows) in
// the directory of exe's target, symlinks resolved, if it is there and may
// be run (checkHelper). what names it in errors; a missing one is missing,
// wrapped.
func executableNextTo(exe, name, what string, missing error) (string, error) {
	target, err := filepath.EvalSymlinks(exe)
	if err != nil {
		return "", fmt.Errorf("locating %s: %w", name, err)
	}
	target, err = filepath.Abs(target)
	if err != nil {
		return "", fmt.Errorf("locating %s: %w", name, err)
	}
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	p := filepath.Join(filepath.Dir(target), name)
	// What is run is what was checked: the helper's path with every
	// symlink resolved, in directories only this user or root may change.
	return checkHelper(p, what, missing)
}

// checkHelper refuses a helper program that is missing (missing, wrapped),
// not a regular executable file, or that anyone could have replaced: a
// world-writable file, or one in a world-writable directory without the
// sticky bit, and more on Unix (checkHelperTrust). what names it in errors.
// It returns the path it checked, symlinks resolved: the one to run.
func checkHelper(p, what string, missing error) (string, error) {
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%w: no %s", missing, p)
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if runtime.GOOS == "windows" { // no permission bits to check: the directory's ACL decides
		if !fi.Mode().IsRegular() {
			return "", fmt.Errorf("%s %s: not a regular file (%s)", what, p, fi.Mode())
		}
		return checkHelperTrust(p, what)
	}
	switch mode := fi.Mode(); {
	case !mode.IsRegular():
		return "", fmt.Errorf("%s %s: not a regular file (%s)", what, p, mode)
	case mode.Perm()&0o111 == 0:
		return "", fmt.Errorf("%s %s: not executable (%s)", what, p, mode)
	case mode.Perm()&0o002 != 0:
		return "", fmt.Errorf("%s %s: refused, anyone may write it (%s): chmod o-w it", what, p, mode)
	}
	dir := filepath.Dir(p)
	di, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if di.Mode().Perm()&0o002 != 0 && di.Mode()&os.ModeSticky == 0 {
		return "", fmt.Errorf("%s %s: refused, anyone may replace it: its directory is world-writable (%s)", what, p, di.Mode())
	}
	return checkHelperTrust(p, what) // helper_trust_unix.go: owners, ancestors, symlink target
}
