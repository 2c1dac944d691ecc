package proxy

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/auth"
	"golang.org/x/crypto/bcrypt"
)

// countingController counts the verifications of the real htpasswd controller.
type countingController struct {
	auth.AccessController
	n atomic.Int32
}

func (c *countingController) Authorized(r *http.Request, access ...auth.Access) (*auth.Grant, error) {
	c.n.Add(1)
	return c.AccessController.Authorized(r, access...)
}

func TestCredentialCache(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	line := func(user, pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return user + ":" + string(h) + "\n"
	}
	if err := os.WriteFile(path, []byte(line("alice", "pw-a")+line("bob", "pw-b")), 0o600); err != nil {
		t.Fatal(err)
	}
	ac, err := AuthConfig{Htpasswd: &HtpasswdAuth{Path: path}}.accessController()
	if err != nil {
		t.Fatal(err)
	}
	cache := ac.(*credentialCache)
	inner := &countingController{AccessController: cache.inner}
	cache.inner = inner
	clock := time.Now()
	cache.now = func() time.Time { return clock }

	try := func(user, pw string) (string, bool) {
		r, _ := http.NewRequest(http.MethodGet, "http://proxy/v2/", nil)
		r.SetBasicAuth(user, pw)
		g, err := cache.Authorized(r)
		if err != nil {
			return "", false
		}
		return g.User.Name, true
	}
	expect := func(step, user, pw string, ok bool, verifications int32) {
		t.Helper()
		before := inner.n.Load()
		name, got := try(user, pw)
		if got != ok || ok && name != user {
			t.Fatalf("%s: %s/%s accepted=%v as %q, want %v", step, user, pw, got, name, ok)
		}
		if n := inner.n.Load() - before; n != verifications {
			t.Fatalf("%s: %d bcrypt verifications, want %d", step, n, verifications)
		}
	}
	expect("first", "alice", "pw-a", true, 1)
	expect("again: remembered", "alice", "pw-a", true, 0)
	expect("wrong password", "alice", "pw-b", false, 1)
	expect("wrong password again: never remembered", "alice", "pw-b", false, 1)
	expect("bob with alice's password", "bob", "pw-a", false, 1)
	expect("a prefix of the password", "alice", "pw-", false, 1)
	expect("user/password split elsewhere", "alic", "epw-a", false, 1)
	expect("still remembered", "alice", "pw-a", true, 0)

	// Remembered while used (red team 6, F5: a one-minute TTL put every
	// user back in the bcrypt queue, behind any flood of guesses).
	clock = clock.Add(credentialCacheIdle - time.Second)
	expect("used within the idle time", "alice", "pw-a", true, 0)
	clock = clock.Add(credentialCacheIdle - time.Second)
	expect("the idle time runs from the last use", "alice", "pw-a", true, 0)
	clock = clock.Add(credentialCacheIdle)
	expect("unused for the idle time", "alice", "pw-a", true, 1)
	for k, v := range cache.seen { // neither the password nor an unkeyed hash of it is kept
		for _, unkeyed := range [][sha256.Size]byte{sha256.Sum256([]byte("pw-a")), sha256.Sum256([]byte("alice\x00pw-a"))} {
			if k == unkeyed {
				t.Fatalf("the cache is keyed by an unkeyed hash of the password")
			}
		}
		if strings.Contains(fmt.Sprintf("%+v", *v), "pw-a") {
			t.Fatalf("the cache holds the password: %+v", *v)
		}
	}

	// alice is removed: the very next request is refused.
	if err := os.WriteFile(path, []byte(line("bob", "pw-b")), 0o600); err != nil {
		t.Fatal(err)
	}
	expect("user removed", "alice", "pw-a", false, 1)
	// bob's password changes (same file size): refused at once too.
	expect("bob", "bob", "pw-b", true, 1)
	expect("bob remembered", "bob", "pw-b", true, 0)
	if err := os.WriteFile(path, []byte(line("bob", "pw-c")), 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Hour) // a file system with coarse timestamps still sees a change
	if err := os.Chtimes(path, future, future); err != nil {
		t.Fatal(err)
	}
	expect("password changed", "bob", "pw-b", false, 1)
	expect("new password", "bob", "pw-c", true, 1)
}

// TestCredentialCacheSeesChangeKeepingMtime: a password changed in place
// (same inode, same size, the modification time set back, as cp -p onto
// the file or a restore do) is seen at the very next request: the old
// password is refused, the new one accepted (red team 7, W1; the renamed
// file case is TestRedteam7PasswordChangeKeepingMtime).
func TestCredentialCacheSeesChangeKeepingMtime(t *testing.T) {
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
	for step, tc := range []struct {
		old, new string
	}{{"old-pw", "new-pw"}, {"new-pw", "pw-3"}} {
		if !try(tc.old) || !try(tc.old) { // verified, then remembered
			t.Fatalf("step %d: %s refused before the change", step, tc.old)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0) // in place: same inode
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(line("bob", tc.new)); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
			t.Fatal(err)
		}
		if now, err := os.Stat(path); err != nil || now.Size() != st.Size() || !now.ModTime().Equal(st.ModTime()) {
			t.Fatalf("the file's size or modification time changed: %v", err)
		}
		if try(tc.old) {
			t.Errorf("step %d: the old password %s is still accepted after an in-place change keeping size and mtime", step, tc.old)
		}
		if !try(tc.new) {
			t.Errorf("step %d: the new password %s is refused after the change", step, tc.new)
		}
	}
}

// TestCredentialKeyLengthPrefixed: no two splits of one string into user
// and password share a cache key ("a\x00"/"b" and "a"/"\x00b" did, with
// the user and password joined by a NUL), so the key alone never serves
// one user's acceptance to another.
func TestCredentialKeyLengthPrefixed(t *testing.T) {
	c := newCredentialCache(nil, filepath.Join(t.TempDir(), "htpasswd"), nil)
	seen := map[[sha256.Size]byte]string{}
	for _, p := range [][2]string{{"a\x00", "b"}, {"a", "\x00b"}, {"a\x00b", ""}, {"", "a\x00b"}, {"ab", ""}, {"a", "b"}} {
		k := c.credentialKey(p[0], p[1])
		if other, ok := seen[k]; ok {
			t.Fatalf("user/password %q and %q share a cache key", p, other)
		}
		seen[k] = fmt.Sprintf("%q", p)
	}
}
