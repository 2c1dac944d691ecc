package proxy

import (
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
	// credentialCacheIdle is how long an accepted credential is
	// remembered after its last use (while the htpasswd file is
	// unchanged): an active client never pays bcrypt again, so it never
	// queues behind a flood of guesses (red team 6, F5).
	credentialCacheIdle = 12 * time.Hour
	// maxCachedCredentials bounds the credentials remembered; past it the
	// least recently used one is forgotten. Only accepted credentials are
	// kept, so it bounds honest users, not guesses.
	maxCachedCredentials   = 4096
	credentialCacheKeySize = 32
)

// credentialCache wraps distribution's htpasswd access controller so that
// the requests of one pull (a manifest and every blob, each with the same
// Basic credentials) do not each pay a bcrypt verification: at cost 10 that
// is ~100 ms of CPU per request. It remembers that a user and password were
// accepted — keyed by an HMAC under a per-process random key, never the
// password nor an unkeyed hash of it — while the htpasswd file is unchanged
// (same modification time and size), so removing a user or changing a
// password applies to the next request, and for at most
// credentialCacheIdle after the credential's last use.
// Refused credentials are never remembered, so each verification is
// bounded instead (an anonymous client could otherwise keep every core
// busy with wrong guesses): every verification takes a token from its
// client's failedLogins bucket (and its IPv6 /56's and /48's), given back
// only when the credentials are accepted, so only failures (and guesses
// that queued for a slot and gave up) spend it; a client with an empty
// bucket is answered 429 (*loginRateError) before any bcrypt; and at most
// bcryptSlots() verifications run at once (loginSlots), each client
// queueing at most maxQueuedLogins for them, clients with no refused login
// in the last minute served first.
type credentialCache struct {
	inner auth.AccessController
	path  string
	key   [credentialCacheKeySize]byte
	now   func() time.Time

	failed *ratelimit.Limiter
	slots  *loginSlots

	mu   sync.Mutex
	seen map[[sha256.Size]byte]*verifiedCredential
}

// verifiedCredential is an accepted credential: its user, the htpasswd
// file it was accepted under, and when it was last used.
type verifiedCredential struct {
	user     string
	modTime  time.Time
	size     int64
	lastUsed time.Time
}

var _ auth.AccessController = (*credentialCache)(nil)

func newCredentialCache(inner auth.AccessController, path string) *credentialCache {
	c := &credentialCache{inner: inner, path: path, now: time.Now, seen: map[[sha256.Size]byte]*verifiedCredential{}}
	c.failed = ratelimit.New(failedLoginRate, failedLoginBurst, maxLoginClients, func() time.Time { return c.now() })
	c.slots = newLoginSlots(bcryptSlots(), func() time.Time { return c.now() })
	_, _ = rand.Read(c.key[:]) // crypto/rand.Read never fails
	return c
}

// Authorized grants a request whose Basic credentials were accepted under
// the same htpasswd file and used within credentialCacheIdle, and asks the
// htpasswd controller otherwise.
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

	if c.remembered(k, user, st, now) {
		return &auth.Grant{User: auth.UserInfo{Name: user}}, nil
	}
	g, err := c.verify(r, access)
	if err != nil {
		return nil, err
	}
	c.remember(k, user, st, now)
	return g, nil
}

// remembered reports whether k is an accepted credential of user under
// the file st, used within credentialCacheIdle, and marks it used now.
func (c *credentialCache) remembered(k [sha256.Size]byte, user string, st os.FileInfo, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.seen[k]
	if v == nil || v.user != user || !v.modTime.Equal(st.ModTime()) || v.size != st.Size() || now.Sub(v.lastUsed) >= credentialCacheIdle {
		return false
	}
	v.lastUsed = now
	return true
}

// remember keeps k, accepted for user under the file st as it was before
// the verification (a change since makes the next request verify again),
// forgetting the least recently used credential when the cache is full.
func (c *credentialCache) remember(k [sha256.Size]byte, user string, st os.FileInfo, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.seen[k]; !ok && len(c.seen) >= maxCachedCredentials {
		var oldest [sha256.Size]byte
		var at time.Time
		for k, v := range c.seen {
			if now.Sub(v.lastUsed) >= credentialCacheIdle || !v.modTime.Equal(st.ModTime()) || v.size != st.Size() {
				delete(c.seen, k) // stale: never granted again
				continue
			}
			if at.IsZero() || v.lastUsed.Before(at) {
				oldest, at = k, v.lastUsed
			}
		}
		if len(c.seen) >= maxCachedCredentials {
			delete(c.seen, oldest)
		}
	}
	c.seen[k] = &verifiedCredential{user: user, modTime: st.ModTime(), size: st.Size(), lastUsed: now}
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
// tokens back. A login that waited for a slot and gave up keeps its token
// spent: it held a place in the queue.
func (c *credentialCache) verify(r *http.Request, access []auth.Access) (*auth.Grant, error) {
	names := loginNames(r.RemoteAddr)
	if wait, ok := c.failed.TakeAll(names...); !ok {
		return nil, &loginRateError{retryAfter: wait}
	}
	if err := c.slots.acquire(r.Context(), names); err != nil {
		return nil, err
	}
	g, err := c.inner.Authorized(r, access...)
	c.slots.release()
	var ch auth.Challenge
	if err == nil || !errors.As(err, &ch) {
		for _, n := range names { // accepted, or not decided (file unreadable): not a refused login
			c.failed.Give(n.Key)
		}
	} else {
		c.slots.refused(names[0].Key)
	}
	return g, err
}

// The refused-logins budget of an IPv6 /56 and /48 are these multiples of
// one client's, as the ledger's write limits (ledger.Client56Scale and
// Client48Scale): one party holding a delegation gets a few clients'
// budgets, not one per /64.
const (
	login56Scale = 4
	login48Scale = 8
)

// loginNames are the buckets a login from remoteAddr is charged to: its
// client (loginClient) and, for IPv6, its /56 and /48.
func loginNames(remoteAddr string) []ratelimit.Name {
	client := loginClient(remoteAddr)
	names := []ratelimit.Name{{Key: client, Scale: 1}}
	if p, err := netip.ParsePrefix(client); err == nil && p.Addr().Is6() {
		p56, _ := p.Addr().Prefix(56)
		p48, _ := p.Addr().Prefix(48)
		names = append(names, ratelimit.Name{Key: p56.String(), Scale: login56Scale}, ratelimit.Name{Key: p48.String(), Scale: login48Scale})
	}
	return names
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
