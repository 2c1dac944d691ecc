package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/notarize/docker-notarize/proxy/upstream"
)

// Bounds of the work an anonymous request can make the proxy hold at once
// (red team 6, F2 and F3).
const (
	// defaultInFlightBytes is the budget of upstream answer bytes
	// (manifests, tags lists, referrers lists) held in memory at once,
	// from the moment an answer's headers say how much it will send until
	// the request that read it has answered; at least twice the largest
	// manifest allowed (Config.MaxManifestSize).
	defaultInFlightBytes = 64 << 20
	// budgetWait is how long a request waits for room in the budget or for
	// a referrers filter place before it is answered 503 with Retry-After.
	budgetWait = time.Second
	// retryAfterBusy is the Retry-After of those 503 answers, in seconds.
	retryAfterBusy = 1
	// maxReferrersFilters bounds the referrers lists fetched and judged at
	// once: each judges up to maxReferrersJudged descriptors.
	maxReferrersFilters = 4
)

// busyError is a request refused because a bound of the work in flight is
// reached: 503 UNAVAILABLE with Retry-After, the client retries.
type busyError struct {
	what string // what is full
}

func (e *busyError) Error() string {
	return fmt.Sprintf("notarize-proxy busy: %s; retry in %ds", e.what, retryAfterBusy)
}

// retryAfter sets Retry-After on w when err is a *busyError, for the 503
// that writeError makes of it.
func retryAfter(w http.ResponseWriter, err error) {
	if _, ok := asBusy(err); ok {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterBusy))
	}
}

// asBusy returns err's *busyError, if any.
func asBusy(err error) (*busyError, bool) {
	var b *busyError
	ok := errors.As(err, &b)
	return b, ok
}

// byteBudget is a weighted semaphore of bytes in memory: acquire waits up to
// budgetWait for room, then refuses with a *busyError. A single weight over
// the whole budget takes all of it (it waits for the budget to be empty).
// It is safe for concurrent use.
type byteBudget struct {
	what string
	mu   sync.Mutex
	max  int64
	used int64
	wake chan struct{} // closed and replaced by every release
}

func newByteBudget(what string, max int64) *byteBudget {
	return &byteBudget{what: what, max: max, wake: make(chan struct{})}
}

// acquire takes n bytes of the budget and returns the function that gives
// them back (idempotent). It fails with a *busyError after budgetWait, or
// with ctx's cause.
func (b *byteBudget) acquire(ctx context.Context, n int64) (func(), error) {
	b.mu.Lock()
	n = min(max(n, 1), b.max)
	b.mu.Unlock()
	timer := time.NewTimer(budgetWait)
	defer timer.Stop()
	for {
		b.mu.Lock()
		if b.used+n <= b.max {
			b.used += n
			b.mu.Unlock()
			var once sync.Once
			return func() { once.Do(func() { b.release(n) }) }, nil
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-timer.C:
			return nil, &busyError{what: fmt.Sprintf("%s: %d bytes in flight, at most %d", b.what, b.inUse(), b.max)}
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

// setMax changes the budget (tests); requests already holding bytes keep them.
func (b *byteBudget) setMax(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.max = n
	close(b.wake)
	b.wake = make(chan struct{})
}

func (b *byteBudget) release(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	close(b.wake)
	b.wake = make(chan struct{})
}

func (b *byteBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// slots is a counting semaphore whose take waits up to budgetWait, then
// refuses with a *busyError.
type slots struct {
	what string
	ch   chan struct{}
}

func newSlots(what string, n int) *slots { return &slots{what: what, ch: make(chan struct{}, n)} }

// take returns the function that gives the place back.
func (s *slots) take(ctx context.Context) (func(), error) {
	select {
	case s.ch <- struct{}{}:
		return func() { <-s.ch }, nil
	default:
	}
	timer := time.NewTimer(budgetWait)
	defer timer.Stop()
	select {
	case s.ch <- struct{}{}:
		return func() { <-s.ch }, nil
	case <-timer.C:
		return nil, &busyError{what: fmt.Sprintf("%s: %d at once", s.what, cap(s.ch))}
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// flightKey names one manifest fetch: the same reference of the same
// repository of the same upstream, asked with the same Accept list (the
// upstream may answer another manifest for another list).
type flightKey struct {
	upstream, repo, reference, accept string
}

func newFlightKey(t target, reference string, accept []string) flightKey {
	return flightKey{upstream: t.up.Name(), repo: t.repo, reference: reference, accept: strings.Join(accept, ",")}
}

// manifestFlights shares one upstream fetch between the requests that ask
// for the same manifest at once (what golang.org/x/sync/singleflight does,
// with two more rules): the fetch is detached from the request that started
// it and goes on as long as one request still waits for it (it is canceled
// when the last one leaves), and the bytes in flight it took from the
// budget are given back only when the last request that shares them has
// answered. It is safe for concurrent use.
type manifestFlights struct {
	mu    sync.Mutex
	calls map[flightKey]*flight
}

// flight is one shared fetch. m, err and release are written before done
// is closed; refs and finished are guarded by manifestFlights.mu.
type flight struct {
	key      flightKey
	done     chan struct{}
	m        *upstream.Manifest
	err      error
	release  func() // gives back the fetch's bytes of the budget; never nil once done
	cancel   context.CancelFunc
	refs     int  // requests that joined and have not left
	finished bool // done is closed
}

func newManifestFlights() *manifestFlights {
	return &manifestFlights{calls: map[flightKey]*flight{}}
}

// do returns the manifest that fetch returns for k, fetching it once for
// all the requests that ask for k while it is fetched. fetch runs with a
// context detached from ctx (values kept) and gets the function to call
// with the budget release of the bytes it holds. The caller must call the
// returned leave once it no longer uses the manifest (after answering),
// also on error.
func (g *manifestFlights) do(ctx context.Context, k flightKey, fetch func(ctx context.Context, hold func(release func())) (*upstream.Manifest, error)) (*upstream.Manifest, func(), error) {
	g.mu.Lock()
	f, ok := g.calls[k]
	if !ok {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &flight{key: k, done: make(chan struct{}), cancel: cancel}
		g.calls[k] = f
		go g.run(fctx, f, fetch)
	}
	f.refs++
	g.mu.Unlock()
	leave := sync.OnceFunc(func() { g.leave(f) })
	select {
	case <-f.done:
		return f.m, leave, f.err
	case <-ctx.Done():
		leave()
		return nil, func() {}, context.Cause(ctx)
	}
}

func (g *manifestFlights) run(ctx context.Context, f *flight, fetch func(ctx context.Context, hold func(release func())) (*upstream.Manifest, error)) {
	var release func()
	m, err := fetch(ctx, func(r func()) { release = r })
	if release == nil {
		release = func() {}
	}
	if err != nil {
		release() // an error holds no bytes
		release = func() {}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	f.m, f.err, f.release = m, err, release
	f.finished = true
	f.cancel()
	if g.calls[f.key] == f {
		delete(g.calls, f.key)
	}
	close(f.done)
	if f.refs == 0 {
		f.release()
	}
}

// leave is one request done with f: the last one out gives back the bytes
// of a finished fetch, or cancels one still running (and a request that
// comes later starts a new one).
func (g *manifestFlights) leave(f *flight) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f.refs--
	if f.refs > 0 {
		return
	}
	if f.finished {
		f.release()
		return
	}
	f.cancel()
	if g.calls[f.key] == f {
		delete(g.calls, f.key)
	}
}
