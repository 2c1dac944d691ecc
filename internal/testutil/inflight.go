package testutil

import (
	"sync"
	"time"
)

// InFlight counts the calls a test lets through at once (a front's
// requests, an index's reads) to check a concurrency bound. It holds each
// call that enters until more than Bound are in flight, or until no other
// call has entered for Idle, and then releases every call it holds. Held
// calls cannot finish, so every call the code under test starts at once is
// in flight together however fast each would have been: a test that checks
// Most() <= Bound fails whenever the code runs more than Bound at once.
// Idle only paces code that keeps the bound (its workers wait on each
// other); it cannot make the check fail.
type InFlight struct {
	// Bound is the most calls the code under test may run at once.
	Bound int
	// Idle is how long held calls wait for another call before they are
	// released.
	Idle time.Duration

	mu    sync.Mutex
	in    int
	most  int
	calls int
	held  chan struct{} // closed to release the calls held now
	timer *time.Timer
}

// Enter holds one call as described above, and returns the function the
// call runs when it finishes.
func (g *InFlight) Enter() (leave func()) {
	g.mu.Lock()
	if g.held == nil {
		g.held = make(chan struct{})
	}
	g.in++
	g.calls++
	g.most = max(g.most, g.in)
	held := g.held
	if g.timer != nil {
		g.timer.Stop()
	}
	if g.in > g.Bound {
		g.releaseLocked()
	} else {
		g.timer = time.AfterFunc(g.Idle, func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			if g.held == held {
				g.releaseLocked()
			}
		})
	}
	g.mu.Unlock()
	<-held
	return func() {
		g.mu.Lock()
		g.in--
		g.mu.Unlock()
	}
}

// releaseLocked releases the calls held now; later ones are held anew.
func (g *InFlight) releaseLocked() {
	close(g.held)
	g.held = make(chan struct{})
}

// Most returns the most calls that were in flight at once.
func (g *InFlight) Most() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.most
}

// Calls returns how many calls entered.
func (g *InFlight) Calls() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls
}
