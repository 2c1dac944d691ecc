package ledger

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// ErrRateLimited is returned (wrapped in a *RateLimitError) when a key or a
// client is over one of Config.RateLimits.
var ErrRateLimited = errors.New("rate limited")

// RateLimitError is a submission refused by a rate limit: Limit names it
// ("client", "key" or "key-digest"); RetryAfter is when one more would be
// allowed. It matches ErrRateLimited.
type RateLimitError struct {
	Limit      string
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("%v: %s limit reached; retry in %v", ErrRateLimited, e.Limit, e.RetryAfter.Round(time.Millisecond))
}

// Is makes a RateLimitError match ErrRateLimited.
func (e *RateLimitError) Is(target error) bool { return target == ErrRateLimited }

// retryAfterSeconds is e's Retry-After header value: whole seconds, at least 1.
func (e *RateLimitError) retryAfterSeconds() string {
	return fmt.Sprint(max(1, int64(math.Ceil(e.RetryAfter.Seconds()))))
}

// Names of the limits, as in RateLimitError.Limit and the metrics.
const (
	limitClient    = "client"
	limitKey       = "key"
	limitKeyDigest = "key-digest"
)

// limiter is a set of token buckets, one per name, with the same rate and
// burst. It keeps at most max buckets: full buckets (idle long enough to
// have refilled, the same as a new one) are dropped first, then any, so
// memory stays bounded whatever the number of names.
type limiter struct {
	name  string
	rate  float64 // tokens per second; the limiter is off when rate <= 0
	burst float64
	max   int
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

// bucket is one name's tokens as of last. Its rate and burst are the
// limiter's times scale (1 but for the wider IPv6 client prefixes).
type bucket struct {
	tokens float64
	last   time.Time
	scale  float64
}

// newLimiter returns a limiter of rate tokens per second and burst, or nil
// (allowing everything) when rate <= 0.
func newLimiter(name string, rate float64, burst, max int, now func() time.Time) *limiter {
	if rate <= 0 {
		return nil
	}
	return &limiter{name: name, rate: rate, burst: float64(max1(burst)), max: max1(max), now: now, buckets: map[string]*bucket{}}
}

func max1(n int) int { return max(n, 1) }

// allow takes a token from name's bucket, or returns a *RateLimitError
// saying when one will be there. A nil limiter allows everything.
func (l *limiter) allow(name string) error {
	return l.allowAll(scaled{name, 1})
}

// scaled names a bucket whose rate and burst are the limiter's times scale.
type scaled struct {
	name  string
	scale float64
}

// allowAll takes a token from each named bucket if every one has one, and
// otherwise takes none and returns a *RateLimitError saying when all will.
// A nil limiter allows everything.
func (l *limiter) allowAll(names ...scaled) error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	bs := make([]*bucket, len(names))
	var wait time.Duration
	for i, n := range names {
		b, ok := l.buckets[n.name]
		if !ok {
			l.makeRoom(now)
			b = &bucket{tokens: l.burst * n.scale, last: now, scale: n.scale}
			l.buckets[n.name] = b
		}
		b.refill(now, l.rate, l.burst)
		if b.tokens < 1 {
			wait = max(wait, time.Duration((1-b.tokens)/(l.rate*b.scale)*float64(time.Second)))
		}
		bs[i] = b
	}
	if wait > 0 {
		return &RateLimitError{Limit: l.name, RetryAfter: wait}
	}
	for _, b := range bs {
		b.tokens--
	}
	return nil
}

// refill adds the tokens earned since b.last, at b's scale of rate and burst.
func (b *bucket) refill(now time.Time, rate, burst float64) {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(burst*b.scale, b.tokens+dt*rate*b.scale)
	}
	b.last = now
}

// makeRoom drops buckets once the limiter holds max: the full ones, then
// arbitrary ones until a quarter is free, so that the work is amortized.
// Dropping a bucket that is not full only forgives its name some tokens.
func (l *limiter) makeRoom(now time.Time) {
	if len(l.buckets) < l.max {
		return
	}
	for name, b := range l.buckets {
		b.refill(now, l.rate, l.burst)
		if b.tokens >= l.burst*b.scale {
			delete(l.buckets, name)
		}
	}
	for name := range l.buckets {
		if len(l.buckets) <= l.max*3/4 {
			break
		}
		delete(l.buckets, name)
	}
}

// size returns how many buckets l holds.
func (l *limiter) size() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// writeLimits are a ledger's rate limits (Config.RateLimits).
type writeLimits struct {
	client, key, keyDigest *limiter
	trusted                []netip.Prefix
}

func newWriteLimits(r RateLimits, trusted []netip.Prefix, now func() time.Time) *writeLimits {
	w := &writeLimits{trusted: trusted}
	if r.Off {
		return w
	}
	w.client = newLimiter(limitClient, r.ClientPerSecond, r.ClientBurst, r.Tracked, now)
	w.key = newLimiter(limitKey, r.KeyPerSecond, r.KeyBurst, r.Tracked, now)
	burst := int(math.Ceil(r.KeyDigestPerMinute))
	w.keyDigest = newLimiter(limitKeyDigest, r.KeyDigestPerMinute/60, burst, r.Tracked, now)
	return w
}

// allowClient charges one submission to the client of r: an IPv4 address,
// or an IPv6 /64 together with its /56 and /48 (Client56Scale,
// Client48Scale). A refusal by any of them charges none.
func (w *writeLimits) allowClient(r *http.Request) error {
	if w.client == nil {
		return nil
	}
	addr, name := clientAddr(r, w.trusted)
	if !addr.Is6() {
		return w.client.allow(name)
	}
	p56, _ := addr.Prefix(56)
	p48, _ := addr.Prefix(48)
	return w.client.allowAll(scaled{name, 1}, scaled{p56.String(), Client56Scale}, scaled{p48.String(), Client48Scale})
}

// allowAppend charges one new statement to its key and to (key, digest):
// the narrower limit first, so that a refusal by it costs the key nothing.
// A statement that changes the key's current status for the digest
// (changes) is never refused by, nor charged to, the (key, digest) cap:
// statements are valid on every ledger, so anyone may post a key's
// statements copied from other ledgers and spend that cap, which must
// never delay the key's revocation. It only helps the key's holder, who
// alone can sign a change; the per-key and per-client limits still bound
// it.
func (w *writeLimits) allowAppend(keyID, digest string, changes bool) error {
	if !changes {
		if err := w.keyDigest.allow(keyID + " " + digest); err != nil {
			return err
		}
	}
	return w.key.allow(keyID)
}

// clientName returns the rate-limit name of the client of r: its IPv4
// address or IPv6 /64. The remote address is the client unless it is a
// trusted proxy; then the last X-Forwarded-For address that is not one is.
func clientName(r *http.Request, trusted []netip.Prefix) string {
	_, name := clientAddr(r, trusted)
	return name
}

// clientAddr returns the address of the client of r (invalid if r's
// remote address does not parse) and its rate-limit name (see clientName).
func clientAddr(r *http.Request, trusted []netip.Prefix) (netip.Addr, string) {
	addr := remoteAddr(r.RemoteAddr)
	if addr.IsValid() && inAny(addr, trusted) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break // a malformed hop: the last good address is the client
			}
			addr = a.Unmap()
			if !inAny(addr, trusted) {
				break
			}
		}
	}
	if !addr.IsValid() {
		return addr, r.RemoteAddr
	}
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return addr, p.String()
	}
	return addr, addr.String()
}

// remoteAddr parses the address of a request's RemoteAddr ("ip:port").
func remoteAddr(s string) netip.Addr {
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		host = s
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

func inAny(a netip.Addr, prefixes []netip.Prefix) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
