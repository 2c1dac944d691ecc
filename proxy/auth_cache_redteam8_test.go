package proxy

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/distribution/distribution/v3/registry/auth"
	"golang.org/x/crypto/bcrypt"
)

// rt8Line is an htpasswd line for user with password pw.
func rt8Line(t *testing.T, user, pw string) []byte {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return []byte(user + ":" + string(h) + "\n")
}

// rt8Try reports whether ac accepts bob with pw.
func rt8Try(ac auth.AccessController, pw string) bool {
	r, _ := http.NewRequest(http.MethodGet, "http://proxy/v2/", nil)
	r.SetBasicAuth("bob", pw)
	_, err := ac.Authorized(r)
	return err == nil
}

// rt8Controller is the proxy's htpasswd access controller for path.
func rt8Controller(t *testing.T, path string) auth.AccessController {
	t.Helper()
	ac, err := AuthConfig{Htpasswd: &HtpasswdAuth{Path: path}}.accessController()
	if err != nil {
		t.Fatal(err)
	}
	return ac
}

// Red team 8: an htpasswd mounted as Kubernetes mounts a Secret, a
// symlink into a ..data symlink that is swapped by rename to a new
// directory. The new file keeps the old one's size (the same user, a new
// bcrypt hash of the same length) and its modification time (as a copy
// with -p keeps it): the old password must be refused at the next request
// although it was remembered (BYPASS: the cache follows the path's
// target, not the link).
func TestRedteam8SymlinkedHtpasswdSwappedByRename(t *testing.T) {
	dir := t.TempDir()
	write := func(version string, line []byte) os.FileInfo {
		if err := os.Mkdir(filepath.Join(dir, version), 0o700); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, version, "htpasswd")
		if err := os.WriteFile(p, line, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	v1 := write("..v1", rt8Line(t, "bob", "old-pw"))
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "htpasswd")
	if err := os.Symlink(filepath.Join("..data", "htpasswd"), path); err != nil {
		t.Fatal(err)
	}
	ac := rt8Controller(t, path)
	if !rt8Try(ac, "old-pw") || !rt8Try(ac, "old-pw") { // verified, then remembered
		t.Fatal("old-pw refused before the swap")
	}

	v2 := write("..v2", rt8Line(t, "bob", "new-pw"))
	if err := os.Chtimes(filepath.Join(dir, "..v2", "htpasswd"), v1.ModTime(), v1.ModTime()); err != nil {
		t.Fatal(err)
	}
	if v2.Size() != v1.Size() {
		t.Fatalf("sizes differ: %d, %d", v1.Size(), v2.Size())
	}
	if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..v1")); err != nil {
		t.Fatal(err)
	}
	if rt8Try(ac, "old-pw") {
		t.Error("BYPASS: the old password is still accepted after the symlinked htpasswd was swapped by rename")
	}
	if !rt8Try(ac, "new-pw") {
		t.Error("the new password is refused after the swap")
	}
}

// Red team 8: an htpasswd removed, or replaced by a directory, after a
// password was remembered fails closed: the remembered password is
// refused, and distribution never provisions a file of its own (with a
// generated password it logs) in its place.
func TestRedteam8HtpasswdRemovedFailsClosed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, rt8Line(t, "bob", "pw"), 0o600); err != nil {
		t.Fatal(err)
	}
	ac := rt8Controller(t, path)
	if !rt8Try(ac, "pw") || !rt8Try(ac, "pw") {
		t.Fatal("pw refused before the removal")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if rt8Try(ac, "pw") {
			t.Fatal("BYPASS: a remembered password is accepted with the htpasswd file removed")
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("BYPASS: a file appeared where the htpasswd was removed (distribution provisioned one?): %v", err)
	}
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if rt8Try(ac, "pw") {
		t.Fatal("BYPASS: a remembered password is accepted with the htpasswd replaced by a directory")
	}
}
