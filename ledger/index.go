package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/notarize/docker-notarize/internal/pebblestore"
	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/transparency-dev/tessera"
	tapi "github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
)

// index is the ledger's digest index on a driver's storage.Index: it
// implements tessera.Antispam (duplicate detection by statement identity)
// and is filled by a follower that tails the integrated log, so it covers
// a prefix of the log: the first Processed() entries. A lookup filtered by
// key IDs reads only the rows of those keys, and a key lookup only the
// key's rows of the key index: statements by other keys, however many,
// cost it nothing. It keeps the position in memory with its waiters.
type index struct {
	db   storage.Index
	log  *slog.Logger
	tune storage.FollowTuning

	// verified holds the rows of the entries this process verified at
	// submission, which the follower takes instead of verifying them again
	// (ingest_verified.go); keys caches signer keys for the entries it
	// does verify.
	verified *verifiedRows
	keys     *notarize.KeyCache
	// selfDigest holds the keys whose rows about their own revocation
	// digest the follower wrote (selfrevoked.go).
	selfDigest selfDigestKeys

	processed atomic.Uint64 // the position, as last read or written by this process
	pushback  atomic.Bool   // the index is too far behind the log

	mu       sync.Mutex
	advanced chan struct{} // closed and replaced whenever processed grows, or the follower meets an outage
	outages  uint64        // follower steps failed with storage.ErrUnavailable (under mu)
	outage   error         // the last of them (under mu)
	damaged  error         // a follower step failed on a damaged store (pebblestore.ErrDamaged), which lasts (under mu)
	wake     chan struct{} // WaitProcessed wakes an idle follower (capacity 1)
	idleMax  time.Duration // the follower's longest wait while the log does not grow (followIdlePoll)

	followStarted chan struct{} // closed when Follow starts
	followDone    chan struct{} // closed when Follow returns

	// phase is what the follower is doing and since when, which a wait
	// that times out reports (a wait of 30 s for the next entry, with no
	// follower error, was seen under load and is not explained: this
	// tells a stalled step from a log that did not grow).
	phase atomic.Pointer[followPhase]
}

// followPhase is one step of the index follower's work.
type followPhase struct {
	what  string
	since time.Time
}

// setPhase records what the follower does from now.
func (s *index) setPhase(format string, args ...any) {
	s.phase.Store(&followPhase{what: fmt.Sprintf(format, args...), since: time.Now()})
}

// phaseText describes what the follower is doing, for a wait's error.
func (s *index) phaseText() string {
	p := s.phase.Load()
	if p == nil {
		return "follower not started"
	}
	return fmt.Sprintf("follower %s for %v", p.what, time.Since(p.since).Round(time.Millisecond))
}

var _ tessera.Antispam = (*index)(nil)

// newIndex returns the index on db, reading its position; its key cache
// keeps at most tables keys' tables (Config.KeyTables).
func newIndex(ctx context.Context, db storage.Index, logger *slog.Logger, tables int) (*index, error) {
	processed, err := db.Position(ctx)
	if err != nil {
		return nil, err
	}
	s := &index{
		db:            db,
		log:           logger,
		tune:          db.Tuning(),
		verified:      newVerifiedRows(),
		keys:          notarize.NewKeyCacheTables(0, tables),
		advanced:      make(chan struct{}),
		wake:          make(chan struct{}, 1),
		idleMax:       followIdlePoll,
		followStarted: make(chan struct{}),
		followDone:    make(chan struct{}),
	}
	s.processed.Store(processed)
	return s, nil
}

// followIdlePoll is the longest the follower waits between looks at a log
// that does not grow while nobody waits for the index (WaitProcessed wakes
// it at once): an idle ledger then reads its tree state about once a second
// instead of every tune.Poll (a 10 ms poll cost an idle ledger about 1% of
// a core).
const followIdlePoll = time.Second

// antispamPushbackAt is the follower lag (entries) at which submissions get pushback.
const antispamPushbackAt = 16384

// Page returns, in increasing order, at most n indices i with
// from <= i < below of the processed entries whose statement subject is d
// and, when keyIDs is not empty, whose signer is one of keyIDs (hex,
// without duplicates).
func (s *index) Page(ctx context.Context, d notarize.Digest, keyIDs []string, from, below uint64, n int) ([]uint64, error) {
	digest, keys, err := rawDigestAndKeys(d, keyIDs)
	if err != nil {
		return nil, fmt.Errorf("index page: %w", err)
	}
	if n <= 0 || from >= below {
		return nil, nil
	}
	out, err := s.db.Page(ctx, digest, keys, from, below, n)
	if err != nil {
		return nil, fmt.Errorf("index page: %w", err)
	}
	return out, nil
}

// Current returns, in increasing order, the index of the current
// statement about d of each of keyIDs that made one below index below:
// the greatest signed timestamp, ties broken by the greater index (as
// notarize.Current).
func (s *index) Current(ctx context.Context, d notarize.Digest, keyIDs []string, below uint64) ([]uint64, error) {
	digest, keys, err := rawDigestAndKeys(d, keyIDs)
	if err != nil {
		return nil, fmt.Errorf("index current: %w", err)
	}
	if len(keys) == 0 || below == 0 {
		return nil, nil
	}
	out, err := s.db.Current(ctx, digest, keys, below)
	if err != nil {
		return nil, fmt.Errorf("index current: %w", err)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// entries calls take with the stored bytes of each entry at indices
// (processed, increasing), in order, until take returns false. It reads
// those entries alone, never an entry bundle, so what it costs does not
// depend on the entries beside them in the log. data is take's to keep.
func (s *index) entries(ctx context.Context, indices []uint64, take func(i uint64, data []byte) bool) error {
	if len(indices) == 0 {
		return nil
	}
	if err := s.db.Entries(ctx, indices, take); err != nil {
		return fmt.Errorf("index: entry bytes: %w", err)
	}
	return nil
}

// latest returns the signed timestamp and status of the current statement
// about d of key keyID among the processed entries; ok is false if it made
// none.
func (s *index) latest(ctx context.Context, d notarize.Digest, keyID string) (time.Time, notarize.Status, bool, error) {
	digest, keys, err := rawDigestAndKeys(d, []string{keyID})
	if err != nil {
		return time.Time{}, "", false, fmt.Errorf("index latest: %w", err)
	}
	ts, code, ok, err := s.db.Latest(ctx, digest, keys[0])
	if err != nil || !ok {
		if err != nil {
			err = fmt.Errorf("index latest: %w", err)
		}
		return time.Time{}, "", false, err
	}
	return ts.Time(), storage.StatusOf(code), true, nil
}

// indexOf returns the first log index of the statement whose identity
// (notarize.Verified.Identity) is id, if it is indexed.
func (s *index) indexOf(ctx context.Context, id [32]byte) (uint64, bool, error) {
	idx, ok, err := s.db.IndexOf(ctx, id[:])
	if err != nil {
		return 0, false, fmt.Errorf("index: statement identity: %w", err)
	}
	return idx, ok, nil
}

// claimStale is how long a claim on a statement's append holds: an
// instance that died while appending blocks the statement no longer.
const claimStale = storage.ClaimStale

// claim reserves the append of the statement with identity id for this
// instance; false means another instance sharing the storage holds a
// claim younger than claimStale. release gives it up.
func (s *index) claim(ctx context.Context, id [32]byte) (bool, error) {
	won, err := s.db.Claim(ctx, id[:])
	if err != nil {
		return false, fmt.Errorf("index: claim statement: %w", err)
	}
	return won, nil
}

// release gives up a claim.
func (s *index) release(ctx context.Context, id [32]byte) error {
	if err := s.db.Release(ctx, id[:]); err != nil {
		return fmt.Errorf("index: release statement: %w", err)
	}
	return nil
}

// errBadKeyID is returned (wrapped) for a key ID that is not 64 lowercase hex characters.
var errBadKeyID = errors.New("bad key ID")

// rawDigestAndKeys decodes a digest and hex key IDs to raw SHA-256 values.
func rawDigestAndKeys(d notarize.Digest, keyIDs []string) ([]byte, [][]byte, error) {
	digest, err := hex.DecodeString(d.Hex())
	if err != nil || len(digest) != 32 || !strings.HasPrefix(string(d), "sha256:") {
		return nil, nil, fmt.Errorf("%w %q", notarize.ErrBadDigest, d)
	}
	keys := make([][]byte, len(keyIDs))
	for i, id := range keyIDs {
		k, err := hex.DecodeString(id)
		if err != nil || len(k) != 32 || id != strings.ToLower(id) {
			return nil, nil, fmt.Errorf("%w %q", errBadKeyID, id)
		}
		keys[i] = k
	}
	return digest, keys, nil
}

// Processed returns how many log entries, from index 0, have been indexed.
func (s *index) Processed() uint64 { return s.processed.Load() }

// WaitProcessed blocks until Processed() >= n or ctx is done.
func (s *index) WaitProcessed(ctx context.Context, n uint64) error {
	return s.wait(ctx, n, false)
}

// waitIndexed is WaitProcessed for a submission whose entry is logged and
// published: it also gives up, with an error wrapping ErrUnavailable, once
// the follower fails on an outage of the storage (a database that went
// down) after the wait began. The client is then told to retry at once,
// instead of waiting out the outage for a receipt; its retry, once the
// storage is back, is answered as a duplicate of the logged entry. (Eight
// writers waiting here while MariaDB restarted got no 503 for 4.9 s:
// TestMySQLDatabaseRestart, TestWaitIndexedFailsOnOutage.)
func (s *index) waitIndexed(ctx context.Context, n uint64) error {
	return s.wait(ctx, n, true)
}

// wait waits until the index has processed n entries, or ctx ends, or the
// follower failed on a damaged store; with failOnOutage, also until the
// follower fails on a storage outage after the wait began.
func (s *index) wait(ctx context.Context, n uint64, failOnOutage bool) error {
	s.mu.Lock()
	start := s.outages
	s.mu.Unlock()
	for {
		s.mu.Lock()
		ch, outages, outage, damaged := s.advanced, s.outages, s.outage, s.damaged
		s.mu.Unlock()
		if s.processed.Load() >= n {
			return nil
		}
		if damaged != nil { // no wait ends otherwise: every waiter is told at once
			return fmt.Errorf("wait for index to reach %d (at %d): %w", n, s.processed.Load(), damaged)
		}
		if failOnOutage && outages > start {
			return fmt.Errorf("wait for index to reach %d (at %d): %w", n, s.processed.Load(), outage)
		}
		select { // the follower may be idling (Follow): look now
		case s.wake <- struct{}{}:
		default:
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for index to reach %d (at %d; %s): %w", n, s.processed.Load(), s.phaseText(), ctx.Err())
		case <-ch:
		}
	}
}

// failed records a follower step that failed on an outage of the storage
// or a damaged store, and wakes the waiters (waitIndexed gives up on it;
// on a damaged store, every later wait fails at once).
func (s *index) failed(err error) {
	s.mu.Lock()
	s.outages++
	s.outage = err
	if errors.Is(err, pebblestore.ErrDamaged) {
		s.damaged = err
	}
	close(s.advanced)
	s.advanced = make(chan struct{})
	s.mu.Unlock()
}

// advance records a position at least as far as the known one and wakes
// WaitProcessed callers.
func (s *index) advance(n uint64) {
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

// identityKey is the context key under which Submit hands the statement
// identity of the entry it adds to Decorator.
type identityKey struct{}

// withIdentity returns ctx carrying the statement identity of the entry
// about to be added. Ledger.future alone calls it, right after it looked
// the identity up in the index and found nothing.
func withIdentity(ctx context.Context, id [32]byte) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// Decorator implements tessera.Antispam: an entry whose statement identity
// (notarize.Verified.Identity: key ID and signed payload, not the entry's
// bytes) is already in the log resolves to its existing index (IsDup)
// without being added. The identity comes from Submit through the context;
// an entry added without one is parsed and verified here.
//
// On an index this process alone writes (storage.FollowTuning.SoleWriter)
// an entry Submit hands over is not looked up again: Submit looked after
// taking the identity's slot in Ledger.pending, and nothing can have
// indexed it since. The follower indexes what Tessera appended, and every
// other submission of the identity waits on that slot, which is given up
// once the entry is indexed or, when the submission failed after its
// append, once the append is recorded until the index covers it
// (Ledger.unresolved, which join hands the next submission; red team 23).
// The second read was 1.8 % of the ledger's CPU under 1,024 clients. With
// MySQL another instance may append the statement between the two reads,
// so it is read again there, after the claim (the check that follows the
// lock).
func (s *index) Decorator() func(tessera.AddFn) tessera.AddFn {
	return func(next tessera.AddFn) tessera.AddFn {
		return func(ctx context.Context, e *tessera.Entry) tessera.IndexFuture {
			if s.pushback.Load() {
				return func() (tessera.Index, error) { return tessera.Index{}, tessera.ErrPushbackAntispam }
			}
			id, ok := ctx.Value(identityKey{}).([32]byte)
			if ok && s.tune.SoleWriter {
				return next(ctx, e)
			}
			if !ok {
				id = [32]byte(indexEntry(e.Data()).ID)
			}
			idx, ok, err := s.db.IndexOf(ctx, id[:])
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

// Follower implements tessera.Antispam. The follower computes statement
// identities itself (see indexEntry); Tessera's identity hasher, a hash of
// the entry's bytes, is not used.
func (s *index) Follower(func(bundle []byte) ([][]byte, error)) tessera.Follower {
	return &indexFollower{s: s}
}

// started is closed once the follower runs.
func (s *index) started() <-chan struct{} { return s.followStarted }

// stop waits for the follower to return (cancel its context first); it
// returns promptly once its context is cancelled.
func (s *index) stop() {
	select {
	case <-s.followStarted:
		<-s.followDone
	default:
	}
}

// indexFollower tails the integrated log into an index.
type indexFollower struct {
	s *index
}

// Name implements tessera.Follower.
func (f *indexFollower) Name() string { return f.s.tune.Name }

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
	backoff, idle := tune.Poll, tune.Poll
	for {
		before := f.s.processed.Load()
		caughtUp, err := f.step(ctx, lr)
		if ctx.Err() != nil {
			return
		}
		wait := tune.Poll
		if err != nil {
			f.s.log.Log(ctx, tune.ErrLevel, "index follower", slog.Any("error", err), slog.Duration("retry_in", backoff))
			if errors.Is(err, storage.ErrUnavailable) || errors.Is(err, pebblestore.ErrDamaged) {
				// An outage, or a damaged store that no retry mends:
				// the submissions waiting for the index are answered
				// at once rather than at their receipt timeout.
				f.s.failed(err)
			}
			wait, backoff = backoff, min(2*backoff, tune.MaxBackoff)
		} else {
			backoff = tune.Poll
			// While the log does not grow, look at it less and less often,
			// up to idleMax; a waiter (WaitProcessed) wakes the follower.
			if f.s.processed.Load() == before {
				wait, idle = idle, min(2*idle, max(tune.Poll, f.s.idleMax))
			} else {
				idle = tune.Poll
			}
		}
		if caughtUp || err != nil {
			wake := f.s.wake
			if err != nil {
				wake = nil // waiters do not cut a retry backoff short
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			case <-wake:
				t.Stop()
				idle = tune.Poll
			}
		}
	}
}

// indexEntry parses and verifies a stored entry for the index. Entries were
// verified when submitted; one that no longer verifies (a foreign log, or
// rules made stricter since) keeps the SHA-256 of its bytes as identity, so
// that an exact replay is still a duplicate, and is in no lookup.
func indexEntry(data []byte) storage.Row {
	f, err := verifiedEntry(data, nil)
	if err != nil {
		return unverifiedRow(data)
	}
	return f
}

// unverifiedRow is the index row of an entry that does not verify: the
// SHA-256 of its bytes as identity, in no lookup.
func unverifiedRow(data []byte) storage.Row {
	h := sha256.Sum256(data)
	return storage.Row{ID: h[:], Data: data}
}

// verifiedEntry parses data strictly and checks its signature
// (VerifyLogged, with signer keys from keys, which may be nil), and
// returns its index row.
func verifiedEntry(data []byte, keys *notarize.KeyCache) (storage.Row, error) {
	e, err := notarize.ParseEntry(data)
	if err != nil {
		return storage.Row{}, err
	}
	v, err := e.VerifyLoggedWith(keys)
	if err != nil {
		return storage.Row{}, err
	}
	f, err := rowOf(v)
	f.Data = data
	return f, err
}

// rowOf returns the index row of a verified entry.
func rowOf(v *notarize.Verified) (storage.Row, error) {
	digest, err := hex.DecodeString(v.Statement.Digest().Hex())
	if err != nil || len(digest) != 32 {
		return storage.Row{}, fmt.Errorf("%w: subject digest %q", notarize.ErrBadDigest, v.Statement.Digest())
	}
	key, err := hex.DecodeString(v.KeyID)
	if err != nil || len(key) != 32 {
		return storage.Row{}, fmt.Errorf("%w: key ID %q", errBadKeyID, v.KeyID)
	}
	id := v.Identity()
	return storage.Row{
		ID:     id[:],
		Digest: digest,
		KeyID:  key,
		Stamp:  storage.StampOf(v.Statement.Predicate.Timestamp),
		Status: storage.StatusCode(v.Statement.Predicate.Status),
	}, nil
}

// step indexes up to tune.maxBatch entries in one write and reports whether
// the index has caught up with the integrated tree. Losing the race to
// another instance sharing the database is not an error.
func (f *indexFollower) step(ctx context.Context, lr tessera.LogReader) (bool, error) {
	f.s.setPhase("reading the log's integrated size")
	size, err := lr.IntegratedSize(ctx)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("integrated size: %w", err)
	}
	f.s.setPhase("reading the index's position (log size %d)", size)
	next, err := f.s.db.Position(ctx)
	if err != nil {
		return false, err
	}
	f.s.advance(next)
	if next > size {
		return false, fmt.Errorf("index is ahead of the log: processed %d, log size %d", next, size)
	}
	if next == size {
		f.s.pushback.Store(false)
		f.s.setPhase("caught up with the log's %d integrated entries", size)
		return true, nil
	}
	f.s.pushback.Store(size-next > antispamPushbackAt)
	n := min(size-next, f.s.tune.MaxBatch)
	f.s.setPhase("reading entries [%d, %d) of %d", next, next+n, size)
	batch, err := readIndexEntries(ctx, lr, f.s.log, next, n, size, f.s.tune.MaxBytes, f.s.verified, f.s.keys)
	if err != nil {
		return false, err
	}
	n = uint64(len(batch))
	f.s.selfDigest.add(batch) // before the write: selfrevoked.go
	f.s.setPhase("writing entries [%d, %d)", next, next+n)
	won, err := f.s.db.Write(ctx, next, batch)
	if err != nil {
		return false, fmt.Errorf("index entries [%d, %d): %w", next, next+n, err)
	}
	if !won {
		return false, nil // another instance indexed them; read the new position
	}
	f.s.advance(next + n)
	return next+n == size, nil
}

// readIndexEntries returns the index rows of entries [from, from+n) of a
// log of the given integrated size, or of a prefix of them whose bytes add
// up to at most maxBytes (at least one entry). Each entry is parsed and its
// signature checked (see indexEntry), with signer keys from keys, unless
// verified (which may be nil) holds the row of its exact bytes: this
// process checked them when they were submitted.
func readIndexEntries(ctx context.Context, lr tessera.LogReader, logger *slog.Logger, from, n, size uint64, maxBytes int,
	verified *verifiedRows, keys *notarize.KeyCache) ([]storage.Row, error) {
	out := make([]storage.Row, 0, n)
	var skipped []uint64 // entries that do not verify, logged once per batch
	var firstErr error
	defer func() {
		if len(skipped) > 0 {
			logger.WarnContext(ctx, "index: entries do not verify; they are left out of lookups",
				slog.Int("count", len(skipped)), slog.Any("first_indices", skipped[:min(len(skipped), 10)]),
				slog.Any("first_error", firstErr))
		}
	}()
	total := 0
	for ri := range layout.Range(from, n, size) {
		if len(out) > 0 && total >= maxBytes {
			break
		}
		raw, err := lr.ReadEntryBundle(ctx, ri.Index, ri.Partial)
		if err != nil {
			return nil, fmt.Errorf("read entry bundle %d: %w", ri.Index, err)
		}
		var eb tapi.EntryBundle
		if err := eb.UnmarshalText(raw); err != nil {
			return nil, fmt.Errorf("entry bundle %d: %w", ri.Index, err)
		}
		end := ri.First + ri.N
		if uint(len(eb.Entries)) < end {
			return nil, fmt.Errorf("entry bundle %d holds %d entries, want at least %d", ri.Index, len(eb.Entries), end)
		}
		for i := ri.First; i < end; i++ {
			if total += len(eb.Entries[i]); len(out) > 0 && total > maxBytes {
				return out, nil
			}
			if fe, ok := verified.row(eb.Entries[i]); ok {
				out = append(out, fe)
				continue
			}
			fe, err := verifiedEntry(eb.Entries[i], keys)
			if err != nil {
				// Only verified entries are added, so this is a foreign
				// log or an entry older than a stricter rule; keep going
				// so that exact replays are still caught.
				// Map roots (vindex.go) are no statements either, as expected.
				if firstErr == nil && !notarize.IsMapRoot(eb.Entries[i]) {
					firstErr = err
				}
				if !notarize.IsMapRoot(eb.Entries[i]) {
					skipped = append(skipped, ri.Index*layout.EntryBundleWidth+uint64(i))
				}
				fe = unverifiedRow(eb.Entries[i])
			}
			out = append(out, fe)
		}
	}
	return out, nil
}
