package ledger

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/notarize/docker-notarize/internal/ratelimit"
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

// limiter is one of a ledger's rate limits: token buckets per name, all of
// one rate and burst, in bounded memory (internal/ratelimit: names past the
// bound share an overflow bucket, so a flood of new names can neither grow
// memory nor hand a spent name a fresh burst). A nil limiter allows
// everything.
type limiter struct {
	name    string // the limit's name, as in RateLimitError.Limit
	buckets *ratelimit.Limiter
}

// newLimiter returns a limiter of rate tokens per second and burst keeping
// at most max buckets, or nil (allowing everything) when rate <= 0.
func newLimiter(name string, rate float64, burst, max int, now func() time.Time) *limiter {
	b := ratelimit.New(rate, burst, max, now)
	if b == nil {
		return nil
	}
	return &limiter{name: name, buckets: b}
}

// scaled names a bucket whose rate and burst are the limiter's times scale.
type scaled = ratelimit.Name

// allow takes a token from name's bucket, or returns a *RateLimitError
// saying when one will be there. A nil limiter allows everything.
func (l *limiter) allow(name string) error {
	return l.allowAll(scaled{Key: name, Scale: 1})
}

// allowAll takes a token from each named bucket if every one has one, and
// otherwise takes none and returns a *RateLimitError saying when all will.
// A nil limiter allows everything.
func (l *limiter) allowAll(names ...scaled) error {
	if l == nil {
		return nil
	}
	if wait, ok := l.buckets.TakeAll(names...); !ok {
		return &RateLimitError{Limit: l.name, RetryAfter: wait}
	}
	return nil
}

// size returns how many buckets l holds.
func (l *limiter) size() int {
	if l == nil {
		return 0
	}
	return l.buckets.Len()
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
	return w.client.allowAll(scaled{Key: name, Scale: 1}, scaled{Key: p56.String(), Scale: Client56Scale}, scaled{Key: p48.String(), Scale: Client48Scale})
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
