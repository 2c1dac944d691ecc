package proxy

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestRedteam7PasswordChangeKeepingMtime: an operator changes bob's
// password with a tool that keeps the file's modification time (cp -p,
// rsync -a, install -p, a restore): same size (a bcrypt hash has one
// length), same mtime. bob's old password must be refused.
func TestRedteam7PasswordChangeKeepingMtime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	line := func(user, pw string) []byte {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return []byte(user + ":" + string(h) + "\n")
	}
	if err := os.WriteFile(path, line("bob", "old-pw"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	ac, err := AuthConfig{Htpasswd: &HtpasswdAuth{Path: path}}.accessController()
	if err != nil {
		t.Fatal(err)
	}
	try := func(pw string) bool {
		r, _ := http.NewRequest(http.MethodGet, "http://proxy/v2/", nil)
		r.SetBasicAuth("bob", pw)
		_, err := ac.Authorized(r)
		return err == nil
	}
	if !try("old-pw") {
		t.Fatal("bob's password refused before the change")
	}
	time.Sleep(10 * time.Millisecond)
	tmp := path + ".new"
	if err := os.WriteFile(tmp, line("bob", "new-pw"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, st.ModTime(), st.ModTime()); err != nil { // what cp -p / rsync -a do
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if try("old-pw") {
		t.Errorf("BYPASS: bob's old password is still accepted after the htpasswd file was replaced by one of the same size and modification time")
	}
	if !try("new-pw") {
		t.Errorf("bob's new password is refused after the change")
	}
}
