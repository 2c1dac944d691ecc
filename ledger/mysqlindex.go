package ledger

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
)

// MySQL follower tuning. Every instance runs a follower; they take turns
// through the row lock on notarize_follow, and the ones that lose a race
// learn the new position on their next poll.
const (
	mysqlFollowPoll       = 20 * time.Millisecond // how often an instance reads the shared position
	mysqlFollowMaxBackoff = 2 * time.Second       // longest wait between retries after an error
	mysqlFollowMaxBatch   = 4096                  // entries per transaction
	mysqlInsertRows       = 512                   // rows per INSERT statement
)

// mysqlStore implements store on the ledger's MySQL tables: antispam
// (notarize_identity), the digest index (notarize_digest) and their shared
// position (notarize_follow), all updated in one transaction, so any number
// of instances share one index.
type mysqlStore struct {
	db     *sql.DB
	log    *slog.Logger
	health *dbHealth

	processed atomic.Uint64 // the shared position, as last read or written by this instance
	pushback  atomic.Bool   // the index is too far behind the log

	mu       sync.Mutex
	advanced chan struct{} // closed and replaced whenever processed grows

	followStarted chan struct{} // closed when Follow starts
	followDone    chan struct{} // closed when Follow returns
}

var _ followedStore = (*mysqlStore)(nil)

// openMySQLStore opens the index on db, whose schema is migrated.
func openMySQLStore(ctx context.Context, db *sql.DB, logger *slog.Logger, health *dbHealth) (*mysqlStore, error) {
	s := &mysqlStore{
		db:            db,
		log:           logger,
		health:        health,
		advanced:      make(chan struct{}),
		followStarted: make(chan struct{}),
		followDone:    make(chan struct{}),
	}
	next, err := s.position(ctx)
	if err != nil {
		return nil, err
	}
	s.processed.Store(next)
	return s, nil
}

// position reads the shared follower position.
func (s *mysqlStore) position(ctx context.Context) (uint64, error) {
	var next uint64
	if err := s.db.QueryRowContext(ctx, "SELECT `next` FROM `notarize_follow` WHERE `id` = 0").Scan(&next); err != nil {
		return 0, fmt.Errorf("read index position: %w", err)
	}
	return next, nil
}

// Lookup implements Index.
func (s *mysqlStore) Lookup(ctx context.Context, d notarize.Digest) ([]uint64, error) {
	raw, err := hex.DecodeString(d.Hex())
	if err != nil || len(raw) != 32 {
		return nil, fmt.Errorf("index lookup: %w %q", notarize.ErrBadDigest, d)
	}
	out, err := s.lookup(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("index lookup: %w", s.health.check(ctx, err))
	}
	return out, nil
}

func (s *mysqlStore) lookup(ctx context.Context, digest []byte) ([]uint64, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT `idx` FROM `notarize_digest` WHERE `digest` = ? ORDER BY `idx`", digest)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for rows.Next() {
		var i uint64
		if err := rows.Scan(&i); err != nil {
			_ = rows.Close()
			return nil, err
		}
		out = append(out, i)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, err
	}
	return out, nil
}

// Processed implements Index.
func (s *mysqlStore) Processed() uint64 { return s.processed.Load() }

// WaitProcessed implements Index.
func (s *mysqlStore) WaitProcessed(ctx context.Context, n uint64) error {
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
func (s *mysqlStore) advance(n uint64) {
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
func (s *mysqlStore) Decorator() func(tessera.AddFn) tessera.AddFn {
	return func(next tessera.AddFn) tessera.AddFn {
		return func(ctx context.Context, e *tessera.Entry) tessera.IndexFuture {
			if s.pushback.Load() {
				return func() (tessera.Index, error) { return tessera.Index{}, tessera.ErrPushbackAntispam }
			}
			var idx uint64
			switch err := s.db.QueryRowContext(ctx, "SELECT `idx` FROM `notarize_identity` WHERE `hash` = ?", e.Identity()).Scan(&idx); {
			case err == nil:
				return func() (tessera.Index, error) { return tessera.Index{Index: idx, IsDup: true}, nil }
			case !errors.Is(err, sql.ErrNoRows):
				return func() (tessera.Index, error) { return tessera.Index{}, fmt.Errorf("antispam lookup: %w", err) }
			}
			return next(ctx, e)
		}
	}
}

// Follower implements tessera.Antispam.
func (s *mysqlStore) Follower(idHasher func(bundle []byte) ([][]byte, error)) tessera.Follower {
	return &mysqlFollower{s: s, idHasher: idHasher}
}

func (s *mysqlStore) started() <-chan struct{} { return s.followStarted }

// Close implements store: it waits for the follower to return (cancel its
// context first). The database is the backend's to close.
func (s *mysqlStore) Close() error {
	select {
	case <-s.followStarted:
		<-s.followDone
	default:
	}
	return nil
}

// mysqlFollower tails the integrated log into the MySQL index.
type mysqlFollower struct {
	s        *mysqlStore
	idHasher func([]byte) ([][]byte, error)
}

// Name implements tessera.Follower.
func (f *mysqlFollower) Name() string { return "notarize mysql index" }

// EntriesProcessed implements tessera.Follower.
func (f *mysqlFollower) EntriesProcessed(context.Context) (uint64, error) {
	return f.s.processed.Load(), nil
}

// Follow implements tessera.Follower: it indexes integrated entries in
// order until ctx is done, from the shared position.
func (f *mysqlFollower) Follow(ctx context.Context, lr tessera.LogReader) {
	close(f.s.followStarted)
	defer close(f.s.followDone)
	backoff := mysqlFollowPoll
	for {
		caughtUp, err := f.step(ctx, lr)
		if ctx.Err() != nil {
			return
		}
		wait := mysqlFollowPoll
		if err != nil {
			f.s.log.WarnContext(ctx, "index follower", slog.Any("error", err), slog.Duration("retry_in", backoff))
			wait, backoff = backoff, min(2*backoff, mysqlFollowMaxBackoff)
		} else {
			backoff = mysqlFollowPoll
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

// step indexes up to mysqlFollowMaxBatch entries in one transaction and
// reports whether the index has caught up with the integrated tree.
// Losing the race to another instance is not an error.
func (f *mysqlFollower) step(ctx context.Context, lr tessera.LogReader) (bool, error) {
	size, err := lr.IntegratedSize(ctx)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("integrated size: %w", err)
	}
	next, err := f.s.position(ctx)
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
	n := min(size-next, mysqlFollowMaxBatch)
	batch, err := readIndexEntries(ctx, lr, f.idHasher, f.s.log, next, n, size)
	if err != nil {
		return false, err
	}
	won, err := f.write(ctx, next, batch)
	if err != nil {
		return false, fmt.Errorf("index entries [%d, %d): %w", next, next+n, err)
	}
	if !won {
		return false, nil // another instance indexed them; read the new position
	}
	f.s.advance(next + n)
	return next+n == size, nil
}

// write stores batch, entries [next, next+len(batch)), and the new position
// in one transaction, unless the position is no longer next.
func (f *mysqlFollower) write(ctx context.Context, next uint64, batch []followed) (bool, error) {
	tx, err := f.s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer func() { _ = tx.Rollback() }()
	var cur uint64
	if err := tx.QueryRowContext(ctx, "SELECT `next` FROM `notarize_follow` WHERE `id` = 0 FOR UPDATE").Scan(&cur); err != nil {
		return false, err
	}
	if cur != next {
		return false, nil
	}
	ids := make([]any, 0, 2*len(batch))
	digests := make([]any, 0, 2*len(batch))
	for i, e := range batch {
		idx := next + uint64(i)
		ids = append(ids, e.id, idx)
		if e.digest != nil {
			digests = append(digests, e.digest, idx)
		}
	}
	// INSERT IGNORE keeps the first index of an identity: entries are
	// written in log order.
	if err := insertRows(ctx, tx, "INSERT IGNORE INTO `notarize_identity` (`hash`, `idx`) VALUES ", ids); err != nil {
		return false, err
	}
	if err := insertRows(ctx, tx, "INSERT IGNORE INTO `notarize_digest` (`digest`, `idx`) VALUES ", digests); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE `notarize_follow` SET `next` = ? WHERE `id` = 0", next+uint64(len(batch))); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, err
	}
	return true, nil
}

// insertRows runs prefix with "(?, ?)" rows for args (two per row), in
// statements of at most mysqlInsertRows rows.
func insertRows(ctx context.Context, tx *sql.Tx, prefix string, args []any) error {
	for len(args) > 0 {
		n := min(len(args)/2, mysqlInsertRows)
		q := prefix + strings.TrimSuffix(strings.Repeat("(?, ?), ", n), ", ")
		if _, err := tx.ExecContext(ctx, q, args[:2*n]...); err != nil {
			return err
		}
		args = args[2*n:]
	}
	return nil
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
