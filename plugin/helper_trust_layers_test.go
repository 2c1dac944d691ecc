//go:build unix

package plugin

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// checkHelperTrust, which decides as lstat(2) sees the end of the chain,
// refuses on its own what is not a regular file or is writable by anyone,
// whatever checkHelper's stat(2) saw before it (a review: disabling its
// IsRegular check, or applying the sticky-bit exemption to files, passed
// every test, checkHelper's earlier checks hiding it).
func TestHelperTrustRefusesOnItsOwn(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "a-directory")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "a-fifo")
	if err := syscall.Mkfifo(fifo, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "a-link-to-the-directory")
	if err := os.Symlink(sub, link); err != nil {
		t.Fatal(err)
	}
	sticky := filepath.Join(dir, "a-sticky-world-writable-file")
	if err := os.WriteFile(sticky, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sticky, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{
		sub:    "not a regular file",
		fifo:   "not a regular file",
		link:   "not a regular file",
		sticky: "world-writable",
	} {
		if got, err := checkHelperTrust(p, "full CLI"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("checkHelperTrust(%s) = %q, %v; want a refusal: %s", filepath.Base(p), got, err, want)
		}
	}
}

// checkHelper refuses a directory, and a helper in a world-writable
// directory without the sticky bit, before the trust walk (its own
// wording), so that the first layer is not only the second's shadow.
func TestCheckHelperFirstLayer(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, FullCLIName)
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := checkHelper(sub, "full CLI", ErrFullCLIMissing); err == nil || !strings.Contains(err.Error(), "full CLI "+sub+": not a regular file") {
		t.Errorf("checkHelper(directory) = %v, want its own refusal", err)
	}
	ww := t.TempDir()
	if err := os.Chmod(ww, 0o777); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(ww, FullCLIName)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := checkHelper(p, "full CLI", ErrFullCLIMissing); err == nil || !strings.Contains(err.Error(), "its directory is world-writable") {
		t.Errorf("checkHelper(in a world-writable directory) = %v, want its own refusal", err)
	}
}
