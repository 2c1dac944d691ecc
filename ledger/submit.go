package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/tessera"
)

// submission is one statement on its way into the log. Concurrent
// submissions of the same statement (the same identity) share the first
// one's submission, so that a statement is appended at most once however
// it is replayed.
type submission struct {
	done chan struct{} // closed once the fields below are set
	// index is the statement's log index, entry its bytes as stored there
	// and checkpoint a published checkpoint that covers it.
	index      uint64
	entry      []byte
	checkpoint []byte
	// dup is true when the statement was in the log before this submission.
	dup bool
	err error
	// earlier, when not nil, answers with the index of an append of the
	// statement whose submission failed before learning its outcome
	// (unresolved.go), as a duplicate: join sets it, under the lock that
	// gives the submission its slot.
	earlier tessera.IndexFuture
}

// Submit verifies e and appends it to the log unless the same statement
// (notarize.Verified.Identity: the same key and signed payload, whatever
// the signature bytes) is already there or on its way — in this instance,
// or in another sharing its MySQL database (a claim row) — and returns the
// receipt once a published checkpoint covers it. Receipt.Duplicate reports
// that the statement was logged before, at Receipt.Index; Receipt.Entry is
// then the entry as logged, which may carry another signature than e.
//
// A new statement is charged to its key's rate limits (Config.RateLimits)
// before it is appended; a replay is not.
func (l *Ledger) Submit(ctx context.Context, e *notarize.Entry) (*api.Receipt, error) {
	return l.submit(ctx, e, nil)
}

// submit is Submit of e, which was parsed (notarize.ParseEntry) from raw
// when raw is not nil. ParseEntry accepts only an entry's canonical bytes,
// so raw is then exactly what gets logged, and the index row established
// here for it is handed to the index follower, which then need not parse
// and verify those bytes again (verifiedRows).
func (l *Ledger) submit(ctx context.Context, e *notarize.Entry, raw []byte) (*api.Receipt, error) {
	v, data, err := l.admit(e, raw)
	if err != nil {
		return nil, fmt.Errorf("submit: %w", err)
	}
	id := v.Identity()
	sub, owner, err := l.join(id)
	if err != nil {
		return nil, fmt.Errorf("submit: %w", err)
	}
	if owner {
		var row *storage.Row
		if raw != nil { // data is raw: the bytes parsed and verified
			if r, err := rowOf(v); err == nil {
				row = &r
			}
		}
		l.append(ctx, sub, id, e, v, data, row)
	}
	select {
	case <-sub.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("submit: %w", ctx.Err())
	}
	if sub.err != nil {
		return nil, fmt.Errorf("submit: %w", sub.err)
	}
	cp, cpRaw, err := l.receiptCheckpoint(sub.checkpoint, sub.index)
	if err != nil {
		return nil, fmt.Errorf("submit: %w", err)
	}
	incl, err := l.receiptProof(ctx, cp, sub.index, sub.entry)
	if err != nil {
		return nil, fmt.Errorf("submit: %w", err)
	}
	return &api.Receipt{
		Index:          sub.index,
		Duplicate:      sub.dup || !owner,
		Entry:          sub.entry,
		Checkpoint:     string(cpRaw),
		InclusionProof: incl,
	}, nil
}

// receiptCheckpoint returns the checkpoint a receipt for the entry at
// index is proved against, and its note: raw, the published checkpoint the
// entry's append was answered with, or, when it is at least as large, the
// newest checkpoint the ledger has opened (lastCP: a published one whose
// signature parseCheckpoint verified). Receipts answered around the same
// time then name one tree size and share one proof builder (prover), which
// they otherwise rebuilt in turn, alternating between the sizes of
// consecutive checkpoints (under 1,024 clients a receipt waited ~220 ms for
// the prover). The checkpoint returned covers the entry: that is checked.
func (l *Ledger) receiptCheckpoint(raw []byte, index uint64) (*log.Checkpoint, []byte, error) {
	if last := l.lastCP.Load(); last != nil && last.cp.Size > index {
		if size, ok := statedSize(raw); ok && last.cp.Size >= size {
			return last.cp, last.raw, nil
		}
	}
	cp, err := l.parseCheckpoint(raw)
	if err != nil {
		return nil, nil, err
	}
	if cp.Size <= index {
		return nil, nil, fmt.Errorf("checkpoint of size %d does not cover entry %d", cp.Size, index)
	}
	return cp, raw, nil
}

// statedSize reads the tree size a checkpoint note states (its second
// line), without checking the note: only to compare it with a checkpoint
// that was checked.
func statedSize(raw []byte) (uint64, bool) {
	lines := bytes.SplitN(raw, []byte("\n"), 3)
	if len(lines) < 3 {
		return 0, false
	}
	size, err := strconv.ParseUint(string(lines[1]), 10, 64)
	return size, err == nil
}

// admit checks what needs no storage: the signature, the timestamp, the
// enrolment and the size. It returns the verified statement and the
// entry's canonical bytes: raw when e was parsed from raw (ParseEntry
// accepts only an entry's canonical bytes, so they are e.Marshal()'s),
// e.Marshal() when raw is nil.
func (l *Ledger) admit(e *notarize.Entry, raw []byte) (*notarize.Verified, []byte, error) {
	if l.closing.Load() {
		return nil, nil, fmt.Errorf("%w: shutting down", ErrUnavailable)
	}
	v, err := e.VerifyWith(l.store.keys)
	if err != nil {
		return nil, nil, err
	}
	if ts, limit := v.Statement.Predicate.Timestamp, time.Now().Add(l.cfg.MaxFutureSkew); ts.After(limit) {
		return nil, nil, fmt.Errorf("%w: timestamp %s is more than %v ahead of the ledger's clock",
			ErrFuture, ts.UTC().Format(time.RFC3339), l.cfg.MaxFutureSkew)
	}
	if set := l.enrolled.Load(); set != nil && len(*set) > 0 && !(*set)[v.KeyID] {
		return nil, nil, fmt.Errorf("%w: key %s", ErrNotEnrolled, v.KeyID)
	}
	if err := l.checkIdentity(v); err != nil {
		return nil, nil, err
	}
	data := raw
	if data == nil {
		if data, err = e.Marshal(); err != nil {
			return nil, nil, err
		}
	}
	if len(data) > MaxLeafSize {
		return nil, nil, fmt.Errorf("%w: canonical entry is %d bytes, at most %d", ErrTooLarge, len(data), MaxLeafSize)
	}
	return v, data, nil
}

// join returns the submission in flight for the statement identity id,
// or registers a new one that the caller owns (owner is true).
func (l *Ledger) join(id [32]byte) (sub *submission, owner bool, err error) {
	l.pendingMu.Lock()
	defer l.pendingMu.Unlock()
	if l.closing.Load() {
		return nil, false, fmt.Errorf("%w: shutting down", ErrUnavailable)
	}
	if sub, ok := l.pending[id]; ok {
		return sub, false, nil
	}
	sub = &submission{done: make(chan struct{}), earlier: l.unresolvedOf(id)}
	l.pending[id] = sub
	l.appends.Add(1) // under pendingMu with closing false: before Close waits
	return sub, true, nil
}

// finish publishes sub's outcome to everyone waiting for it. It is removed
// from the in-flight set only now: a statement appended is then in the
// index (append waits for it), so a later replay finds it there.
func (l *Ledger) finish(id [32]byte, sub *submission, cancel context.CancelFunc) {
	l.pendingMu.Lock()
	delete(l.pending, id)
	l.pendingMu.Unlock()
	close(sub.done)
	cancel()
	l.appends.Done()
}

// append does the work of the submission sub, which the caller owns, in
// the background, bounded by Config.ReceiptTimeout and by Close, so that a client
// that goes away does not fail the others waiting for the same statement.
// row, when not nil, is the index row of data's exact bytes, verified: the
// follower is handed it while the submission runs (verifiedRows), and it is
// forgotten when the submission finishes, before its slot in l.pending is
// given up; e, the entry, then counts towards its key's table when it was
// appended anew (KeyCache.Admitted). The key is remembered
// (KeyCache.Remember) only once the statement is logged, or answered as a
// replay of one logged.
func (l *Ledger) append(ctx context.Context, sub *submission, id [32]byte, e *notarize.Entry, v *notarize.Verified, data []byte, row *storage.Row) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.ReceiptTimeout)
	stop := context.AfterFunc(l.closedCtx, cancel) // Close ends the work (no goroutine per submission)
	go func() {
		defer stop()
		remembered := row != nil && l.store.verified.remember(data, *row)
		sub.err = l.logOnce(wctx, sub, id, v, data)
		if sub.err == nil {
			// Logged, or a replay of a statement logged: its key may take
			// a place in the key cache. Keys of submissions refused on the
			// way (not enrolled, rate limited, …) never do, so strangers'
			// fresh keys cannot push the signers' keys, and their
			// tables, out.
			l.store.keys.Remember(v)
		}
		if remembered {
			l.store.verified.forget(data)
			if sub.err == nil && !sub.dup {
				// A new entry, which the index follower took without
				// checking it again (it counts those it checks): towards
				// its key's table (notarize.KeyCache).
				l.store.keys.Admitted(e)
			}
		}
		l.finish(id, sub, cancel)
	}()
}

// logOnce answers a statement already logged with its index, and appends a
// new one, charged to its key's rate limits, then fills in sub.
func (l *Ledger) logOnce(ctx context.Context, sub *submission, id [32]byte, v *notarize.Verified, data []byte) error {
	future, added, done, err := l.future(ctx, sub, id, v, data)
	if err != nil {
		return err
	}
	defer done()
	err = l.await(ctx, sub, future, data)
	if err != nil && added {
		// Handed to Tessera, outcome unknown (a receipt wait that timed
		// out, a shutdown): the entry may be in the log and not yet
		// indexed once the pending slot is given up (unresolved.go).
		l.keepUnresolved(id, future)
	}
	return err
}

// claimPoll is how often an instance waiting for another one's append of
// the same statement looks for it in the index.
const claimPoll = 20 * time.Millisecond

// releaseTimeout bounds giving up a claim; one not given up expires.
const releaseTimeout = 2 * time.Second

// future returns the index future of the statement id, which sub is the
// submission of: that of an earlier append of it whose outcome its
// submission did not learn (sub.earlier), its logged index, or, once this
// instance holds the claim on its append and its key may append (it did
// not revoke itself: refuseSelfRevoked; its rate limits), that of a new
// entry, and then added is true. done releases what the append holds, once
// the entry is indexed or failed.
func (l *Ledger) future(ctx context.Context, sub *submission, id [32]byte, v *notarize.Verified, data []byte) (future tessera.IndexFuture, added bool, done func(), err error) {
	if sub.earlier != nil {
		return sub.earlier, false, func() {}, nil
	}
	for {
		idx, found, err := l.store.indexOf(ctx, id)
		if err != nil {
			return nil, false, nil, err
		}
		if found {
			dup := func() (tessera.Index, error) { return tessera.Index{Index: idx, IsDup: true}, nil }
			return dup, false, func() {}, nil
		}
		won, err := l.store.claim(ctx, id)
		if err != nil {
			return nil, false, nil, err
		}
		if won {
			break
		}
		// Another instance sharing the storage is appending it.
		select {
		case <-ctx.Done():
			return nil, false, nil, fmt.Errorf("%w: waiting for another instance to log the same statement: %v", ErrUnavailable, ctx.Err())
		case <-time.After(claimPoll):
		}
	}
	release := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		if err := l.store.release(rctx, id); err != nil {
			l.log.DebugContext(ctx, "claim not released; it expires", slog.Any("error", err), slog.Duration("after", claimStale))
		}
	}
	if err := l.refuseSelfRevoked(ctx, v); err != nil {
		release()
		return nil, false, nil, err
	}
	changes, err := l.changesCurrent(ctx, v)
	if err != nil {
		release()
		return nil, false, nil, err
	}
	if err := l.limits.allowAppend(v.KeyID, string(v.Statement.Digest()), changes); err != nil {
		release()
		l.countRateLimited(err)
		return nil, false, nil, err
	}
	select {
	case l.inflight <- struct{}{}:
	default:
		release()
		return nil, false, nil, fmt.Errorf("%w: %d submissions in flight", ErrUnavailable, maxInFlight)
	}
	// The look-up at the top of the loop ran after join took the
	// identity's slot: on a sole writer's index nothing indexed it since
	// (index.Decorator).
	future = l.add(withIdentity(ctx, id), tessera.NewEntry(data))
	return future, true, func() { <-l.inflight; release() }, nil
}

// changesCurrent reports whether v would change its key's current status
// for its digest as indexed: the key made a statement about the digest,
// v is signed later and says another status. A first statement is not a
// change (a flood of them is what the (key, digest) cap bounds).
func (l *Ledger) changesCurrent(ctx context.Context, v *notarize.Verified) (bool, error) {
	ts, status, ok, err := l.store.latest(ctx, v.Statement.Digest(), v.KeyID)
	if err != nil || !ok {
		return false, err
	}
	p := v.Statement.Predicate
	return p.Timestamp.After(ts) && p.Status != status, nil
}

// await waits for future's index and a published checkpoint covering it,
// and for the index to cover it, and fills in sub.
func (l *Ledger) await(ctx context.Context, sub *submission, future tessera.IndexFuture, data []byte) error {
	idx, cpRaw, err := l.awaiter.Await(ctx, future)
	switch {
	case err == nil:
	case errors.Is(err, tessera.ErrPushback):
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	case l.closing.Load():
		return fmt.Errorf("%w: shutting down: %v", ErrUnavailable, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return l.errNotPublished(err)
	default:
		return err
	}
	sub.index, sub.checkpoint, sub.dup, sub.entry = idx.Index, cpRaw, idx.IsDup, data
	// Once answered, the entry is a duplicate for, and found by, every
	// instance sharing the storage: wait for the index to cover it.
	if err := l.store.waitIndexed(ctx, idx.Index+1); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if idx.IsDup {
		// Another encoding or signature of the statement may be logged:
		// answer with the logged bytes, which the proof is for, read from
		// the index (never the entry bundle, which strangers may fill).
		sub.entry = nil
		err := l.store.entries(ctx, []uint64{idx.Index}, func(_ uint64, b []byte) bool {
			sub.entry = b
			return false
		})
		if err != nil {
			return err
		}
	}
	return nil
}
