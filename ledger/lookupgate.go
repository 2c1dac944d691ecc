package ledger

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// The lookup gate bounds the lookups (API pages, current answers, key
// lookups and the public pages' views) reading the index at once, and
// shares its places among clients, so that one anonymous client cannot
// take them all from a key's owner running untrust or verify (red team 6,
// F1). A client is what the write limiter charges (clientAddr): an IPv4
// address or an IPv6 /64, its address taken from X-Forwarded-For only
// when the connection comes from a trusted proxy.
//
//   - At most maxConcurrentLookups lookups run at once; they hold at most
//     about maxConcurrentLookups × maxAnswerEstimate.
//   - Page views (the HTML pages at / and /keys/) take at most
//     lookupPagePlaces of them: the rest are a reserve for the API that
//     verify, untrust and ls use.
//   - One client holds at most lookupClientPlaces API lookups (the
//     clients' own concurrency, maxRevocationLookups, is 8) and
//     lookupClientPagePlaces page views, each counted apart, and has at
//     most twice as many waiting (a verify asks 9 at once: its current
//     lookup and 8 revocation lookups); an IPv6 /56, and a /48,
//     lookupPrefixScale times as many.
//   - Beyond its share a client borrows free places while nothing waits
//     and two shares' worth stay free for others (of the pages' places,
//     two page shares): many honest clients behind one NAT address (a CI
//     fleet) use half the idle gate, another client taking its share
//     still leaves one share free, and three addresses are needed to
//     fill the gate (four without borrowing); a borrowed place is given
//     back like any other, and a freed place goes to a lookup within its
//     share first.
//   - A lookup that finds no place free, or its client's share taken,
//     waits for one, at most lookupWait and at most lookupMaxWaiting
//     lookups at once: a place given back goes to the waiting lookup
//     that fits whose client (its /48 for IPv6) holds the fewest, the
//     oldest first among equals; a lookup finding the queue full pushes
//     out the waiting one whose client holds the most, if that is more
//     than its own client holds. A client flooding the gate from a few
//     addresses therefore only delays an honest client by about one
//     lookup's duration; from more addresses than the gate has places
//     and waiting lookups (96), each holding one, it can keep an honest
//     client's lookups refused, as any flood of that many clients can.
//   - In-process callers (no client in the context) have no share.
//
// A lookup whose client has its share waiting already, or that finds the
// queue full, or whose wait ends, is ErrUnavailable (HTTP 503 with
// Retry-After), having read nothing.
const (
	// maxConcurrentLookups bounds the lookups reading the index at once.
	maxConcurrentLookups = 32
	// lookupPagePlaces bounds the page views among them.
	lookupPagePlaces = 8
	// lookupClientPlaces bounds the API lookups one client holds within
	// its share, and half those it has waiting.
	lookupClientPlaces = 8
	// lookupClientPagePlaces bounds the page views one client holds
	// within its share, and half those it has waiting.
	lookupClientPagePlaces = 2
	// lookupPrefixScale is how many clients' shares an IPv6 /56, and a
	// /48, may hold together.
	lookupPrefixScale = 2
	// lookupMaxWaiting bounds the lookups waiting for a place.
	lookupMaxWaiting = 64
	// lookupWait bounds how long a lookup waits for a place.
	lookupWait = 2 * time.Second
)

// lookupClass is what a lookup is for: the API or a public page view.
type lookupClass uint8

const (
	lookupAPI lookupClass = iota
	lookupPage
)

func (c lookupClass) String() string {
	if c == lookupPage {
		return "page view"
	}
	return "lookup"
}

// lookupLimits are the gate's bounds; zero fields take the constants
// above (tests set smaller ones).
type lookupLimits struct {
	places, pagePlaces, clientPlaces, clientPagePlaces, maxWaiting int
	wait                                                           time.Duration
}

func (b lookupLimits) withDefaults() lookupLimits {
	pick := func(v, def int) int {
		if v > 0 {
			return v
		}
		return def
	}
	b.places = pick(b.places, maxConcurrentLookups)
	b.pagePlaces = pick(b.pagePlaces, lookupPagePlaces)
	b.clientPlaces = pick(b.clientPlaces, lookupClientPlaces)
	b.clientPagePlaces = pick(b.clientPagePlaces, lookupClientPagePlaces)
	b.maxWaiting = pick(b.maxWaiting, lookupMaxWaiting)
	if b.wait <= 0 {
		b.wait = lookupWait
	}
	return b
}

// lookupGate hands out the places of lookups (see maxConcurrentLookups).
// Its zero value is ready to use, with the default bounds.
type lookupGate struct {
	limits lookupLimits // zero: the defaults; set before first use

	mu      sync.Mutex
	held    int                 // places taken
	pages   int                 // places taken by page views
	shares  map[shareKey]*share // per client (and IPv6 prefix) and class
	waiting []*lookupWaiter     // in arrival order
}

// shareKey names one client's (or IPv6 prefix's) share of one class.
type shareKey struct {
	class lookupClass
	name  string
}

// share counts the places a client holds, and the lookups it has waiting.
type share struct{ held, waiting int }

// lookupClaim is one lookup's class and the shares it is charged to,
// narrowest first; the last one ranks it for a freed place.
type lookupClaim struct {
	class lookupClass
	keys  []shareKey
	caps  []int
}

// lookupWaiter is a lookup waiting for a place; done is closed when it
// is given one (granted) or pushed out of a full queue.
type lookupWaiter struct {
	claim   lookupClaim
	done    chan struct{}
	granted bool // set under mu before done is closed
}

// lookupClientKey is the context key of a request's lookupClient.
type lookupClientKey struct{}

// lookupClient is the client of a request, as clientAddr derives it.
type lookupClient struct {
	addr netip.Addr
	name string
}

// withLookupClient puts the client of each request (clientAddr, trusting
// X-Forwarded-For only from Config.TrustedProxies) in its context, where
// the lookup gate charges it.
func (l *Ledger) withLookupClient(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr, name := clientAddr(r, l.limits.trusted)
		ctx := context.WithValue(r.Context(), lookupClientKey{}, lookupClient{addr: addr, name: name})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// enterLookup takes a place of the lookup gate for a lookup of class by
// the client of ctx, waiting for one as the gate allows; it returns the
// function that gives it back, or ErrUnavailable.
func (l *Ledger) enterLookup(ctx context.Context, class lookupClass) (func(), error) {
	return l.lookups.enter(ctx, l.lookups.claim(ctx, class))
}

// claim returns the shares a lookup of class by the client of ctx is
// charged to: none for an in-process caller (no client in ctx).
func (g *lookupGate) claim(ctx context.Context, class lookupClass) lookupClaim {
	b := g.limits.withDefaults()
	c := lookupClaim{class: class}
	lc, ok := ctx.Value(lookupClientKey{}).(lookupClient)
	if !ok {
		return c
	}
	one := b.clientPlaces
	if class == lookupPage {
		one = b.clientPagePlaces
	}
	for _, s := range sharesOf(lc) {
		c.keys = append(c.keys, shareKey{class, s.name})
		c.caps = append(c.caps, one*int(s.scale))
	}
	return c
}

// enter takes a place for c, or waits for one (see lookupWait); it
// returns the function giving the place back, or ErrUnavailable when c's
// client has its share waiting, too many lookups wait, or the wait ends.
func (g *lookupGate) enter(ctx context.Context, c lookupClaim) (func(), error) {
	b := g.limits.withDefaults()
	g.mu.Lock()
	if g.shares == nil {
		g.shares = make(map[shareKey]*share)
	}
	for i, k := range c.keys {
		if s := g.shares[k]; s != nil && s.waiting >= 2*c.caps[i] {
			held, waiting := s.held, s.waiting
			g.mu.Unlock()
			return nil, fmt.Errorf("%w: this client has %d %ss in progress and %d waiting, at most %d waiting", ErrUnavailable, held, c.class, waiting, 2*c.caps[i])
		}
	}
	if g.fits(b, c) || len(g.waiting) == 0 && g.borrows(b, c) {
		g.take(c)
		g.mu.Unlock()
		return g.leaver(c), nil
	}
	if n := len(g.waiting); n >= b.maxWaiting && !g.pushOut(c) {
		g.mu.Unlock()
		return nil, fmt.Errorf("%w: %d lookups in progress and %d waiting", ErrUnavailable, b.places, n)
	}
	w := &lookupWaiter{claim: c, done: make(chan struct{})}
	g.waiting = append(g.waiting, w)
	for _, k := range c.keys {
		g.shareOf(k).waiting++
	}
	g.mu.Unlock()

	t := time.NewTimer(b.wait)
	defer t.Stop()
	var why error
	select {
	case <-w.done:
		if w.granted {
			return g.leaver(c), nil
		}
		return nil, fmt.Errorf("%w: %d lookups in progress; the queue is full of lookups of clients holding fewer", ErrUnavailable, b.places)
	case <-t.C:
		why = fmt.Errorf("%w: %d lookups in progress; no place came free in %v", ErrUnavailable, b.places, b.wait)
	case <-ctx.Done():
		why = fmt.Errorf("%w: waiting for a lookup place: %w", ErrUnavailable, ctx.Err())
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-w.done: // granted (give the place on) or pushed out as the wait ended
		if w.granted {
			g.release(c)
		}
		return nil, why
	default:
	}
	for i, o := range g.waiting {
		if o == w {
			g.waiting = append(g.waiting[:i], g.waiting[i+1:]...)
			break
		}
	}
	for _, k := range c.keys {
		g.unshare(k, 0, 1)
	}
	return nil, why
}

// fits reports whether c may take a place now: one is free, for a page
// view one of the pages' places, and c's client holds less than its share
// (under mu).
func (g *lookupGate) fits(b lookupLimits, c lookupClaim) bool {
	if g.held >= b.places || c.class == lookupPage && g.pages >= b.pagePlaces {
		return false
	}
	for i, k := range c.keys {
		if s := g.shares[k]; s != nil && s.held >= c.caps[i] {
			return false
		}
	}
	return true
}

// borrows reports whether c may take a place beyond its client's share:
// one is free with two client shares' worth left for others (for a page
// view, of the pages' places too) (under mu).
func (g *lookupGate) borrows(b lookupLimits, c lookupClaim) bool {
	if c.class == lookupPage {
		return g.held < b.places-2*b.clientPagePlaces && g.pages < b.pagePlaces-2*b.clientPagePlaces
	}
	return g.held < b.places-2*b.clientPlaces
}

// take gives c a place (under mu).
func (g *lookupGate) take(c lookupClaim) {
	g.held++
	if c.class == lookupPage {
		g.pages++
	}
	for _, k := range c.keys {
		g.shareOf(k).held++
	}
}

// leaver returns the function giving back a place taken for c; calls
// after the first do nothing.
func (g *lookupGate) leaver(c lookupClaim) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.release(c)
		})
	}
}

// release gives back c's place and hands free places to the waiting
// lookups that fit, the one whose client holds the fewest first (under mu).
func (g *lookupGate) release(c lookupClaim) {
	g.held--
	if c.class == lookupPage {
		g.pages--
	}
	for _, k := range c.keys {
		g.unshare(k, 1, 0)
	}
	b := g.limits.withDefaults()
	for {
		best := -1
		for i, w := range g.waiting {
			if !g.fits(b, w.claim) {
				continue
			}
			if best < 0 || g.rank(w.claim) < g.rank(g.waiting[best].claim) {
				best = i
			}
		}
		if best < 0 { // none within its share: one that may borrow
			for i, w := range g.waiting {
				if g.borrows(b, w.claim) && (best < 0 || g.rank(w.claim) < g.rank(g.waiting[best].claim)) {
					best = i
				}
			}
		}
		if best < 0 {
			return
		}
		w := g.waiting[best]
		g.waiting = append(g.waiting[:best], g.waiting[best+1:]...)
		for _, k := range w.claim.keys {
			g.shareOf(k).waiting--
		}
		g.take(w.claim)
		w.granted = true
		close(w.done)
	}
}

// pushOut makes room in the full queue for c: it takes out the waiting
// lookup whose client holds the most places (the newest among equals) if
// that is more than c's client holds, so that a flood from several
// addresses cannot fill the queue against a client holding none (under
// mu). It reports whether it made room.
func (g *lookupGate) pushOut(c lookupClaim) bool {
	worst := -1
	for i, w := range g.waiting {
		if worst < 0 || g.rank(w.claim) >= g.rank(g.waiting[worst].claim) {
			worst = i
		}
	}
	if worst < 0 || g.rank(g.waiting[worst].claim) <= g.rank(c) {
		return false
	}
	w := g.waiting[worst]
	g.waiting = append(g.waiting[:worst], g.waiting[worst+1:]...)
	for _, k := range w.claim.keys {
		g.unshare(k, 0, 1)
	}
	close(w.done)
	return true
}

// rank is how many places the widest share of c holds: the fewer, the
// sooner c gets a freed place (under mu).
func (g *lookupGate) rank(c lookupClaim) int {
	if len(c.keys) == 0 {
		return 0
	}
	if s := g.shares[c.keys[len(c.keys)-1]]; s != nil {
		return s.held
	}
	return 0
}

// shareOf returns k's share, adding it (under mu).
func (g *lookupGate) shareOf(k shareKey) *share {
	s := g.shares[k]
	if s == nil {
		s = &share{}
		g.shares[k] = s
	}
	return s
}

// unshare takes held and waiting off k's share and forgets it once empty,
// so the map holds only clients with lookups in progress (under mu).
func (g *lookupGate) unshare(k shareKey, held, waiting int) {
	s := g.shares[k]
	if s == nil {
		return
	}
	s.held -= held
	s.waiting -= waiting
	if s.held <= 0 && s.waiting <= 0 {
		delete(g.shares, k)
	}
}
