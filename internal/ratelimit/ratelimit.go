// Package ratelimit keeps token buckets per name (a client address, a key,
// a key and digest) in bounded memory. It is the one rate limiter of the
// ledger's writers and the proxy's failed logins.
//
// A bucket holds up to burst tokens and earns rate tokens a second; a
// request spends one. A bucket that has refilled is the same as none, so
// idle buckets are dropped by a sweep. When the table holds max buckets and
// none is idle, further names share one overflow bucket instead of evicting
// a spent one: evicting would hand its name a fresh burst, which an
// attacker could cause at will by naming many new clients. So the limit
// fails closed, at the cost that, under such a flood, newcomers share a
// budget until the flood's buckets refill.
package ratelimit

import (
	"sync"
	"time"
)

// sweepInterval is how often idle (refilled) buckets are dropped at most;
// when the table is full, at most once a second.
const sweepInterval = time.Minute

// Limiter is a set of token buckets, one per name, with one rate and
// burst. A nil *Limiter allows everything. It is safe for concurrent use.
type Limiter struct {
	rate  float64
	burst float64
	max   int
	now   func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	overflow  bucket
	lastSweep time.Time
}

// bucket is one name's tokens as of last; its rate and burst are the
// limiter's times scale.
type bucket struct {
	tokens float64
	last   time.Time
	scale  float64
}

// New returns a limiter of rate tokens a second and burst (at least 1),
// keeping at most max (at least 1) buckets, on the clock now (time.Now
// when nil). It returns nil, which allows everything, when rate <= 0.
func New(rate float64, burst, max int, now func() time.Time) *Limiter {
	if rate <= 0 {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	t := now()
	b := float64(maxInt(burst, 1))
	return &Limiter{rate: rate, burst: b, max: maxInt(max, 1), now: now,
		buckets: map[string]*bucket{}, lastSweep: t,
		overflow: bucket{tokens: b, last: t, scale: 1}}
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// Name is a bucket's name and its scale: its rate and burst are the
// limiter's times Scale (1 when zero), e.g. wider network prefixes get a
// larger budget than one address.
type Name struct {
	Key   string
	Scale float64
}

// Take spends a token of key's bucket, or reports how long until one is
// there.
func (l *Limiter) Take(key string) (wait time.Duration, ok bool) {
	return l.TakeAll(Name{Key: key})
}

// TakeAll spends a token of each named bucket if every one has one, and
// otherwise spends none and reports how long until all will.
func (l *Limiter) TakeAll(names ...Name) (wait time.Duration, ok bool) {
	if l == nil {
		return 0, true
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var stack [4]*bucket
	bs := stack[:0]
	for _, n := range names {
		b := l.bucket(n, now)
		b.refill(now, l.rate, l.burst)
		if b.tokens < 1 {
			wait = max(wait, time.Duration((1-b.tokens)/(l.rate*b.scale)*float64(time.Second)))
		}
		bs = append(bs, b)
	}
	if wait > 0 {
		return wait, false
	}
	for _, b := range bs {
		b.tokens--
	}
	return 0, true
}

// Give returns a token taken for key, for a request that turned out not
// to count (the proxy counts only refused logins).
func (l *Limiter) Give(key string) {
	if l == nil {
		return
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) < l.max {
			return // dropped since: a new one starts full
		}
		b = &l.overflow
	}
	b.refill(now, l.rate, l.burst)
	b.tokens = min(l.burst*b.scale, b.tokens+1)
}

// Len returns how many buckets l holds (the overflow bucket aside).
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// bucket returns n's bucket, creating it, or the shared overflow bucket
// when the table is full of buckets that are not idle; l.mu is held.
func (l *Limiter) bucket(n Name, now time.Time) *bucket {
	if b, ok := l.buckets[n.Key]; ok {
		return b
	}
	full := len(l.buckets) >= l.max
	if since := now.Sub(l.lastSweep); since >= sweepInterval || full && since >= time.Second {
		l.lastSweep = now
		for k, b := range l.buckets {
			if b.refill(now, l.rate, l.burst); b.tokens >= l.burst*b.scale {
				delete(l.buckets, k)
			}
		}
		full = len(l.buckets) >= l.max
	}
	if full {
		return &l.overflow
	}
	scale := n.Scale
	if scale <= 0 {
		scale = 1
	}
	b := &bucket{tokens: l.burst * scale, last: now, scale: scale}
	l.buckets[n.Key] = b
	return b
}

// refill adds the tokens earned since b.last, at b's scale of rate and burst.
func (b *bucket) refill(now time.Time, rate, burst float64) {
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(burst*b.scale, b.tokens+dt*rate*b.scale)
		b.last = now
	}
}
