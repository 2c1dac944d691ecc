package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
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

	"github.com/notarize/docker-notarize/notarize"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
)

// Index maps (statement subject digest, signer key ID) to log indices, with
// each statement's signed timestamp. It is filled by a follower that tails
// the integrated log, so it covers a prefix of the log: the first
// Processed() entries. A lookup filtered by key IDs reads only the rows of
// those keys: statements by other keys about the same digest, however
// many, cost it nothing.
type Index interface {
	// Page returns, in increasing order, at most n indices i with
	// from <= i < below of the processed entries whose statement subject
	// is d and, when keyIDs is not empty, whose signer is one of keyIDs
	// (hex, without duplicates).
	Page(ctx context.Context, d notarize.Digest, keyIDs []string, from, below uint64, n int) ([]uint64, error)
	// Current returns, in increasing order, the index of the current
	// statement about d of each of keyIDs that made one below index
	// below: the greatest signed timestamp, ties broken by the greater
	// index (as notarize.Current).
	Current(ctx context.Context, d notarize.Digest, keyIDs []string, below uint64) ([]uint64, error)
	// Processed returns how many log entries, from index 0, have been indexed.
	Processed() uint64
	// WaitProcessed blocks until Processed() >= n or ctx is done.
	WaitProcessed(ctx context.Context, n uint64) error
}

// store is what the ledger needs from its database: the digest index,
// each entry's bytes and Tessera antispam (duplicate detection by
// statement identity), fed by one follower.
type store interface {
	Index
	tessera.Antispam
	// entries calls take with the stored bytes of each entry at indices
	// (processed, increasing), in order, until take returns false. It
	// reads those entries alone, never an entry bundle, so what it costs
	// does not depend on the entries beside them in the log. data is
	// take's to keep.
	entries(ctx context.Context, indices []uint64, take func(i uint64, data []byte) bool) error
	// latest returns the signed timestamp and status of the current
	// statement about d of key keyID among the processed entries; ok is
	// false if it made none.
	latest(ctx context.Context, d notarize.Digest, keyID string) (ts time.Time, status notarize.Status, ok bool, err error)
	// indexOf returns the first log index of the statement whose
	// identity (notarize.Verified.Identity) is id, if it is indexed.
	indexOf(ctx context.Context, id [32]byte) (uint64, bool, error)
	// claim reserves the append of the statement with identity id for
	// this instance; false means another instance sharing the storage
	// holds a claim younger than claimStale. release gives it up.
	claim(ctx context.Context, id [32]byte) (bool, error)
	release(ctx context.Context, id [32]byte) error
	// Close waits for the follower to return (cancel its context first)
	// and releases the database.
	Close() error
}

// indexDB is what an indexStore keeps in a database (bbolt or MySQL): the
// first log index of every statement identity, the (digest, key ID, log
// index) rows of every verified entry with its signed timestamp, the bytes
// of every entry by log index, and the follower's position, how many log
// entries are indexed. Digests and key IDs are raw 32-byte SHA-256 values.
type indexDB interface {
	// position reads the persisted follower position.
	position(ctx context.Context) (uint64, error)
	// page implements Index.Page on raw digest and key IDs.
	page(ctx context.Context, digest []byte, keyIDs [][]byte, from, below uint64, n int) ([]uint64, error)
	// current returns, in any order, Index.Current's answer on raw
	// digest and key IDs.
	current(ctx context.Context, digest []byte, keyIDs [][]byte, below uint64) ([]uint64, error)
	// indexOf returns the first log index of the entry with identity hash id.
	indexOf(ctx context.Context, id []byte) (uint64, bool, error)
	// entries implements store's; an index without stored bytes is an error.
	entries(ctx context.Context, indices []uint64, take func(i uint64, data []byte) bool) error
	// latest returns the stamp and statusCode of the current statement
	// about digest of keyID (raw), if any.
	latest(ctx context.Context, digest, keyID []byte) (stamp, byte, bool, error)
	// claim and release implement store's, on a raw identity.
	claim(ctx context.Context, id []byte) (bool, error)
	release(ctx context.Context, id []byte) error
	// write records batch as entries [next, next+len(batch)), keeping the
	// first index of an identity and every entry's bytes, and moves the position to
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
	maxBytes   int           // entry bytes per write (at least one entry)
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

// Page implements Index.
func (s *indexStore) Page(ctx context.Context, d notarize.Digest, keyIDs []string, from, below uint64, n int) ([]uint64, error) {
	digest, keys, err := rawDigestAndKeys(d, keyIDs)
	if err != nil {
		return nil, fmt.Errorf("index page: %w", err)
	}
	if n <= 0 || from >= below {
		return nil, nil
	}
	out, err := s.db.page(ctx, digest, keys, from, below, n)
	if err != nil {
		return nil, fmt.Errorf("index page: %w", err)
	}
	return out, nil
}

// Current implements Index.
func (s *indexStore) Current(ctx context.Context, d notarize.Digest, keyIDs []string, below uint64) ([]uint64, error) {
	digest, keys, err := rawDigestAndKeys(d, keyIDs)
	if err != nil {
		return nil, fmt.Errorf("index current: %w", err)
	}
	if len(keys) == 0 || below == 0 {
		return nil, nil
	}
	out, err := s.db.current(ctx, digest, keys, below)
	if err != nil {
		return nil, fmt.Errorf("index current: %w", err)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// entries implements store.
func (s *indexStore) entries(ctx context.Context, indices []uint64, take func(i uint64, data []byte) bool) error {
	if len(indices) == 0 {
		return nil
	}
	if err := s.db.entries(ctx, indices, take); err != nil {
		return fmt.Errorf("index: entry bytes: %w", err)
	}
	return nil
}

// latest implements store.
func (s *indexStore) latest(ctx context.Context, d notarize.Digest, keyID string) (time.Time, notarize.Status, bool, error) {
	digest, keys, err := rawDigestAndKeys(d, []string{keyID})
	if err != nil {
		return time.Time{}, "", false, fmt.Errorf("index latest: %w", err)
	}
	ts, code, ok, err := s.db.latest(ctx, digest, keys[0])
	if err != nil || !ok {
		if err != nil {
			err = fmt.Errorf("index latest: %w", err)
		}
		return time.Time{}, "", false, err
	}
	return time.Unix(ts.seconds(), ts.nanoseconds()), statusOf(code), true, nil
}

// indexOf implements store.
func (s *indexStore) indexOf(ctx context.Context, id [32]byte) (uint64, bool, error) {
	idx, ok, err := s.db.indexOf(ctx, id[:])
	if err != nil {
		return 0, false, fmt.Errorf("index: statement identity: %w", err)
	}
	return idx, ok, nil
}

// claimStale is how long a claim on a statement's append holds: an
// instance that died while appending blocks the statement no longer.
const claimStale = receiptTimeout

// claim implements store.
func (s *indexStore) claim(ctx context.Context, id [32]byte) (bool, error) {
	won, err := s.db.claim(ctx, id[:])
	if err != nil {
		return false, fmt.Errorf("index: claim statement: %w", err)
	}
	return won, nil
}

// release implements store.
func (s *indexStore) release(ctx context.Context, id [32]byte) error {
	if err := s.db.release(ctx, id[:]); err != nil {
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

// identityKey is the context key under which Submit hands the statement
// identity of the entry it adds to Decorator.
type identityKey struct{}

// withIdentity returns ctx carrying the statement identity of the entry
// about to be added.
func withIdentity(ctx context.Context, id [32]byte) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// Decorator implements tessera.Antispam: an entry whose statement identity
// (notarize.Verified.Identity: key ID and signed payload, not the entry's
// bytes) is already in the log resolves to its existing index (IsDup)
// without being added. The identity comes from Submit through the context;
// an entry added without one is parsed and verified here.
func (s *indexStore) Decorator() func(tessera.AddFn) tessera.AddFn {
	return func(next tessera.AddFn) tessera.AddFn {
		return func(ctx context.Context, e *tessera.Entry) tessera.IndexFuture {
			if s.pushback.Load() {
				return func() (tessera.Index, error) { return tessera.Index{}, tessera.ErrPushbackAntispam }
			}
			id, ok := ctx.Value(identityKey{}).([32]byte)
			if !ok {
				id = indexEntry(e.Data()).identity()
			}
			idx, ok, err := s.db.indexOf(ctx, id[:])
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
func (s *indexStore) Follower(func(bundle []byte) ([][]byte, error)) tessera.Follower {
	return &indexFollower{s: s}
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
	s *indexStore
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
	// id is the statement identity (notarize.Verified.Identity), or the
	// SHA-256 of the entry's bytes if it does not verify.
	id []byte
	// digest and keyID are the raw SHA-256 subject digest and signer key
	// ID; both nil if the entry does not verify (it is then in no lookup).
	digest, keyID []byte
	ts            stamp // the signed timestamp
	status        byte  // statusCode of the statement's status
	// data is the entry's bytes as logged, kept for every entry so that
	// lookups and duplicate receipts never read an entry bundle.
	data []byte
}

// identity returns f.id as an array.
func (f followed) identity() [32]byte { return [32]byte(f.id) }

// stamp is a signed timestamp as index bytes that sort as the times do:
// seconds since the Unix epoch (big-endian; statements are dated 2000 to
// 9999, so positive) and nanoseconds (big-endian uint32).
type stamp [12]byte

func stampOf(t time.Time) stamp {
	var s stamp
	binary.BigEndian.PutUint64(s[:8], uint64(t.Unix()))
	binary.BigEndian.PutUint32(s[8:], uint32(t.Nanosecond()))
	return s
}

func (s stamp) seconds() int64     { return int64(binary.BigEndian.Uint64(s[:8])) }
func (s stamp) nanoseconds() int64 { return int64(binary.BigEndian.Uint32(s[8:])) }

// statusCode is how the index records a statement's status.
func statusCode(s notarize.Status) byte {
	switch s {
	case notarize.StatusTrusted:
		return 1
	case notarize.StatusUntrusted:
		return 2
	case notarize.StatusUnsupported:
		return 3
	}
	return 0
}

// statusOf is the status of a statusCode ("" for an unknown code).
func statusOf(code byte) notarize.Status {
	for _, s := range []notarize.Status{notarize.StatusTrusted, notarize.StatusUntrusted, notarize.StatusUnsupported} {
		if statusCode(s) == code {
			return s
		}
	}
	return ""
}

// indexEntry parses and verifies a stored entry for the index. Entries were
// verified when submitted; one that no longer verifies (a foreign log, or
// rules made stricter since) keeps the SHA-256 of its bytes as identity, so
// that an exact replay is still a duplicate, and is in no lookup.
func indexEntry(data []byte) followed {
	f, err := verifiedEntry(data)
	if err != nil {
		h := sha256.Sum256(data)
		return followed{id: h[:], data: data}
	}
	return f
}

func verifiedEntry(data []byte) (followed, error) {
	e, err := notarize.ParseEntry(data)
	if err != nil {
		return followed{}, err
	}
	v, err := e.VerifyLogged()
	if err != nil {
		return followed{}, err
	}
	f, err := followedOf(v)
	f.data = data
	return f, err
}

// followedOf returns the index row of a verified entry.
func followedOf(v *notarize.Verified) (followed, error) {
	digest, err := hex.DecodeString(v.Statement.Digest().Hex())
	if err != nil || len(digest) != 32 {
		return followed{}, fmt.Errorf("%w: subject digest %q", notarize.ErrBadDigest, v.Statement.Digest())
	}
	key, err := hex.DecodeString(v.KeyID)
	if err != nil || len(key) != 32 {
		return followed{}, fmt.Errorf("%w: key ID %q", errBadKeyID, v.KeyID)
	}
	id := v.Identity()
	return followed{
		id:     id[:],
		digest: digest,
		keyID:  key,
		ts:     stampOf(v.Statement.Predicate.Timestamp),
		status: statusCode(v.Statement.Predicate.Status),
	}, nil
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
	batch, err := readIndexEntries(ctx, lr, f.s.log, next, n, size, f.s.tune.maxBytes)
	if err != nil {
		return false, err
	}
	n = uint64(len(batch))
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

// readIndexEntries returns the index rows of entries [from, from+n) of a
// log of the given integrated size, or of a prefix of them whose bytes add
// up to at most maxBytes (at least one entry). Each entry is parsed and its
// signature checked (see indexEntry).
func readIndexEntries(ctx context.Context, lr tessera.LogReader, logger *slog.Logger, from, n, size uint64, maxBytes int) ([]followed, error) {
	out := make([]followed, 0, n)
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
		var eb api.EntryBundle
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
			fe, err := verifiedEntry(eb.Entries[i])
			if err != nil {
				// Only verified entries are added, so this is a foreign
				// log or an entry older than a stricter rule; keep going
				// so that exact replays are still caught.
				if firstErr == nil {
					firstErr = err
				}
				skipped = append(skipped, ri.Index*layout.EntryBundleWidth+uint64(i))
				fe = indexEntry(eb.Entries[i])
			}
			out = append(out, fe)
		}
	}
	return out, nil
}
