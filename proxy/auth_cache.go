package proxy

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/registry/auth"

	"github.com/notarize/docker-notarize/internal/ratelimit"
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
// Refused credentials are never remembered, so each verification is
// bounded instead (an anonymous client could otherwise keep every core
// busy with wrong guesses): every verification takes a token from its
// client's failedLogins bucket, given back when the credentials are
// accepted, so only failures spend it; a client with an empty bucket is
// answered 429 (*loginRateError) before any bcrypt; and at most
// bcryptSlots() verifications run at once (bcryptGate).
type credentialCache struct {
	inner auth.AccessController
	path  string
	key   [credentialCacheKeySize]byte
	now   func() time.Time

	failed     *ratelimit.Limiter
	bcryptGate chan struct{}

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
	c := &credentialCache{inner: inner, path: path, now: time.Now, seen: map[[sha256.Size]byte]verifiedCredential{},
		bcryptGate: make(chan struct{}, bcryptSlots())}
	c.failed = ratelimit.New(failedLoginRate, failedLoginBurst, maxLoginClients, func() time.Time { return c.now() })
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
	g, err := c.verify(r, access)
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

// Bounds of the htpasswd verifications (bcrypt) that clients can cause.
const (
	// failedLoginRate and failedLoginBurst are one client's token bucket
	// of refused logins: 20 at once, then 5 a second. A refused login
	// costs ~100 ms of CPU, so one client can keep at most half a core
	// busy; a person mistyping a password or a misconfigured CI job never
	// comes close.
	failedLoginRate  = 5.0
	failedLoginBurst = 20
	// maxLoginClients bounds the buckets kept (~100 bytes each); clients
	// beyond it share one bucket until idle buckets are dropped (see
	// internal/ratelimit).
	maxLoginClients = 10_000
	// bcryptWaitMax bounds the wait for a verification slot; past it the
	// client is answered 429.
	bcryptWaitMax = 10 * time.Second
)

// bcryptSlots is how many verifications run at once: half the usable
// cores (at least one), so a flood of logins from many addresses leaves
// the other half to requests whose credentials are cached.
func bcryptSlots() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// loginRateError refuses a login without verifying it: the client spent
// its refused logins (failedLoginRate, failedLoginBurst), or no
// verification slot came free within bcryptWaitMax. authorize answers it
// 429 TOOMANYREQUESTS with Retry-After.
type loginRateError struct {
	retryAfter time.Duration
	busy       bool // no verification slot came free, rather than the client's budget
}

func (e *loginRateError) Error() string {
	if e.busy {
		return fmt.Sprintf("too many logins being verified: retry in %ss", e.retryAfterHeader())
	}
	return fmt.Sprintf("too many failed logins from this address: retry in %ss", e.retryAfterHeader())
}

// retryAfterHeader is the Retry-After value: whole seconds, at least 1.
func (e *loginRateError) retryAfterHeader() string {
	return fmt.Sprint(max(1, int64(math.Ceil(e.retryAfter.Seconds()))))
}

// verify asks the htpasswd controller, within the client's budget of
// refused logins and a free verification slot; an accepted login gives its
// token back.
func (c *credentialCache) verify(r *http.Request, access []auth.Access) (*auth.Grant, error) {
	client := loginClient(r.RemoteAddr)
	if wait, ok := c.failed.Take(client); !ok {
		return nil, &loginRateError{retryAfter: wait}
	}
	ctx, cancel := context.WithTimeout(r.Context(), bcryptWaitMax)
	defer cancel()
	select {
	case c.bcryptGate <- struct{}{}:
	case <-ctx.Done():
		c.failed.Give(client)
		if r.Context().Err() != nil {
			return nil, fmt.Errorf("waiting to verify credentials: %w", r.Context().Err())
		}
		return nil, &loginRateError{retryAfter: time.Second, busy: true}
	}
	g, err := c.inner.Authorized(r, access...)
	<-c.bcryptGate
	var ch auth.Challenge
	if err == nil || !errors.As(err, &ch) {
		c.failed.Give(client) // accepted, or not decided (file unreadable): not a refused login
	}
	return g, err
}

// loginClient names the client of a request for the refused-logins
// budget: its IPv4 address or IPv6 /64 (one host commonly holds a whole
// /64). Behind a reverse proxy every client has the proxy's address.
func loginClient(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return remoteAddr
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
