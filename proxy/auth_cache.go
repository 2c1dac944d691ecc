package proxy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/registry/auth"
)

// Bounds of the cache of verified htpasswd credentials.
const (
	credentialCacheTTL     = time.Minute
	maxCachedCredentials   = 4096
	credentialCacheKeySize = 32
)

// credentialCache wraps distribution's htpasswd access controller so that
// the requests of one pull (a manifest and every blob, each with the same
// Basic credentials) do not each pay a bcrypt verification: at cost 10 that
// is ~100 ms of CPU per request. It remembers, for at most
// credentialCacheTTL, that a user and password were accepted — keyed by an
// HMAC under a per-process random key, never the password — and only while
// the htpasswd file is unchanged (same modification time and size), so
// removing a user or changing a password applies to the next request.
// Refused credentials are never remembered: each wrong guess still costs
// bcrypt.
type credentialCache struct {
	inner auth.AccessController
	path  string
	key   [credentialCacheKeySize]byte
	now   func() time.Time

	mu   sync.Mutex
	seen map[[sha256.Size]byte]verifiedCredential
}

type verifiedCredential struct {
	user    string
	modTime time.Time
	size    int64
	until   time.Time
}

var _ auth.AccessController = (*credentialCache)(nil)

func newCredentialCache(inner auth.AccessController, path string) *credentialCache {
	c := &credentialCache{inner: inner, path: path, now: time.Now, seen: map[[sha256.Size]byte]verifiedCredential{}}
	_, _ = rand.Read(c.key[:]) // crypto/rand.Read never fails
	return c
}

// Authorized grants a request whose Basic credentials were accepted
// recently under the same htpasswd file, and asks the htpasswd controller
// otherwise.
func (c *credentialCache) Authorized(r *http.Request, access ...auth.Access) (*auth.Grant, error) {
	user, password, ok := r.BasicAuth()
	if !ok {
		return c.inner.Authorized(r, access...)
	}
	st, err := os.Stat(c.path)
	if err != nil {
		return c.inner.Authorized(r, access...) // fails with the file's error: closed
	}
	mac := hmac.New(sha256.New, c.key[:])
	mac.Write([]byte(user))
	mac.Write([]byte{0})
	mac.Write([]byte(password))
	var k [sha256.Size]byte
	mac.Sum(k[:0])
	now := c.now()

	c.mu.Lock()
	v, hit := c.seen[k]
	c.mu.Unlock()
	if hit && v.user == user && v.modTime.Equal(st.ModTime()) && v.size == st.Size() && now.Before(v.until) {
		return &auth.Grant{User: auth.UserInfo{Name: user}}, nil
	}
	g, err := c.inner.Authorized(r, access...)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.seen) >= maxCachedCredentials {
		for k, v := range c.seen {
			if !now.Before(v.until) {
				delete(c.seen, k)
			}
		}
		if len(c.seen) >= maxCachedCredentials {
			clear(c.seen)
		}
	}
	// The file as it was before the verification: a change since makes
	// the next request verify again.
	c.seen[k] = verifiedCredential{user: user, modTime: st.ModTime(), size: st.Size(), until: now.Add(credentialCacheTTL)}
	return g, nil
}
