package ledger

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// The ledger bounds, in bytes and in time, what it holds in memory for
// answers built and not yet written: the lookup gate's places are given
// back before an answer is written, and a client that does not read would
// otherwise keep its answer in the ledger's heap for as long as it keeps
// the connection open.
//
// Inline tails (api.QueryTail, red team 7, F1). A lookup asking for the
// tail takes the bytes it may read from the tail budget before it reads
// them, and gives them back once its answer is written:
//
//   - At most maxHeldTailBytes of inline tails are held at once, and one
//     client (the lookup gate's client: an IPv4 address or an IPv6 /64)
//     holds at most clientHeldTailBytes of them; an IPv6 /56, and a /48,
//     lookupPrefixScale times as much (red team 8: the /64s of one /48
//     took the whole budget, and every other client's answers went
//     without their tails).
//   - A lookup that finds the budget, or its client's share, taken is
//     answered without the inline tail rather than refused: its client
//     fetches the tail's tiles (GET /tile/…, cacheable) as it does when
//     it did not ask, and checks them the same way.
//
// Every other answer written from memory (red team 15: 48 key lookups
// whose client did not read held 455 MiB, with no deadline): lookup
// pages and current answers past their inline tail, key lookups, tiles,
// entry bundles, the checkpoint, info and identity answers and the
// public pages take their bytes from the answer budget, shared the same
// way (maxHeldAnswerBytes, clientHeldAnswerBytes per client), from just
// before they are written until the write ends. An answer that does not
// fit is not written: the request is ErrUnavailable (503, Retry-After),
// and an honest client retries once the stalled answers' deadlines pass.
// Entry bundles on POSIX storage are streamed from their files
// (bundleOpener) and take none of it. Tiles, and entry bundles on storage
// without files (MySQL), take the most they can be (maxBundleBytes)
// before they are read, and what they are once read: past the budget they
// wait for room, up to answerWait, holding nothing meanwhile, so that a
// follower's parallel reads past its share queue behind its own (at most
// maxAnswerWaiters wait, clientAnswerWaiters per client; past those, or
// the wait, 503). Small answers (at most smallAnswerBytes: the checkpoint,
// a tile, a verify's lookups) of clients holding little (at most
// smallClientBytes) may also use a reserve beyond the total
// (smallAnswerReserve): a few addresses whose large answers are not read,
// filling the total, keep the large answers of others refused while they
// hold it, but not the small ones (review of red team 15: eight addresses
// locked everyone out, even of the checkpoint). Ending other clients'
// writes to make room was tried and dropped: a stalled reader and an
// honest slow one look alike by their size, and an attacker chooses its.
//
// Every answer written from memory is written within lookupWriteTimeout
// plus its size at lookupWriteRate; past it the connection is closed and
// the answer dropped. The deadline is per answer, not the server's: net/http
// lifts it once the answer is written.
const (
	// maxHeldTailBytes bounds the inline tails' bytes held by answers
	// built and not yet written.
	maxHeldTailBytes = 64 << 20
	// clientHeldTailBytes bounds those one client holds: four answers
	// with a full tail.
	clientHeldTailBytes = 16 << 20
	// maxHeldAnswerBytes bounds the bytes of all other answers built and
	// not yet written.
	maxHeldAnswerBytes = 256 << 20
	// clientHeldAnswerBytes bounds those one client holds: five of the
	// largest lookup pages (¾ of api.MaxAnswerSize).
	clientHeldAnswerBytes = 32 << 20
	// answerWait bounds how long a read of the log's resources (tiles,
	// entry bundles) waits for room in the answer budget before it is
	// answered 503: a client's parallel reads past its share queue.
	answerWait = 10 * time.Second
	// maxAnswerWaiters bounds the reads waiting for room at once, and
	// clientAnswerWaiters those of one client (a follower reads 8
	// bundles at once). What waits holds nothing but its connection, so
	// the first is large: a few addresses cannot take every place.
	maxAnswerWaiters    = 1024
	clientAnswerWaiters = 8
	// smallAnswerBytes, smallClientBytes and smallAnswerReserve: an
	// answer of at most smallAnswerBytes whose client then holds at most
	// smallClientBytes may use smallAnswerReserve bytes past the total.
	smallAnswerBytes   = 64 << 10
	smallClientBytes   = 1 << 20
	smallAnswerReserve = 32 << 20
	// clientBundleStreams bounds the entry bundles one client streams
	// from their files at once (a follower reads 8 at a time).
	clientBundleStreams = 16
	// lookupWriteTimeout is the time any answer has to be written.
	lookupWriteTimeout = 30 * time.Second
	// lookupWriteRate is the slowest reader a large answer waits for past
	// lookupWriteTimeout, in bytes a second: 4 MiB get another 64 s.
	lookupWriteRate = 64 << 10
)

// heldBudget hands out the bytes of answers built and not yet written,
// in all and by client: the tail budget and the answer budget (above).
// Tests set smaller bounds before first use.
type heldBudget struct {
	total, client int64         // at most held in all, and by one client's share
	writeTimeout  time.Duration // zero: lookupWriteTimeout
	writeRate     int           // zero: lookupWriteRate
	wait          time.Duration // zero: answerWait

	mu      sync.Mutex
	held    int64
	clients map[string]int64
	wake    chan struct{}  // closed by the next give, for waitShares (nil: none made)
	waiting map[string]int // waitShares calls waiting, by their client's share
	nWait   int            // all of them

	// reserve bytes past total are for answers of at most small bytes
	// whose client then holds at most smallClient (zero: no reserve).
	reserve, small, smallClient int64
}

// heldShare is one share of a heldBudget a hold is charged to: its
// client's, or the IPv6 /56 or /48 holding it, which may hold scale
// clients' shares.
type heldShare struct {
	name  string
	scale int64
}

// sharesOf returns the shares a request by lc is charged to, the client's
// own first: by the held budgets, the bundle streams and the lookup gate.
func sharesOf(lc lookupClient) []heldShare {
	shares := []heldShare{{lc.name, 1}}
	if lc.addr.Is6() {
		p56, _ := lc.addr.Prefix(56)
		p48, _ := lc.addr.Prefix(48)
		shares = append(shares, heldShare{p56.String(), lookupPrefixScale}, heldShare{p48.String(), lookupPrefixScale})
	}
	return shares
}

// take takes n bytes for client alone, or reports that they do not fit.
func (b *heldBudget) take(client string, n int64) bool {
	return b.takeShares([]heldShare{{client, 1}}, n)
}

// takeShares takes n bytes charged to each of shares, or reports that
// they do not fit.
func (b *heldBudget) takeShares(shares []heldShare, n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.takeLocked(shares, n)
}

func (b *heldBudget) takeLocked(shares []heldShare, n int64) bool {
	total, share := b.total, b.client
	if n <= b.small && b.holdsLittleLocked(shares, n) {
		total += b.reserve
	}
	if n < 0 || b.held+n > total {
		return false
	}
	for _, s := range shares {
		if b.clients[s.name]+n > share*s.scale {
			return false
		}
	}
	if b.clients == nil {
		b.clients = map[string]int64{}
	}
	b.held += n
	for _, s := range shares {
		b.clients[s.name] += n
	}
	return true
}

// holdsLittleLocked reports whether each of shares would hold at most
// smallClient (times its scale) with n more bytes: who may use the reserve.
func (b *heldBudget) holdsLittleLocked(shares []heldShare, n int64) bool {
	for _, s := range shares {
		if b.clients[s.name]+n > b.smallClient*s.scale {
			return false
		}
	}
	return true
}

// waitShares is takeShares that waits, up to wait, for n bytes to fit, as
// the holds of others (or of the client's own answers being read) are
// given back: a client's parallel reads past its share queue instead of
// being refused, and what waits holds nothing yet. At most
// maxAnswerWaiters calls wait at once, and clientAnswerWaiters for one
// client (its /64; its /56 and /48 lookupPrefixScale times as many).
// It reports whether the bytes were taken.
func (b *heldBudget) waitShares(ctx context.Context, shares []heldShare, n int64, wait time.Duration) bool {
	b.mu.Lock()
	if b.takeLocked(shares, n) {
		b.mu.Unlock()
		return true
	}
	if wait <= 0 || b.nWait >= maxAnswerWaiters {
		b.mu.Unlock()
		return false
	}
	for _, s := range shares {
		if b.waiting[s.name] >= clientAnswerWaiters*int(s.scale) {
			b.mu.Unlock()
			return false
		}
	}
	if b.waiting == nil {
		b.waiting = map[string]int{}
	}
	b.nWait++
	for _, s := range shares {
		b.waiting[s.name]++
	}
	defer func() {
		b.nWait--
		for _, s := range shares {
			if b.waiting[s.name]--; b.waiting[s.name] <= 0 {
				delete(b.waiting, s.name)
			}
		}
		b.mu.Unlock()
	}()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		if b.wake == nil {
			b.wake = make(chan struct{})
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-timer.C:
			b.mu.Lock()
			return false
		case <-ctx.Done():
			b.mu.Lock()
			return false
		}
		b.mu.Lock()
		if b.takeLocked(shares, n) {
			return true
		}
	}
}

// giveShares gives back n bytes charged to each of shares.
func (b *heldBudget) giveShares(shares []heldShare, n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held -= n
	for _, s := range shares {
		if b.clients[s.name] -= n; b.clients[s.name] <= 0 {
			delete(b.clients, s.name)
		}
	}
	if b.wake != nil {
		close(b.wake)
		b.wake = nil
	}
}

// inUse returns the bytes held, in all and by client.
func (b *heldBudget) inUse(client string) (held, byClient int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held, b.clients[client]
}

// resourceWait is how long a read of a log resource waits for room.
func (b *heldBudget) resourceWait() time.Duration {
	if b.wait > 0 {
		return b.wait
	}
	return answerWait
}

// writeDeadline is when an answer of n bytes started now must be written.
func (b *heldBudget) writeDeadline(now time.Time, n int) time.Time {
	d := b.writeTimeout
	if d <= 0 {
		d = lookupWriteTimeout
	}
	rate := b.writeRate
	if rate <= 0 {
		rate = lookupWriteRate
	}
	return now.Add(d + time.Duration(n)*time.Second/time.Duration(rate))
}

// tailHoldKey is the context key of a request's *tailHold.
type tailHoldKey struct{}

// tailHold is the part of the tail budget one answer holds, from before
// its inline tail is read until it is written. Only one goroutine (the
// request's) uses it.
type tailHold struct {
	budget *heldBudget
	shares []heldShare
	n      int64
}

// holdTails returns ctx carrying a tailHold for the client of ctx, and
// the function giving back whatever the answer still holds.
func (l *Ledger) holdTails(ctx context.Context) (context.Context, func()) {
	lc, _ := ctx.Value(lookupClientKey{}).(lookupClient)
	h := &tailHold{budget: &l.tails, shares: sharesOf(lc)}
	return context.WithValue(ctx, tailHoldKey{}, h), func() { h.keep(0) }
}

// tailHoldOf returns the tailHold of ctx, nil for an in-process caller,
// which holds its answer itself.
func tailHoldOf(ctx context.Context) *tailHold {
	h, _ := ctx.Value(tailHoldKey{}).(*tailHold)
	return h
}

// reserve takes n more bytes, or reports that they do not fit.
func (h *tailHold) reserve(n int) bool {
	if !h.budget.takeShares(h.shares, int64(n)) {
		return false
	}
	h.n += int64(n)
	return true
}

// keep gives back what the hold has past n bytes.
func (h *tailHold) keep(n int) {
	if extra := h.n - int64(n); extra > 0 {
		h.budget.giveShares(h.shares, extra)
		h.n = int64(n)
	}
}

// answerHold is the part of the answer budget one answer holds, from
// before it is read or built until it is written. Only the request's
// goroutine uses it.
type answerHold struct {
	budget *heldBudget
	shares []heldShare
	n      int64
}

// holdAnswer takes n bytes of the answer budget for r's client, waiting
// up to wait for them to fit (waitShares); past it, or with more waiting
// than allowed, the error is ErrUnavailable (503, Retry-After). A HEAD
// request, which writes no body, takes nothing.
func (l *Ledger) holdAnswer(r *http.Request, n int64, wait time.Duration) (*answerHold, error) {
	lc, _ := r.Context().Value(lookupClientKey{}).(lookupClient)
	h := &answerHold{budget: &l.answers, shares: sharesOf(lc)}
	if r.Method == http.MethodHead || n <= 0 {
		return h, nil
	}
	if !l.answers.waitShares(r.Context(), h.shares, n, wait) {
		held, byClient := l.answers.inUse(lc.name)
		return nil, fmt.Errorf("%w: %d bytes of answers not yet read by their clients (%d by this client); this answer needs %d", ErrUnavailable, held, byClient, n)
	}
	h.n = n
	return h, nil
}

// keep gives back what the hold has past n bytes.
func (h *answerHold) keep(n int64) {
	if extra := h.n - max(n, 0); extra > 0 {
		h.budget.giveShares(h.shares, extra)
		h.n -= extra
	}
}

// release gives back all the hold has.
func (h *answerHold) release() { h.keep(0) }

// writeHeld answers r with status, the headers set by header and body, an
// answer held in memory until it is written. Its bytes, less tail (those
// of its inline tail, which the tail budget holds already), are taken
// from the answer budget for r's client until the write ends
// (writeWithin). An answer that does not fit is not written: the error is
// ErrUnavailable, for the caller to answer. Answers built before they are
// charged do not wait for room, since waiting would hold them uncounted.
func (l *Ledger) writeHeld(w http.ResponseWriter, r *http.Request, status int, header func(http.Header), body []byte, tail int) error {
	h, err := l.holdAnswer(r, int64(len(body)-tail), 0)
	if err != nil {
		return err
	}
	defer h.release()
	l.writeWithin(w, r, status, header, body)
	return nil
}

// writeWithin writes the answer by its deadline (lookupWriteTimeout plus
// its size at lookupWriteRate; net/http lifts it once written).
func (l *Ledger) writeWithin(w http.ResponseWriter, r *http.Request, status int, header func(http.Header), body []byte) {
	_ = http.NewResponseController(w).SetWriteDeadline(l.answers.writeDeadline(time.Now(), len(body)))
	header(w.Header())
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
