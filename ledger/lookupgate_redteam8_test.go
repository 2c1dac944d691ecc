package ledger

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// grabAll takes every place the client of ctx gets without waiting.
func grabAll(t *testing.T, g *lookupGate, ctx context.Context) []func() {
	t.Helper()
	var leaves []func()
	for range maxConcurrentLookups + 1 {
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		leave, err := enterNow(g, short, lookupAPI)
		cancel()
		if err != nil {
			break
		}
		leaves = append(leaves, leave)
	}
	return leaves
}

// Red team 8: since 1afde21 one address borrows up to places-share (24)
// on an idle gate. A second address then takes its own share (8) and the
// gate is full with only TWO attacker addresses (strict shares needed
// four). An owner's verify runs 9 lookups at once (current plus 8
// revocations): 8 wait (its waiting share) and the 9th is refused at once
// with 503, although the package comment promises that a flood from a few
// addresses only delays an honest client by about one lookup's duration.
// The test fails ("DoS:") when any of the owner's 9 lookups is refused at
// once while two addresses hold what they can.
func TestRedteam8TwoAddressesFillBorrowingGate(t *testing.T) {
	g := &lookupGate{limits: lookupLimits{wait: time.Hour}}
	var attacker []func()
	for _, a := range []string{"192.0.2.1", "198.51.100.1"} {
		attacker = append(attacker, grabAll(t, g, clientCtx(t, a))...)
	}
	t.Logf("two attacker addresses hold %d of %d places", len(attacker), maxConcurrentLookups)

	owner := clientCtx(t, "203.0.113.7")
	const lookups = 9 // current + maxRevocationLookups
	var mu sync.Mutex
	var refused []error
	var granted []func()
	var wg sync.WaitGroup
	for range lookups {
		wg.Go(func() {
			leave, err := enterNow(g, owner, lookupAPI)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				refused = append(refused, err)
				return
			}
			granted = append(granted, leave)
		})
	}
	// Every lookup is either answered (granted or refused) or waiting.
	waitUntil(t, func() bool {
		g.mu.Lock()
		waiting := len(g.waiting)
		g.mu.Unlock()
		mu.Lock()
		defer mu.Unlock()
		return waiting+len(refused)+len(granted) == lookups
	})
	mu.Lock()
	bad := append([]error(nil), refused...)
	mu.Unlock()
	// Let the waiting ones through and end cleanly.
	for _, leave := range attacker {
		leave()
	}
	mu.Lock()
	early := granted
	granted = nil
	mu.Unlock()
	for _, leave := range early { // a waiting one may wait for its own client's place
		leave()
	}
	wg.Wait()
	for _, leave := range granted {
		leave()
	}
	for _, err := range bad {
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("unexpected error: %v", err)
		}
	}
	if len(bad) > 0 {
		t.Fatalf("DoS: two attacker addresses holding %d places: %d of the owner's %d concurrent lookups refused at once: %v", len(attacker), len(bad), lookups, bad[0])
	}
}
