package ledger

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
)

// Index maps statement subject digests to log indices. It is filled by a
// follower that tails the integrated log, so it covers a prefix of the log:
// the first Processed() entries.
type Index interface {
	// Lookup returns, in increasing order, the indices of the processed log
	// entries whose statement subject is d.
	Lookup(ctx context.Context, d notarize.Digest) ([]uint64, error)
	// Processed returns how many log entries, from index 0, have been indexed.
	Processed() uint64
	// WaitProcessed blocks until Processed() >= n or ctx is done.
	WaitProcessed(ctx context.Context, n uint64) error
}

// store is what the ledger needs from its database: the digest index and
// Tessera antispam (duplicate detection), fed by one follower.
type store interface {
	Index
	tessera.Antispam
	// Close waits for the follower to return (cancel its context first)
	// and releases the database.
	Close() error
}

// indexDB is what an indexStore keeps in a database (bbolt or MySQL): the
// first log index of every entry identity, the log indices of every subject
// digest, and the follower's position, how many log entries are indexed.
type indexDB interface {
	// position reads the persisted follower position.
	position(ctx context.Context) (uint64, error)
	// lookup returns, in increasing order, the log indices recorded for
	// the raw SHA-256 subject digest.
	lookup(ctx context.Context, digest []byte) ([]uint64, error)
	// indexOf returns the first log index of the entry with identity hash id.
	indexOf(ctx context.Context, id []byte) (uint64, bool, error)
	// write records batch as entries [next, next+len(batch)), keeping the
	// first index of an identity, and moves the position to
	// next+len(batch), all at once. It reports false, having written
	// nothing, if the position is no longer next.
	write(ctx context.Context, next uint64, batch []followed) (bool, error)
	// close releases what the database holds, once the follower returned.
	close() error
}

// followTuning is how an indexStore's follower polls, retries and batches.
type followTuning struct {
	name       string        // the tessera.Follower name
	poll       time.Duration // how often the follower looks for new entries
	maxBackoff time.Duration // longest wait between retries after an error
	maxBatch   uint64        // entries per write
	errLevel   slog.Level    // level of the log record of a failed step
}

// antispamPushbackAt is the follower lag (entries) at which submissions get pushback.
const antispamPushbackAt = 16384

// indexStore implements store on an indexDB: the in-memory position and
// its waiters, the antispam decorator and the follower that tails the
// integrated log into the database.
type indexStore struct {
	db   indexDB
	log  *slog.Logger
	tune followTuning

	processed atomic.Uint64 // the position, as last read or written by this process
	pushback  atomic.Bool   // the index is too far behind the log

	mu       sync.Mutex
	advanced chan struct{} // closed and replaced whenever processed grows

	followStarted chan struct{} // closed when Follow starts
	followDone    chan struct{} // closed when Follow returns
}

var _ followedStore = (*indexStore)(nil)

// newIndexStore returns the store on db, whose position is processed.
func newIndexStore(db indexDB, logger *slog.Logger, tune followTuning, processed uint64) *indexStore {
	s := &indexStore{
		db:            db,
		log:           logger,
		tune:          tune,
		advanced:      make(chan struct{}),
		followStarted: make(chan struct{}),
		followDone:    make(chan struct{}),
	}
	s.processed.Store(processed)
	return s
}

// Lookup implements Index.
func (s *indexStore) Lookup(ctx context.Context, d notarize.Digest) ([]uint64, error) {
	raw, err := hex.DecodeString(d.Hex())
	if err != nil || len(raw) != 32 {
		return nil, fmt.Errorf("index lookup: %w %q", notarize.ErrBadDigest, d)
	}
	out, err := s.db.lookup(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("index lookup: %w", err)
	}
	return out, nil
}

// Processed implements Index.
func (s *indexStore) Processed() uint64 { return s.processed.Load() }

// WaitProcessed implements Index.
func (s *indexStore) WaitProcessed(ctx context.Context, n uint64) error {
	for {
		s.mu.Lock()
		ch := s.advanced
		s.mu.Unlock()
		if s.processed.Load() >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for index to reach %d (at %d): %w", n, s.processed.Load(), ctx.Err())
		case <-ch:
		}
	}
}

// advance records a position at least as far as the known one and wakes
// WaitProcessed callers.
func (s *indexStore) advance(n uint64) {
	for {
		old := s.processed.Load()
		if n <= old {
			return
		}
		if s.processed.CompareAndSwap(old, n) {
			break
		}
	}
	s.mu.Lock()
	close(s.advanced)
	s.advanced = make(chan struct{})
	s.mu.Unlock()
}

// Decorator implements tessera.Antispam: an entry whose identity is already
// in the log resolves to its existing index (IsDup) without being added.
func (s *indexStore) Decorator() func(tessera.AddFn) tessera.AddFn {
	return func(next tessera.AddFn) tessera.AddFn {
		return func(ctx context.Context, e *tessera.Entry) tessera.IndexFuture {
			if s.pushback.Load() {
				return func() (tessera.Index, error) { return tessera.Index{}, tessera.ErrPushbackAntispam }
			}
			idx, ok, err := s.db.indexOf(ctx, e.Identity())
			if err != nil {
				return func() (tessera.Index, error) { return tessera.Index{}, fmt.Errorf("antispam lookup: %w", err) }
			}
			if ok {
				return func() (tessera.Index, error) { return tessera.Index{Index: idx, IsDup: true}, nil }
			}
			return next(ctx, e)
		}
	}
}

// Follower implements tessera.Antispam. idHasher turns an entry bundle into
// the identity hashes of its entries (Tessera's, so that they match
// tessera.Entry.Identity).
func (s *indexStore) Follower(idHasher func(bundle []byte) ([][]byte, error)) tessera.Follower {
	return &indexFollower{s: s, idHasher: idHasher}
}

// started is closed once the follower runs.
func (s *indexStore) started() <-chan struct{} { return s.followStarted }

// Close implements store. The follower returns promptly once its context
// is cancelled.
func (s *indexStore) Close() error {
	select {
	case <-s.followStarted:
		<-s.followDone
	default:
	}
	return s.db.close()
}

// indexFollower tails the integrated log into an indexStore.
type indexFollower struct {
	s        *indexStore
	idHasher func([]byte) ([][]byte, error)
}

// Name implements tessera.Follower.
func (f *indexFollower) Name() string { return f.s.tune.name }

// EntriesProcessed implements tessera.Follower.
func (f *indexFollower) EntriesProcessed(context.Context) (uint64, error) {
	return f.s.processed.Load(), nil
}

// Follow implements tessera.Follower: it indexes integrated entries in
// order until ctx is done, from the persisted position.
func (f *indexFollower) Follow(ctx context.Context, lr tessera.LogReader) {
	close(f.s.followStarted) // Tessera starts each follower once
	defer close(f.s.followDone)
	tune := f.s.tune
	backoff := tune.poll
	for {
		caughtUp, err := f.step(ctx, lr)
		if ctx.Err() != nil {
			return
		}
		wait := tune.poll
		if err != nil {
			f.s.log.Log(ctx, tune.errLevel, "index follower", slog.Any("error", err), slog.Duration("retry_in", backoff))
			wait, backoff = backoff, min(2*backoff, tune.maxBackoff)
		} else {
			backoff = tune.poll
		}
		if caughtUp || err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

// followed is one log entry as the index sees it.
type followed struct {
	id     []byte
	digest []byte // raw sha256 of the subject; nil if the entry does not parse
}

// step indexes up to tune.maxBatch entries in one write and reports whether
// the index has caught up with the integrated tree. Losing the race to
// another instance sharing the database is not an error.
func (f *indexFollower) step(ctx context.Context, lr tessera.LogReader) (bool, error) {
	size, err := lr.IntegratedSize(ctx)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("integrated size: %w", err)
	}
	next, err := f.s.db.position(ctx)
	if err != nil {
		return false, err
	}
	f.s.advance(next)
	if next > size {
		return false, fmt.Errorf("index is ahead of the log: processed %d, log size %d", next, size)
	}
	if next == size {
		f.s.pushback.Store(false)
		return true, nil
	}
	f.s.pushback.Store(size-next > antispamPushbackAt)
	n := min(size-next, f.s.tune.maxBatch)
	batch, err := readIndexEntries(ctx, lr, f.idHasher, f.s.log, next, n, size)
	if err != nil {
		return false, err
	}
	won, err := f.s.db.write(ctx, next, batch)
	if err != nil {
		return false, fmt.Errorf("index entries [%d, %d): %w", next, next+n, err)
	}
	if !won {
		return false, nil // another instance indexed them; read the new position
	}
	f.s.advance(next + n)
	return next+n == size, nil
}

// readIndexEntries returns the identity hashes and subject digests of
// entries [from, from+n) of a log of the given integrated size.
func readIndexEntries(ctx context.Context, lr tessera.LogReader, idHasher func([]byte) ([][]byte, error), logger *slog.Logger, from, n, size uint64) ([]followed, error) {
	out := make([]followed, 0, n)
	for ri := range layout.Range(from, n, size) {
		raw, err := lr.ReadEntryBundle(ctx, ri.Index, ri.Partial)
		if err != nil {
			return nil, fmt.Errorf("read entry bundle %d: %w", ri.Index, err)
		}
		ids, err := idHasher(raw)
		if err != nil {
			return nil, fmt.Errorf("entry bundle %d: identities: %w", ri.Index, err)
		}
		var eb api.EntryBundle
		if err := eb.UnmarshalText(raw); err != nil {
			return nil, fmt.Errorf("entry bundle %d: %w", ri.Index, err)
		}
		end := ri.First + ri.N
		if uint(len(eb.Entries)) < end || uint(len(ids)) < end {
			return nil, fmt.Errorf("entry bundle %d holds %d entries, want at least %d", ri.Index, len(eb.Entries), end)
		}
		for i := ri.First; i < end; i++ {
			fe := followed{id: ids[i]}
			if d, err := subjectDigest(eb.Entries[i]); err != nil {
				// Only verified entries are added, so this is a bug or a
				// foreign log; keep going so duplicates are still caught.
				logger.WarnContext(ctx, "index: entry has no readable subject", slog.Uint64("index", ri.Index*layout.EntryBundleWidth+uint64(i)), slog.Any("error", err))
			} else {
				fe.digest = d
			}
			out = append(out, fe)
		}
	}
	return out, nil
}

// subjectDigest returns the raw SHA-256 subject digest of a stored entry.
// The signature was checked when the entry was submitted.
func subjectDigest(entry []byte) ([]byte, error) {
	e, err := notarize.ParseEntry(entry)
	if err != nil {
		return nil, err
	}
	payload, err := base64.StdEncoding.DecodeString(e.Envelope.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %v", notarize.ErrBadEntry, err)
	}
	st, err := notarize.ParseStatement(payload)
	if err != nil {
		return nil, err
	}
	return hex.DecodeString(st.Digest().Hex())
}
