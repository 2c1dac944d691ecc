package proxy

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// TestRedteam7CredentialCacheUserSplit attacks the credential cache's key
// (ac8b2bf: an HMAC over user, a NUL and password): user "a\x00" with
// password "b" and user "a" with password "\x00b" feed it the same bytes.
// Once "a\x00" logged in, "a" with the password "\x00b" (not a's) must
// still be refused: the cache must not serve one user's acceptance to
// another whose user and password split the same bytes elsewhere.
func TestRedteam7CredentialCacheUserSplit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	line := func(user, pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return user + ":" + string(h) + "\n"
	}
	if err := os.WriteFile(path, []byte(line("a\x00", "b")+line("a", "a's own password")), 0o600); err != nil {
		t.Fatal(err)
	}
	ac, err := AuthConfig{Htpasswd: &HtpasswdAuth{Path: path}}.accessController()
	if err != nil {
		t.Fatal(err)
	}
	try := func(user, pw string) (string, bool) {
		r, _ := http.NewRequest(http.MethodGet, "http://proxy/v2/", nil)
		r.SetBasicAuth(user, pw)
		g, err := ac.Authorized(r)
		if err != nil {
			return "", false
		}
		return g.User.Name, true
	}
	if _, ok := try("a\x00", "b"); !ok {
		t.Skip("distribution's htpasswd file takes no user name holding a NUL: nothing to collide with")
	}
	if name, ok := try("a", "\x00b"); ok {
		t.Fatalf("BYPASS: user %q logged in with another user's cached acceptance (password not its own)", name)
	}
	if name, ok := try("a", "a's own password"); !ok || name != "a" {
		t.Fatalf("a's own password: accepted %v as %q", ok, name)
	}
	if name, ok := try("a\x00", "b"); !ok || name != "a\x00" {
		t.Fatalf("a\\x00 again: accepted %v as %q", ok, name)
	}
}
