package ledger

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
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
	bolt "go.etcd.io/bbolt"
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

// store is what the ledger needs from its embedded database: the digest
// index and Tessera antispam (duplicate detection), fed by one follower.
// A MySQL implementation can satisfy the same interface.
type store interface {
	Index
	tessera.Antispam
	// Close waits for the follower to return (cancel its context first)
	// and releases the database.
	Close() error
}

// bbolt layout.
var (
	bucketMeta    = []byte("meta")    // nextKey → next log index to process (uint64 BE)
	bucketIDs     = []byte("ids")     // identity hash (32 bytes) → first log index (uint64 BE)
	bucketDigests = []byte("digests") // subject sha256 (32 bytes) || log index (uint64 BE) → empty
	nextKey       = []byte("next")
)

// Follower tuning.
const (
	followPoll         = 10 * time.Millisecond // how often the follower looks for new entries
	followMaxBackoff   = 5 * time.Second       // longest wait between retries after an error
	followMaxBatch     = 4096                  // entries per bbolt transaction
	antispamPushbackAt = 16384                 // follower lag (entries) at which submissions get pushback
)

// boltStore implements store on a bbolt database.
type boltStore struct {
	db  *bolt.DB
	log *slog.Logger

	processed atomic.Uint64 // mirrors meta/next
	pushback  atomic.Bool   // the follower is too far behind

	mu       sync.Mutex
	advanced chan struct{} // closed and replaced whenever processed grows

	followStarted chan struct{} // closed when Follow starts
	followDone    chan struct{} // closed when Follow returns
}

var _ store = (*boltStore)(nil)

// openBoltStore opens (creating if needed) the index database at path.
// It fails fast if another process holds the database.
func openBoltStore(path string, logger *slog.Logger) (*boltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open index %s: in use by another process", path)
		}
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	s := &boltStore{
		db:            db,
		log:           logger,
		advanced:      make(chan struct{}),
		followStarted: make(chan struct{}),
		followDone:    make(chan struct{}),
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketIDs, bucketDigests} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if v := tx.Bucket(bucketMeta).Get(nextKey); v != nil {
			if len(v) != 8 {
				return fmt.Errorf("corrupt %q value", nextKey)
			}
			s.processed.Store(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	return s, nil
}

// Lookup implements Index.
func (s *boltStore) Lookup(_ context.Context, d notarize.Digest) ([]uint64, error) {
	prefix, err := hex.DecodeString(d.Hex())
	if err != nil || len(prefix) != 32 {
		return nil, fmt.Errorf("index lookup: %w %q", notarize.ErrBadDigest, d)
	}
	var out []uint64
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDigests).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) != 40 {
				return fmt.Errorf("corrupt digest key %x", k)
			}
			out = append(out, binary.BigEndian.Uint64(k[32:]))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index lookup: %w", err)
	}
	return out, nil
}

// Processed implements Index.
func (s *boltStore) Processed() uint64 { return s.processed.Load() }

// WaitProcessed implements Index.
func (s *boltStore) WaitProcessed(ctx context.Context, n uint64) error {
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

// setProcessed records progress and wakes WaitProcessed callers.
func (s *boltStore) setProcessed(n uint64) {
	s.processed.Store(n)
	s.mu.Lock()
	close(s.advanced)
	s.advanced = make(chan struct{})
	s.mu.Unlock()
}

// indexOf returns the first log index of the entry with identity hash id.
func (s *boltStore) indexOf(id []byte) (uint64, bool, error) {
	var idx uint64
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketIDs).Get(id)
		if v == nil {
			return nil
		}
		if len(v) != 8 {
			return fmt.Errorf("corrupt identity value for %x", id)
		}
		idx, ok = binary.BigEndian.Uint64(v), true
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("antispam lookup: %w", err)
	}
	return idx, ok, nil
}

// Decorator implements tessera.Antispam: an entry whose identity is already
// in the log resolves to its existing index (IsDup) without being added.
func (s *boltStore) Decorator() func(tessera.AddFn) tessera.AddFn {
	return func(next tessera.AddFn) tessera.AddFn {
		return func(ctx context.Context, e *tessera.Entry) tessera.IndexFuture {
			if s.pushback.Load() {
				return func() (tessera.Index, error) { return tessera.Index{}, tessera.ErrPushbackAntispam }
			}
			idx, ok, err := s.indexOf(e.Identity())
			if err != nil {
				return func() (tessera.Index, error) { return tessera.Index{}, err }
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
func (s *boltStore) Follower(idHasher func(bundle []byte) ([][]byte, error)) tessera.Follower {
	return &boltFollower{s: s, idHasher: idHasher}
}

// started is closed once the follower runs.
func (s *boltStore) started() <-chan struct{} { return s.followStarted }

// Close implements store. The follower returns promptly once its context
// is cancelled: it only blocks in local file reads and bbolt transactions.
func (s *boltStore) Close() error {
	select {
	case <-s.followStarted:
		<-s.followDone
	default:
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close index: %w", err)
	}
	return nil
}

// boltFollower tails the integrated log into a boltStore.
type boltFollower struct {
	s        *boltStore
	idHasher func([]byte) ([][]byte, error)
}

// Name implements tessera.Follower.
func (f *boltFollower) Name() string { return "notarize bbolt index" }

// EntriesProcessed implements tessera.Follower.
func (f *boltFollower) EntriesProcessed(context.Context) (uint64, error) {
	return f.s.processed.Load(), nil
}

// Follow implements tessera.Follower: it indexes integrated entries in
// order until ctx is done, resuming from the persisted position.
func (f *boltFollower) Follow(ctx context.Context, lr tessera.LogReader) {
	close(f.s.followStarted) // Tessera starts each follower once
	defer close(f.s.followDone)
	backoff := followPoll
	for {
		caughtUp, err := f.step(ctx, lr)
		if ctx.Err() != nil {
			return
		}
		wait := followPoll
		if err != nil {
			f.s.log.ErrorContext(ctx, "index follower", slog.Any("error", err), slog.Duration("retry_in", backoff))
			wait, backoff = backoff, min(2*backoff, followMaxBackoff)
		} else {
			backoff = followPoll
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

// step indexes up to followMaxBatch entries in one transaction and reports
// whether the follower has caught up with the integrated tree.
func (f *boltFollower) step(ctx context.Context, lr tessera.LogReader) (bool, error) {
	size, err := lr.IntegratedSize(ctx)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("integrated size: %w", err)
	}
	next := f.s.processed.Load()
	if next > size {
		return false, fmt.Errorf("index is ahead of the log: processed %d, log size %d", next, size)
	}
	if next == size {
		f.s.pushback.Store(false)
		return true, nil
	}
	f.s.pushback.Store(size-next > antispamPushbackAt)
	n := min(size-next, followMaxBatch)
	batch, err := f.read(ctx, lr, next, n, size)
	if err != nil {
		return false, err
	}
	err = f.s.db.Update(func(tx *bolt.Tx) error {
		meta, ids, digests := tx.Bucket(bucketMeta), tx.Bucket(bucketIDs), tx.Bucket(bucketDigests)
		if v := meta.Get(nextKey); v != nil && binary.BigEndian.Uint64(v) != next {
			return fmt.Errorf("index position moved under the follower: %d, want %d", binary.BigEndian.Uint64(v), next)
		}
		for i, e := range batch {
			idx := be64(next + uint64(i))
			if ids.Get(e.id) == nil {
				if err := ids.Put(e.id, idx); err != nil {
					return err
				}
			}
			if e.digest != nil {
				if err := digests.Put(append(e.digest, idx...), []byte{}); err != nil {
					return err
				}
			}
		}
		return meta.Put(nextKey, be64(next+n))
	})
	if err != nil {
		return false, fmt.Errorf("index entries [%d, %d): %w", next, next+n, err)
	}
	f.s.setProcessed(next + n)
	return next+n == size, nil
}

// read returns entries [from, from+n) of a log of the given integrated size.
func (f *boltFollower) read(ctx context.Context, lr tessera.LogReader, from, n, size uint64) ([]followed, error) {
	out := make([]followed, 0, n)
	for ri := range layout.Range(from, n, size) {
		raw, err := lr.ReadEntryBundle(ctx, ri.Index, ri.Partial)
		if err != nil {
			return nil, fmt.Errorf("read entry bundle %d: %w", ri.Index, err)
		}
		ids, err := f.idHasher(raw)
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
			d, err := subjectDigest(eb.Entries[i])
			if err != nil {
				// Only verified entries are added, so this is a bug or a
				// foreign log; keep going so duplicates are still caught.
				f.s.log.WarnContext(ctx, "index: entry has no readable subject", slog.Uint64("index", ri.Index*layout.EntryBundleWidth+uint64(i)), slog.Any("error", err))
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

func be64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}
