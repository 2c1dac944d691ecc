package proxy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
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
// accepted — keyed by an HMAC under a per-process random key of the
// length-prefixed user and the password, never the password nor an unkeyed
// hash of it — while the htpasswd file is unchanged (htpasswdIdentity: on
// Linux its device, inode, change time, modification time and size, so
// that a change keeping the modification time, as cp -p, rsync -a or a
// restore make, is seen too; red team 7, W1), so removing a user or
// changing a password applies to the next request, and for at most
// credentialCacheIdle after the credential's last use. When the file
// changes every remembered credential is forgotten and a fresh htpasswd
// controller reads it (distribution's re-reads the file only when its
// modification time changes).
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
	inner    auth.AccessController // htpasswd, or a wrapper of it (tests)
	htpasswd *reloadingController
	path     string
	key      [credentialCacheKeySize]byte
	now      func() time.Time

	failed *ratelimit.Limiter
	slots  *loginSlots

	mu   sync.Mutex
	file htpasswdIdentity // what htpasswd reads: the file as it was then, or later
	seen map[[sha256.Size]byte]*verifiedCredential
}

// reloadingController is distribution's htpasswd controller, replaced by
// a fresh one (which reads the file anew) on reload.
type reloadingController struct {
	fresh func() (auth.AccessController, error)

	mu sync.Mutex
	ac auth.AccessController
}

// Authorized asks the current htpasswd controller.
func (rc *reloadingController) Authorized(r *http.Request, access ...auth.Access) (*auth.Grant, error) {
	rc.mu.Lock()
	ac := rc.ac
	rc.mu.Unlock()
	return ac.Authorized(r, access...)
}

// reload replaces the htpasswd controller by a fresh one.
func (rc *reloadingController) reload() error {
	ac, err := rc.fresh()
	if err != nil {
		return err
	}
	rc.mu.Lock()
	rc.ac = ac
	rc.mu.Unlock()
	return nil
}

// verifiedCredential is an accepted credential: its user, the htpasswd
// file it was accepted under, and when it was last used.
type verifiedCredential struct {
	user     string
	file     htpasswdIdentity
	lastUsed time.Time
}

// htpasswdIdentity names one version of the htpasswd file: a changed
// file has another identity. On Linux it is the file's device, inode,
// change time (which no user tool can set), modification time and size
// (htpasswd_identity_linux.go); elsewhere its modification time, size and
// the SHA-256 of its content.
type htpasswdIdentity struct {
	dev, ino     uint64
	ctime, mtime int64 // nanoseconds since the epoch
	size         int64
	sum          [sha256.Size]byte // zero where the change time is known
}

// htpasswdIdentityByContent is the identity of the file at path by its
// content, for systems that give no change time.
func htpasswdIdentityByContent(path string, st os.FileInfo) (htpasswdIdentity, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return htpasswdIdentity{}, fmt.Errorf("htpasswd: %w", err)
	}
	return htpasswdIdentity{mtime: st.ModTime().UnixNano(), size: int64(len(b)), sum: sha256.Sum256(b)}, nil
}

var _ auth.AccessController = (*credentialCache)(nil)

// newCredentialCache wraps inner, distribution's htpasswd controller for
// the file at path; fresh makes a new one for when the file changes.
func newCredentialCache(inner auth.AccessController, path string, fresh func() (auth.AccessController, error)) *credentialCache {
	rc := &reloadingController{fresh: fresh, ac: inner}
	c := &credentialCache{inner: rc, htpasswd: rc, path: path, now: time.Now, seen: map[[sha256.Size]byte]*verifiedCredential{}}
	c.file, _ = htpasswdIdentityOf(path) // inner reads the file at its first use, after this
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
	file, err := htpasswdIdentityOf(c.path)
	if err != nil {
		// Closed, and without the inner controller, which would open a
		// file that is not a regular one (a FIFO blocks; red team 8).
		return nil, err
	}
	if err := c.forFile(file); err != nil {
		return nil, err
	}
	k := c.credentialKey(user, password)
	now := c.now()

	if c.remembered(k, user, file, now) {
		return &auth.Grant{User: auth.UserInfo{Name: user}}, nil
	}
	g, err := c.verify(r, access)
	if err != nil {
		return nil, err
	}
	c.remember(k, user, file, now)
	return g, nil
}

// credentialKey is the HMAC of user (after its length, so that no two
// splits of one string into user and password share a key) and password.
func (c *credentialCache) credentialKey(user, password string) [sha256.Size]byte {
	mac := hmac.New(sha256.New, c.key[:])
	mac.Write(binary.BigEndian.AppendUint64(nil, uint64(len(user))))
	mac.Write([]byte(user))
	mac.Write([]byte(password))
	var k [sha256.Size]byte
	mac.Sum(k[:0])
	return k
}

// forFile readies the cache for the file as identified by file (stat
// before the verification): when the file changed since the last request,
// every remembered credential is forgotten and a fresh htpasswd controller
// reads the file, so that nothing keeps its old content.
func (c *credentialCache) forFile(file htpasswdIdentity) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if file == c.file {
		return nil
	}
	clear(c.seen)
	if err := c.htpasswd.reload(); err != nil {
		c.file = htpasswdIdentity{} // try again at the next request
		return fmt.Errorf("htpasswd: reload %s: %w", c.path, err)
	}
	c.file = file
	return nil
}

// remembered reports whether k is an accepted credential of user under
// the file as identified by file, used within credentialCacheIdle, and
// marks it used now.
func (c *credentialCache) remembered(k [sha256.Size]byte, user string, file htpasswdIdentity, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.seen[k]
	if v == nil || v.user != user || v.file != file || c.file != file || now.Sub(v.lastUsed) >= credentialCacheIdle {
		return false
	}
	v.lastUsed = now
	return true
}

// remember keeps k, accepted for user under the file as identified by
// file before the verification (a change since makes the next request
// verify again), forgetting the least recently used credential when the
// cache is full.
func (c *credentialCache) remember(k [sha256.Size]byte, user string, file htpasswdIdentity, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.file != file {
		return // the file changed during the verification
	}
	if _, ok := c.seen[k]; !ok && len(c.seen) >= maxCachedCredentials {
		var oldest [sha256.Size]byte
		var at time.Time
		for k, v := range c.seen {
			if now.Sub(v.lastUsed) >= credentialCacheIdle || v.file != file {
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
	c.seen[k] = &verifiedCredential{user: user, file: file, lastUsed: now}
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
