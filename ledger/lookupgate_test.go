package ledger

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

// clientCtx is a context carrying the client of a request from addr, as
// withLookupClient puts it there.
func clientCtx(t *testing.T, addr string) context.Context {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = netip.AddrPortFrom(netip.MustParseAddr(addr), 4242).String()
	a, name := clientAddr(r, nil)
	return context.WithValue(t.Context(), lookupClientKey{}, lookupClient{addr: a, name: name})
}

// holdLookups takes n places for the client of ctx, failing the test on a
// refusal; the places are given back at the end of the test.
func holdLookups(t *testing.T, g *lookupGate, ctx context.Context, class lookupClass, n int) []func() {
	t.Helper()
	var leaves []func()
	for i := range n {
		leave, err := g.enter(ctx, g.claim(ctx, class))
		if err != nil {
			t.Fatalf("%v %d of %d refused: %v", class, i+1, n, err)
		}
		leaves = append(leaves, leave)
	}
	t.Cleanup(func() {
		for _, leave := range leaves {
			leave()
		}
	})
	return leaves
}

// enterNow tries to take a place for the client of ctx; the gate's wait
// must be short.
func enterNow(g *lookupGate, ctx context.Context, class lookupClass) (func(), error) {
	return g.enter(ctx, g.claim(ctx, class))
}

// TestLookupGateClientShare: one client holds its share of API lookups
// and borrows free places beyond it only while two shares' worth stay
// free: past that, a lookup waits even with places free, at most two
// shares' worth wait (the next is refused at once), and another client
// gets its share at once; a place given back goes to the waiting lookup. An
// IPv6 client is its /64, and the /64s of one /56 share lookupPrefixScale
// shares.
func TestLookupGateClientShare(t *testing.T) {
	g := &lookupGate{limits: lookupLimits{wait: time.Hour}}
	attacker := clientCtx(t, "192.0.2.1")
	borrowed := maxConcurrentLookups - 2*lookupClientPlaces
	waiters := 2 * lookupClientPlaces
	leaves := holdLookups(t, g, attacker, lookupAPI, borrowed)
	shortly := func(ctx context.Context) context.Context {
		ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	if _, err := enterNow(g, shortly(attacker), lookupAPI); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("lookup %d of one client, %d places free: %v, want it kept waiting", borrowed+1, maxConcurrentLookups-borrowed, err)
	}
	granted := make(chan func(), waiters)
	for range waiters {
		go func() {
			leave, err := enterNow(g, attacker, lookupAPI)
			if err != nil {
				t.Error(err)
			}
			granted <- leave
		}()
	}
	waitUntil(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.waiting) == waiters })
	start := time.Now()
	if _, err := enterNow(g, attacker, lookupAPI); !errors.Is(err, ErrUnavailable) || time.Since(start) > time.Second {
		t.Fatalf("lookup of one client with %d held and %d waiting: %v after %v, want ErrUnavailable at once", borrowed, waiters, err, time.Since(start))
	}
	var others []func()
	for i := range lookupClientPlaces {
		leave, err := enterNow(g, clientCtx(t, "192.0.2.2"), lookupAPI)
		if err != nil {
			t.Fatalf("another client's lookup %d while the first borrows all it may: %v", i+1, err)
		}
		others = append(others, leave)
	}
	for _, leave := range others {
		leave()
	}
	leaves[0]() // below the reserve line: one of the waiting lookups borrows the place
	(<-granted)()
	for _, leave := range leaves[1:] {
		leave()
	}
	for range waiters - 1 {
		(<-granted)()
	}

	// One /56: its first lookupPrefixScale /64s fill the /56's share, and
	// the gate has no place to lend beyond one share's worth.
	g = &lookupGate{limits: lookupLimits{places: lookupPrefixScale*lookupClientPlaces + 2*lookupClientPlaces, wait: time.Hour}}
	for _, a := range []string{"2001:db8:0:100::1", "2001:db8:0:101::1"} {
		holdLookups(t, g, clientCtx(t, a), lookupAPI, lookupClientPlaces)
	}
	if _, err := enterNow(g, shortly(clientCtx(t, "2001:db8:0:1ff::1")), lookupAPI); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a third /64 of a /56 holding its share, places free: %v, want it kept waiting", err)
	}
	if _, err := enterNow(g, shortly(clientCtx(t, "2001:db8:0:100::2")), lookupAPI); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("another address of a /64 holding its share: %v, want it kept waiting", err)
	}
	leave, err := enterNow(g, clientCtx(t, "2001:db8:1::1"), lookupAPI)
	if err != nil {
		t.Fatalf("a client of another /48: %v", err)
	}
	leave()
}

// TestLookupGateOneAddressUsesIdleGate: many honest clients behind one NAT
// address (a CI fleet verifying at once) are one client to the gate; on an
// idle gate it runs far more lookups at once than its share, and still
// every lookup past what it may borrow waits rather than fails (review:
// with a strict share the 17th lookup of one address was refused at once).
func TestLookupGateOneAddressUsesIdleGate(t *testing.T) {
	g := &lookupGate{limits: lookupLimits{wait: 10 * time.Second}}
	nat := clientCtx(t, "192.0.2.1")
	leaves := holdLookups(t, g, nat, lookupAPI, maxConcurrentLookups-2*lookupClientPlaces)
	got := make(chan error, 1)
	go func() {
		leave, err := enterNow(g, nat, lookupAPI)
		if err == nil {
			leave()
		}
		got <- err
	}()
	waitUntil(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.waiting) == 1 })
	leaves[0]()
	if err := <-got; err != nil {
		t.Fatalf("a waiting lookup of the one address once a borrowed place is given back: %v", err)
	}
}

// TestLookupGatePageReserve: page views take at most lookupPagePlaces
// places, and one client its share of them, or more borrowed while two
// shares' worth stay free; the API lookups of the same client still get
// places.
func TestLookupGatePageReserve(t *testing.T) {
	g := &lookupGate{limits: lookupLimits{wait: 10 * time.Millisecond}}
	one := clientCtx(t, "192.0.2.1")
	holdLookups(t, g, one, lookupPage, lookupPagePlaces-2*lookupClientPagePlaces)
	if _, err := enterNow(g, one, lookupPage); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("page view %d of one client: %v, want ErrUnavailable", lookupPagePlaces-2*lookupClientPagePlaces+1, err)
	}
	holdLookups(t, g, clientCtx(t, "198.51.100.1"), lookupPage, lookupClientPagePlaces)
	holdLookups(t, g, clientCtx(t, "198.51.100.2"), lookupPage, lookupClientPagePlaces)
	if _, err := enterNow(g, clientCtx(t, "203.0.113.9"), lookupPage); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("page view %d: %v, want ErrUnavailable", lookupPagePlaces+1, err)
	}
	// The API's reserve: every other place, also for the page flooder.
	holdLookups(t, g, one, lookupAPI, lookupClientPlaces)
	for i := 0; i < maxConcurrentLookups-lookupPagePlaces-lookupClientPlaces; i += lookupClientPlaces {
		holdLookups(t, g, clientCtx(t, netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}).String()), lookupAPI, lookupClientPlaces)
	}
	if _, err := enterNow(g, clientCtx(t, "203.0.113.200"), lookupAPI); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("lookup %d: %v, want ErrUnavailable", maxConcurrentLookups+1, err)
	}
}

// TestLookupGateFairWaiting: clients from four addresses hold every place
// and keep lookups waiting; the owner's lookup, arriving last, gets the
// first place given back, because its client holds none.
func TestLookupGateFairWaiting(t *testing.T) {
	g := &lookupGate{limits: lookupLimits{wait: 10 * time.Second}}
	var attackers []context.Context
	var leaves []func()
	for i := range maxConcurrentLookups / lookupClientPlaces {
		ctx := clientCtx(t, netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}).String())
		attackers = append(attackers, ctx)
		leaves = append(leaves, holdLookups(t, g, ctx, lookupAPI, lookupClientPlaces-1)...)
	}
	// The last places, and the attackers' waiting lookups, one each.
	filler := clientCtx(t, "198.51.100.1")
	leaves = append(leaves, holdLookups(t, g, filler, lookupAPI, maxConcurrentLookups-len(leaves))...)
	type result struct {
		who   string
		leave func()
		err   error
	}
	got := make(chan result, len(attackers)+1)
	waitFor := func(who string, ctx context.Context) {
		leave, err := enterNow(g, ctx, lookupAPI)
		got <- result{who, leave, err}
	}
	for _, ctx := range attackers {
		go waitFor("attacker", ctx)
	}
	waitUntil(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.waiting) == len(attackers) })
	go waitFor("owner", clientCtx(t, "203.0.113.7"))
	waitUntil(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.waiting) == len(attackers)+1 })

	leaves[len(leaves)-1]() // the filler gives one place back
	r := <-got
	if r.who != "owner" || r.err != nil {
		t.Fatalf("the first place given back went to the %s (%v), want the owner, whose client held none", r.who, r.err)
	}
	r.leave()
	for _, leave := range leaves[:len(leaves)-1] {
		leave()
	}
	for range attackers {
		if r := <-got; r.err != nil {
			t.Errorf("a waiting lookup once places are free: %v", r.err)
		} else {
			r.leave()
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held != 0 || len(g.shares) != 0 || len(g.waiting) != 0 {
		t.Errorf("gate after every lookup left: %d held, %d shares, %d waiting; want none", g.held, len(g.shares), len(g.waiting))
	}
}

// TestLookupGateWaitBounded: a lookup finding the gate full waits at most
// the gate's wait, then is ErrUnavailable and no longer counted; at most
// maxWaiting lookups wait at once, the next is refused at once.
func TestLookupGateWaitBounded(t *testing.T) {
	g := &lookupGate{limits: lookupLimits{places: 2, maxWaiting: 1, wait: 50 * time.Millisecond}}
	holdLookups(t, g, clientCtx(t, "192.0.2.1"), lookupAPI, 2)
	done := make(chan error, 1)
	go func() {
		_, err := enterNow(g, clientCtx(t, "192.0.2.2"), lookupAPI)
		done <- err
	}()
	waitUntil(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.waiting) == 1 })
	start := time.Now()
	if _, err := enterNow(g, clientCtx(t, "192.0.2.3"), lookupAPI); !errors.Is(err, ErrUnavailable) || time.Since(start) > time.Second {
		t.Fatalf("a lookup past maxWaiting: %v after %v, want ErrUnavailable at once", err, time.Since(start))
	}
	if err := <-done; !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a wait on a full gate: %v, want ErrUnavailable", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.waiting) != 0 || g.shares[shareKey{lookupAPI, "192.0.2.2"}] != nil {
		t.Errorf("a lookup whose wait ended is still counted: %d waiting, shares %v", len(g.waiting), g.shares)
	}
}

// TestLookupGateClientFromTrustedProxy: the gate charges the client as
// the write limiter names it: X-Forwarded-For only from a trusted proxy.
func TestLookupGateClientFromTrustedProxy(t *testing.T) {
	tl := startLedger(t, Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	seen := func(remote, xff string) string {
		var got string
		h := tl.Ledger.withLookupClient(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			c := tl.Ledger.lookups.claim(r.Context(), lookupAPI)
			if len(c.keys) > 0 {
				got = c.keys[0].name
			}
		}))
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = remote
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		return got
	}
	for _, c := range []struct{ remote, xff, want string }{
		{"192.0.2.1:1", "", "192.0.2.1"},
		{"192.0.2.1:1", "198.51.100.1", "192.0.2.1"},             // not a trusted proxy: its header is ignored
		{"10.1.2.3:1", "198.51.100.1", "198.51.100.1"},           // a trusted proxy
		{"10.1.2.3:1", "198.51.100.1, 10.9.9.9", "198.51.100.1"}, // through two
		{"[2001:db8::1]:1", "", "2001:db8::/64"},
	} {
		if got := seen(c.remote, c.xff); got != c.want {
			t.Errorf("client of %s with X-Forwarded-For %q: %q, want %q", c.remote, c.xff, got, c.want)
		}
	}
}

// waitUntil polls cond until it holds, failing the test after 10 s.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
	}
}

// TestLookupGateQueueFullPushOut: a flooding client fills the queue; a
// lookup of a client holding no place pushes out one of its waiting
// lookups (refused at once) rather than being refused, until the queue
// holds only lookups of clients holding as few as it does.
func TestLookupGateQueueFullPushOut(t *testing.T) {
	g := &lookupGate{limits: lookupLimits{places: 2, maxWaiting: 2, wait: time.Hour}}
	flood := clientCtx(t, "192.0.2.1")
	leaves := holdLookups(t, g, flood, lookupAPI, 2)
	type result struct {
		leave func()
		err   error
	}
	wait := func(ctx context.Context) <-chan result {
		ch := make(chan result, 1)
		k := g.claim(ctx, lookupAPI).keys[0]
		waiting := func() int {
			g.mu.Lock()
			defer g.mu.Unlock()
			if s := g.shares[k]; s != nil {
				return s.waiting
			}
			return 0
		}
		before := waiting()
		go func() {
			leave, err := enterNow(g, ctx, lookupAPI)
			ch <- result{leave, err}
		}()
		waitUntil(t, func() bool { return waiting() > before || len(ch) > 0 })
		return ch
	}
	floodWaits := []<-chan result{wait(flood), wait(flood)}
	owner := wait(clientCtx(t, "203.0.113.7"))
	other := wait(clientCtx(t, "203.0.113.8"))
	for i, ch := range floodWaits {
		select {
		case r := <-ch:
			if !errors.Is(r.err, ErrUnavailable) {
				t.Fatalf("flooding client's waiting lookup %d: %v, want pushed out", i, r.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("flooding client's waiting lookup %d still waits: not pushed out by clients holding none", i)
		}
	}
	if _, err := enterNow(g, clientCtx(t, "203.0.113.9"), lookupAPI); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a lookup finding the queue full of clients holding none: %v, want refused", err)
	}
	leaves[0]()
	r := <-owner
	if r.err != nil {
		t.Fatalf("the owner's waiting lookup: %v", r.err)
	}
	r.leave()
	if r := <-other; r.err != nil {
		t.Fatalf("the other client's waiting lookup: %v", r.err)
	} else {
		r.leave()
	}
}

// TestLookupGateTwoAddressesLeaveTheOwnerItsShare: one address borrowing
// all it may and a second taking its share still leave a client holding
// nothing its whole share at once, and its ninth lookup (a verify asks
// nine at once) waits for one of its places instead of being refused (red
// team 8: with one share's worth kept free, two addresses filled the gate
// and the owner's ninth lookup was refused at once).
func TestLookupGateTwoAddressesLeaveTheOwnerItsShare(t *testing.T) {
	g := &lookupGate{limits: lookupLimits{wait: 10 * time.Second}}
	a, b := clientCtx(t, "192.0.2.1"), clientCtx(t, "192.0.2.2")
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(a, 20*time.Millisecond)
		leave, err := enterNow(g, ctx, lookupAPI)
		cancel()
		if err != nil {
			break
		}
		t.Cleanup(leave)
	}
	holdLookups(t, g, b, lookupAPI, lookupClientPlaces)
	owner := clientCtx(t, "203.0.113.7")
	ctx, cancel := context.WithTimeout(owner, 50*time.Millisecond)
	defer cancel()
	var mine []func()
	for i := range lookupClientPlaces {
		leave, err := enterNow(g, ctx, lookupAPI)
		if err != nil {
			t.Fatalf("the owner's lookup %d while two addresses flood: %v, want a place at once", i+1, err)
		}
		mine = append(mine, leave)
	}
	ninth := make(chan error, 1)
	go func() {
		leave, err := enterNow(g, owner, lookupAPI)
		if err == nil {
			leave()
		}
		ninth <- err
	}()
	waitUntil(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.waiting) > 0 })
	mine[0]()
	if err := <-ninth; err != nil {
		t.Fatalf("the owner's ninth lookup once one of its places is given back: %v", err)
	}
	for _, leave := range mine[1:] {
		leave()
	}
}
