package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/notarize/docker-notarize/internal/ratelimit"
)

// Red team: unauthenticated CPU exhaustion through the htpasswd check.
// Every refused Basic credential costs a bcrypt verification (distribution
// verifies a dummy hash for unknown users too), ~100 ms of CPU at the
// default cost, and refusals are never remembered; nothing bounds how many
// one client may make. About 20 wrong guesses a second from one anonymous
// client keep both cores of this machine busy, and every honest pull
// (cached blobs included) waits for CPU. A client past a few failures
// should be refused without bcrypt (429, or 401 without verification)
// for a while.
func TestRedTeamFailedLoginsCostBcryptUnbounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	h, err := bcrypt.GenerateFromPassword([]byte("pw-a"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("alice:"+string(h)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ac, err := AuthConfig{Htpasswd: &HtpasswdAuth{Path: path}}.accessController()
	if err != nil {
		t.Fatal(err)
	}
	cache := ac.(*credentialCache)
	inner := &countingController{AccessController: cache.inner}
	cache.inner = inner
	// A stopped clock: the budget refills at 5 a second, and 200 bcrypt
	// verifications on a loaded machine take long enough to earn them all.
	stopped := time.Now()
	cache.now = func() time.Time { return stopped }
	const attempts = 200
	for i := range attempts {
		r, _ := http.NewRequest(http.MethodGet, "http://proxy/v2/", nil)
		r.RemoteAddr = "198.51.100.7:40000"
		r.SetBasicAuth(fmt.Sprintf("user%d", i%3), fmt.Sprintf("guess%d", i))
		if _, err := cache.Authorized(r); err == nil {
			t.Fatal("a guess was accepted")
		}
	}
	if n := inner.n.Load(); n > attempts/4 {
		t.Errorf("BYPASS (DoS): %d wrong guesses from one anonymous client cost %d bcrypt verifications; nothing bounds them", attempts, n)
	}
}

// TestFailedLoginBudget: each client (IPv4 address or IPv6 /64) has a
// budget of refused logins (failedLoginBurst, then failedLoginRate a
// second); past it a login is refused with 429 and Retry-After before any
// bcrypt, while credentials already verified keep working, other clients
// are not affected, and accepted logins do not spend the budget.
func TestFailedLoginBudget(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	h, err := bcrypt.GenerateFromPassword([]byte("pw-a"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("alice:"+string(h)+"\n"), 0o600); err != nil {
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
	try := func(addr, user, pw string) (verified bool, err error) {
		t.Helper()
		r, _ := http.NewRequest(http.MethodGet, "http://proxy/v2/", nil)
		r.RemoteAddr = addr
		r.SetBasicAuth(user, pw)
		before := inner.n.Load()
		_, err = cache.Authorized(r)
		return inner.n.Load() != before, err
	}
	limited := func(err error) bool {
		var le *loginRateError
		return errors.As(err, &le)
	}

	if _, err := try("198.51.100.7:1", "alice", "pw-a"); err != nil {
		t.Fatalf("alice: %v", err)
	}
	for i := range failedLoginBurst {
		if v, err := try("198.51.100.7:2", "alice", fmt.Sprint("guess", i)); !v || err == nil || limited(err) {
			t.Fatalf("guess %d within the budget: verified=%v, %v", i, v, err)
		}
	}
	v, err := try("198.51.100.7:3", "alice", "one more")
	var le *loginRateError
	if v || !errors.As(err, &le) || le.retryAfterHeader() != "1" {
		t.Fatalf("past the budget: verified=%v, %v; want a 429 refusal without bcrypt, Retry-After 1", v, err)
	}
	if v, err := try("198.51.100.7:4", "alice", "pw-a"); v || err != nil {
		t.Fatalf("alice's remembered credentials from the limited address: verified=%v, %v", v, err)
	}
	if v, err := try("203.0.113.9:1", "alice", "guess"); !v || limited(err) {
		t.Fatalf("another client: verified=%v, %v", v, err)
	}

	// IPv6: one /64 is one client.
	for i := range failedLoginBurst {
		if v, err := try(fmt.Sprintf("[2001:db8:1:2::%x]:1", i+1), "alice", "guess"); !v || limited(err) {
			t.Fatalf("IPv6 guess %d: verified=%v, %v", i, v, err)
		}
	}
	if v, err := try("[2001:db8:1:2:ffff::1]:1", "alice", "guess"); v || !limited(err) {
		t.Fatalf("another address of the same /64: verified=%v, %v", v, err)
	}
	if v, err := try("[2001:db8:1:3::1]:1", "alice", "guess"); !v || limited(err) {
		t.Fatalf("another /64: verified=%v, %v", v, err)
	}

	// The budget refills at failedLoginRate.
	clock = clock.Add(time.Second)
	for i := range int(failedLoginRate) {
		if v, err := try("198.51.100.7:5", "alice", "guess"); !v || limited(err) {
			t.Fatalf("refilled guess %d: verified=%v, %v", i, v, err)
		}
	}
	if _, err := try("198.51.100.7:5", "alice", "guess"); !limited(err) {
		t.Fatalf("past the refill: %v", err)
	}

	// Accepted logins give their token back: a client that logs in
	// (uncached: the file changed each time) keeps its whole budget.
	for i := range 2 * failedLoginBurst {
		future := time.Now().Add(time.Duration(i+1) * time.Hour)
		if err := os.Chtimes(path, future, future); err != nil {
			t.Fatal(err)
		}
		if v, err := try("192.0.2.1:1", "alice", "pw-a"); !v || err != nil {
			t.Fatalf("login %d: verified=%v, %v", i, v, err)
		}
	}
	for i := range failedLoginBurst {
		if _, err := try("192.0.2.1:1", "alice", "guess"); limited(err) {
			t.Fatalf("guess %d after accepted logins: %v", i, err)
		}
	}
}

// TestBcryptSlots: no more than bcryptSlots() verifications run at once; a
// login that finds every slot taken waits (for its own context), and one
// that gives up keeps its client's token spent: it held a place in the
// queue (red team 6, F5: guesses given back when their wait ended cost the
// flood nothing).
func TestBcryptSlots(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, []byte("alice:$2y$04$invalidinvalidinvalidinvalidinvalidinvalidinvalidinval\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ac, err := AuthConfig{Htpasswd: &HtpasswdAuth{Path: path}}.accessController()
	if err != nil {
		t.Fatal(err)
	}
	cache := ac.(*credentialCache)
	inner := &countingController{AccessController: cache.inner}
	cache.inner = inner
	for range bcryptSlots() { // every slot busy
		if err := cache.slots.acquire(t.Context(), loginNames("192.0.2.1:1")); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	r, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://proxy/v2/", nil)
	r.RemoteAddr = "198.51.100.7:1"
	r.SetBasicAuth("alice", "guess")
	done := make(chan error, 1)
	go func() {
		_, err := cache.Authorized(r)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("a login waiting for a slot, canceled: %v", err)
	}
	if n := inner.n.Load(); n != 0 {
		t.Fatalf("%d verifications while every slot was busy", n)
	}
	for i := range failedLoginBurst - 1 {
		if wait, ok := cache.failed.Take("198.51.100.7"); !ok {
			t.Fatalf("refused login %d of the burst: more than one token spent by one queued login (wait %v)", i, wait)
		}
	}
	if _, ok := cache.failed.Take("198.51.100.7"); ok {
		t.Fatalf("the client's whole burst is left after a queued guess gave up: its token was given back")
	}
}

// TestLoginLimiterBounded: the buckets kept are bounded; clients beyond
// the bound share one bucket, and refilled buckets are dropped.
func TestLoginLimiterBounded(t *testing.T) {
	clock := time.Now()
	l := ratelimit.New(failedLoginRate, failedLoginBurst, maxLoginClients, func() time.Time { return clock })
	refused := 0
	for i := range maxLoginClients + 50 {
		if _, ok := l.Take(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)); !ok {
			if i < maxLoginClients {
				t.Fatalf("client %d refused", i)
			}
			refused++
		}
	}
	if n := l.Len(); n > maxLoginClients {
		t.Fatalf("%d buckets kept, bound %d", n, maxLoginClients)
	}
	if refused != 50-failedLoginBurst {
		t.Fatalf("%d of the 50 clients past the bound refused, want %d: they share one bucket", refused, 50-failedLoginBurst)
	}
	clock = clock.Add(time.Minute) // internal/ratelimit sweeps at most once a minute
	l.Take("192.0.2.1")
	if n := l.Len(); n != 1 {
		t.Fatalf("%d buckets after every other one refilled, want 1", n)
	}
}

// TestLoginRateLimitAnswer: a refused login past the budget is answered 429
// TOOMANYREQUESTS with Retry-After.
func TestLoginRateLimitAnswer(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler)}
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
	s.refuseAuth(w, r, &loginRateError{retryAfter: 1500 * time.Millisecond})
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "2" || !strings.Contains(w.Body.String(), `"TOOMANYREQUESTS"`) {
		t.Fatalf("HTTP %d, Retry-After %q, %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
}
