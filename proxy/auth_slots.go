package proxy

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/notarize/docker-notarize/internal/ratelimit"
)

// Bounds of the queue of logins waiting for a verification slot.
const (
	// maxQueuedLogins bounds the logins one client (IPv4 address or IPv6
	// /64) has waiting for a slot; an IPv6 /56 and /48 may have
	// login56Scale and login48Scale times as many. Past it a login is 429
	// at once: a client cannot fill the queue with its budget of guesses
	// (red team 6, F5: 8 addresses kept 20 guesses queued each).
	maxQueuedLogins = 2
	// maxWaitingLogins bounds the logins waiting for a slot, all clients
	// together.
	maxWaitingLogins = 1024
	// refusedFor is how long a client whose login was refused is served
	// after the others.
	refusedFor = time.Minute
)

// loginSlots hands out the bcrypt verification slots. A freed slot goes
// to a waiting login of a client with no refused login in the last
// refusedFor, with the fewest logins waiting, the oldest among equals
// (rank): an honest user's first login waits about one verification, not
// behind every queued guess of a flood. A login waits at most
// bcryptWaitMax.
type loginSlots struct {
	now          func() time.Time
	waitingBound int // tests: the queue's bound instead of maxWaitingLogins

	mu      sync.Mutex
	free    int
	waiting []*loginWaiter
	queued  map[string]int       // waiting logins per client, /56 and /48
	refuses map[string]time.Time // last refused login per client, bounded by maxLoginClients
}

// loginWaiter is a login waiting for a slot; done is closed when it is
// given one (granted) or pushed out of a full queue.
type loginWaiter struct {
	names   []ratelimit.Name
	done    chan struct{}
	granted bool // set under mu before done is closed
}

func newLoginSlots(n int, now func() time.Time) *loginSlots {
	return &loginSlots{now: now, free: n, queued: map[string]int{}, refuses: map[string]time.Time{}}
}

// acquire takes a slot for a login charged to names (loginNames), waiting
// for one at most bcryptWaitMax; it fails with a *loginRateError when the
// client has maxQueuedLogins waiting, the queue is full or the wait ends,
// and with the request's error when ctx ends first.
func (s *loginSlots) acquire(ctx context.Context, names []ratelimit.Name) error {
	s.mu.Lock()
	if s.free > 0 && len(s.waiting) == 0 {
		s.free--
		s.mu.Unlock()
		return nil
	}
	for _, n := range names {
		if s.queued[n.Key] >= int(maxQueuedLogins*max(1, n.Scale)) {
			s.mu.Unlock()
			return &loginRateError{retryAfter: time.Second, busy: true}
		}
	}
	w := &loginWaiter{names: names, done: make(chan struct{})}
	if len(s.waiting) >= s.maxWaiting() && !s.pushOut(w) {
		s.mu.Unlock()
		return &loginRateError{retryAfter: time.Second, busy: true}
	}
	s.waiting = append(s.waiting, w)
	for _, n := range names {
		s.queued[n.Key]++
	}
	s.mu.Unlock()

	t := time.NewTimer(bcryptWaitMax)
	defer t.Stop()
	var why error
	select {
	case <-w.done:
		if w.granted {
			return nil
		}
		return &loginRateError{retryAfter: time.Second, busy: true}
	case <-t.C:
		why = &loginRateError{retryAfter: time.Second, busy: true}
	case <-ctx.Done():
		why = fmt.Errorf("waiting to verify credentials: %w", ctx.Err())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-w.done: // granted (hand the slot on) or pushed out as the wait ended
		if w.granted {
			s.releaseLocked()
		}
		return why
	default:
	}
	for i, o := range s.waiting {
		if o == w {
			s.waiting = append(s.waiting[:i], s.waiting[i+1:]...)
			break
		}
	}
	s.unqueue(w)
	return why
}

// release gives back a slot taken by acquire.
func (s *loginSlots) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseLocked()
}

// releaseLocked hands the slot to the first waiting login of a client
// with no recent refusal (as of now: a client refused while its logins
// wait goes after the others), else to the first waiting login, else
// frees it (under mu).
func (s *loginSlots) releaseLocked() {
	if len(s.waiting) == 0 {
		s.free++
		return
	}
	pick := 0
	for i, w := range s.waiting {
		if s.rank(w) < s.rank(s.waiting[pick]) {
			pick = i
		}
	}
	w := s.waiting[pick]
	s.waiting = append(s.waiting[:pick], s.waiting[pick+1:]...)
	s.unqueue(w)
	w.granted = true
	close(w.done)
}

// pushOut makes room in the full queue for w: it takes out the waiting
// login ranked last (the newest among equals) if it ranks after w, so
// that guesses from many addresses cannot fill the queue against a client
// with no refused login (under mu). It reports whether it made room.
func (s *loginSlots) pushOut(w *loginWaiter) bool {
	worst := -1
	for i, o := range s.waiting {
		if worst < 0 || s.rank(o) >= s.rank(s.waiting[worst]) {
			worst = i
		}
	}
	// w is not queued yet: its rank counts it as one of its client's.
	if worst < 0 || s.rank(s.waiting[worst]) <= s.rank(w)+1 {
		return false
	}
	o := s.waiting[worst]
	s.waiting = append(s.waiting[:worst], s.waiting[worst+1:]...)
	s.unqueue(o)
	close(o.done)
	return true
}

// maxWaiting is the bound of the queue: maxWaitingLogins, or the test's.
func (s *loginSlots) maxWaiting() int {
	if s.waitingBound > 0 {
		return s.waitingBound
	}
	return maxWaitingLogins
}

// unqueue takes w off its clients' waiting counts (under mu).
func (s *loginSlots) unqueue(w *loginWaiter) {
	for _, n := range w.names {
		if s.queued[n.Key]--; s.queued[n.Key] <= 0 {
			delete(s.queued, n.Key)
		}
	}
}

// refused records that a login of client was refused: its next logins
// wait after the others' for refusedFor. At most maxLoginClients clients
// are recorded; when the record is full of recent refusals, further
// clients are not recorded (they queue in order, within their bounds).
func (s *loginSlots) refused(client string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if _, ok := s.refuses[client]; !ok && len(s.refuses) >= maxLoginClients {
		for k, at := range s.refuses {
			if now.Sub(at) >= refusedFor {
				delete(s.refuses, k)
			}
		}
		if len(s.refuses) >= maxLoginClients {
			return
		}
	}
	s.refuses[client] = now
}

// rank orders the waiting logins for a freed slot, the lowest first (the
// oldest among equals): those of clients with no refused login within
// refusedFor, then the clients with fewer logins waiting (a client
// keeping several guesses queued goes after one asking once), under mu.
func (s *loginSlots) rank(w *loginWaiter) int {
	r := s.queued[w.names[0].Key]
	if s.refusedRecently(w.names[0].Key) {
		r += maxWaitingLogins
	}
	return r
}

// refusedRecently reports whether client had a login refused within
// refusedFor (under mu).
func (s *loginSlots) refusedRecently(client string) bool {
	at, ok := s.refuses[client]
	return ok && s.now().Sub(at) < refusedFor
}
