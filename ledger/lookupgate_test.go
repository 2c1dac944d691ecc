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

// TestLookupGateClientShare: one client holds at most its share of API
// lookups (the next is refused at once, without waiting) while another
// client still gets a place; an IPv6 client is its /64, and the /64s of
// one /56 share lookupPrefixScale shares.
func TestLookupGateClientShare(t *testing.T) {
	g := &lookupGate{limits: lookupLimits{wait: time.Hour}} // a wait would hang: refusals must be immediate
	attacker := clientCtx(t, "192.0.2.1")
	holdLookups(t, g, attacker, lookupAPI, lookupClientPlaces)
	if _, err := enterNow(g, attacker, lookupAPI); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("lookup %d of one client: %v, want ErrUnavailable", lookupClientPlaces+1, err)
	}
	leave, err := enterNow(g, clientCtx(t, "192.0.2.2"), lookupAPI)
	if err != nil {
		t.Fatalf("another client's lookup while the first holds its share: %v", err)
	}
	leave()

	// One /56: its first lookupPrefixScale /64s fill the /56's share.
	for _, a := range []string{"2001:db8:0:100::1", "2001:db8:0:101::1"} {
		holdLookups(t, g, clientCtx(t, a), lookupAPI, lookupClientPlaces)
	}
	if _, err := enterNow(g, clientCtx(t, "2001:db8:0:1ff::1"), lookupAPI); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a third /64 of a full /56: %v, want ErrUnavailable", err)
	}
	if _, err := enterNow(g, clientCtx(t, "2001:db8:0:100::2"), lookupAPI); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("another address of a /64 at its share: %v, want ErrUnavailable", err)
	}
}

// TestLookupGatePageReserve: page views take at most lookupPagePlaces
// places, and one client at most lookupClientPagePlaces of them; the API
// lookups of the same client still get places.
func TestLookupGatePageReserve(t *testing.T) {
	g := &lookupGate{limits: lookupLimits{wait: 10 * time.Millisecond}}
	one := clientCtx(t, "192.0.2.1")
	holdLookups(t, g, one, lookupPage, lookupClientPagePlaces)
	if _, err := enterNow(g, one, lookupPage); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("page view %d of one client: %v, want ErrUnavailable", lookupClientPagePlaces+1, err)
	}
	for i := lookupClientPagePlaces; i < lookupPagePlaces; i += lookupClientPagePlaces {
		holdLookups(t, g, clientCtx(t, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}).String()), lookupPage, lookupClientPagePlaces)
	}
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
		who string
		err error
	}
	got := make(chan result, len(attackers)+1)
	waitFor := func(who string, ctx context.Context) {
		leave, err := enterNow(g, ctx, lookupAPI)
		if err == nil {
			defer leave()
		}
		got <- result{who, err}
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
	for _, leave := range leaves[:len(leaves)-1] {
		leave()
	}
	for range attackers {
		if r := <-got; r.err != nil {
			t.Errorf("a waiting lookup once places are free: %v", r.err)
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
