package posix

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"

	"github.com/notarize/docker-notarize/internal/pebblestore"
	"github.com/notarize/docker-notarize/ledger/storage"
)

// pebble layout, format pebbleFormat: the buckets of the bbolt layout
// (boltFormat 4, index.go), each a one-byte key prefix, with the same keys
// and values after it. A key prefix sorts the buckets apart, so a bucket's
// cursor is an iterator bounded by its prefix.
const (
	pfxMeta    byte = 'm' // nextKey → next log index; formatKey → pebbleFormat
	pfxIDs     byte = 'i' // bucketIDs
	pfxEntries byte = 'e' // bucketEntries
	pfxByTime  byte = 't' // bucketByTime
	pfxDigests byte = 'g' // bucketDigests
	pfxData    byte = 'd' // bucketData
	pfxKeys    byte = 'k' // bucketKeys
)

// pebbleFormat is the pebble index layout this binary writes. A store of
// an older format is emptied and rebuilt from the log, as the bbolt one is;
// a newer one is an error.
const pebbleFormat = 1

// pebblePrefixes maps each bucket of the bbolt layout to its pebble key
// prefix (migration copies bucket by bucket through it).
var pebblePrefixes = []struct {
	bucket []byte
	prefix byte
}{
	{bucketMeta, pfxMeta}, {bucketIDs, pfxIDs}, {bucketEntries, pfxEntries}, {bucketByTime, pfxByTime},
	{bucketDigests, pfxDigests}, {bucketData, pfxData}, {bucketKeys, pfxKeys},
}

// pebbleIndex implements storage.Index on a pebble database (a directory).
// pebble's LOCK file keeps other processes out; mu makes Write's position
// check and its batch one step, as bbolt's single writer does. Every
// operation acquires s: a corruption pebble reported fails it, and close
// waits for it.
type pebbleIndex struct {
	s  *pebblestore.Store
	mu sync.Mutex

	// absent holds every identity and keys row key the store holds (and
	// some it does not), so that the reads of keys it lacks skip pebble
	// (absent.go); scanAbsent fills it when the index opens.
	absent   *absentSet
	scanStop chan struct{} // closed by close (once, stopScan): the scan stops
	stopScan sync.Once
	scanDone chan struct{} // closed when the scan has returned
}

var _ storage.Index = (*pebbleIndex)(nil)

// PebbleOptions returns the pebble options of the index (and of a
// migration's copy): a block cache of cacheBytes and bloom filters on
// every level (lookups Get random keys: identities, key rows).
// pebblestore.Open sets the logger, one naming the store.
func PebbleOptions(cacheBytes int64) *pebble.Options {
	o := &pebble.Options{
		Cache:              pebble.NewCache(cacheBytes),
		FormatMajorVersion: pebble.FormatNewest,
		MemTableSize:       32 << 20,
	}
	for i := range o.Levels {
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	o.EnsureDefaults()
	return o
}

// ErrPebbleDamaged is the error of a damaged pebble store (the index or
// the map): pebblestore.ErrDamaged.
var ErrPebbleDamaged = pebblestore.ErrDamaged

// openPebbleStore opens (creating if needed) the pebble index database at
// dir (pebblestore.Open: a store that lost its MANIFEST marker is refused).
func openPebbleStore(dir string, logger *slog.Logger) (*pebblestore.Store, error) {
	return pebblestore.Open(dir, "index", PebbleOptions(128<<20), logger)
}

// openPebble is openPebbleStore's database alone, for tests that write a
// store's rows by hand.
func openPebble(dir string, logger *slog.Logger) (*pebble.DB, error) {
	s, err := openPebbleStore(dir, logger)
	if err != nil {
		return nil, err
	}
	return s.DB(), nil
}

// openPebbleIndex opens (creating if needed) the pebble index at dir. It
// fails fast if another process holds it.
func openPebbleIndex(dir string, logger *slog.Logger) (*pebbleIndex, error) {
	if logger == nil {
		logger = slog.Default()
	}
	s, err := openPebbleStore(dir, logger)
	if err != nil {
		return nil, fmt.Errorf("open index %s: %w", dir, err)
	}
	x := &pebbleIndex{s: s, scanStop: make(chan struct{}), scanDone: make(chan struct{})}
	if err := x.upgrade(dir, logger); err != nil {
		return nil, errors.Join(fmt.Errorf("open index %s: %w", dir, err), s.Close())
	}
	pos, err := x.Position(context.Background())
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open index %s: %w", dir, err), s.Close())
	}
	// About two keys an entry (its identity, its key's row about its
	// digest), and room for a million more before the set grows; past
	// 2^27 keys (a position the log will refuse, or a very large index)
	// the set grows as keys come rather than all at once.
	x.absent = newAbsentSet(uint(min(2*pos, 1<<27) + 1<<20))
	go x.scanAbsent(logger)
	return x, nil
}

// scanAbsentHook, when set (tests), is called by scanAbsent once its
// snapshot is taken, before it reads a key. Atomic: a scan of one test's
// index may start while another test sets it.
var scanAbsentHook atomic.Pointer[func()]

// scanAbsent adds the key of every identity and keys row to x.absent and
// makes it ready. It reads a snapshot: a row committed after it was taken
// was added by its Write, which adds before it commits. It gives up,
// leaving the set unready (every read goes to pebble), on close or on an
// error, which it logs: nothing waits for it to return one.
func (x *pebbleIndex) scanAbsent(logger *slog.Logger) {
	defer close(x.scanDone)
	start := time.Now()
	db, release, err := x.s.Acquire()
	if err != nil {
		return // closed already
	}
	snap := db.NewSnapshot()
	release() // close waits on scanDone, not on the store: it stops the scan first
	defer snap.Close()
	if hook := scanAbsentHook.Load(); hook != nil {
		(*hook)()
	}
	n := 0
	for _, p := range []byte{pfxIDs, pfxKeys} {
		it, err := prefixIter(snap, []byte{p})
		if err != nil {
			logger.Warn("index: the scan of its rows for the absent-key set failed; lookups of new statements read the index", slog.Any("error", err))
			return
		}
		keys := make([][]byte, 0, 1024)
		for ok := it.First(); ok; ok = it.Next() {
			keys = append(keys, bytes.Clone(it.Key()))
			if len(keys) == cap(keys) {
				x.absent.add(keys...)
				n += len(keys)
				keys = keys[:0]
				select {
				case <-x.scanStop:
					_ = it.Close()
					return
				default:
				}
			}
		}
		x.absent.add(keys...)
		n += len(keys)
		if err := errors.Join(it.Error(), it.Close(), x.s.Err()); err != nil {
			logger.Warn("index: the scan of its rows for the absent-key set failed; lookups of new statements read the index", slog.Any("error", err))
			return
		}
	}
	x.absent.setReady()
	parts, size := x.absent.size()
	logger.Info("index: absent-key set ready", slog.Int("keys", n), slog.Int("parts", parts),
		slog.Uint64("bytes", uint64(size)), slog.Duration("took", time.Since(start)))
}

// upgrade writes the format key of a new store, and empties a store of an
// older format so that the follower rebuilds it from the log. A store
// with rows but no format key lost the rows of its first batches (pebble
// replayed the WAL files left into a new store): it is refused
// (ErrPebbleDamaged), not rebuilt in place, as the loss means the
// directory is damaged; its position would claim rows it lacks.
func (x *pebbleIndex) upgrade(dir string, logger *slog.Logger) error {
	db := x.s.DB() // before the index is shared
	v, ok, err := pebbleGet(db, pkey(pfxMeta, formatKey))
	if err != nil {
		return err
	}
	if ok && len(v) == 8 && binary.BigEndian.Uint64(v) == pebbleFormat {
		return nil
	}
	if !ok {
		it, err := db.NewIter(nil)
		if err != nil {
			return err
		}
		hasRows := it.First()
		if err := it.Close(); err != nil {
			return err
		}
		if hasRows {
			return fmt.Errorf("%w: index %s holds rows but no format key: its first rows are lost and its position cannot be trusted; stop the ledger and delete %s: it is rebuilt from the log",
				ErrPebbleDamaged, dir, dir)
		}
	}
	b := db.NewBatch()
	defer b.Close()
	if ok {
		format := uint64(0)
		if len(v) == 8 {
			format = binary.BigEndian.Uint64(v)
		}
		if format > pebbleFormat {
			return fmt.Errorf("index format %d is newer than this notarize-ledger's (%d)", format, pebbleFormat)
		}
		logger.Info("rebuilding the digest index from the log", slog.String("path", dir),
			slog.Uint64("format", format), slog.Int("new_format", pebbleFormat))
		if err := b.DeleteRange([]byte{0}, []byte{0xff}, nil); err != nil {
			return err
		}
	}
	if err := b.Set(pkey(pfxMeta, formatKey), be64(pebbleFormat), nil); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

// pkey returns prefix || parts, a new slice.
func pkey(prefix byte, parts ...[]byte) []byte {
	n := 1
	for _, p := range parts {
		n += len(p)
	}
	k := make([]byte, 1, n)
	k[0] = prefix
	for _, p := range parts {
		k = append(k, p...)
	}
	return k
}

// prefixEnd is the least key greater than every key that starts with p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no bound
}

// pebbleReader is what reads need of a DB, a Snapshot or an indexed Batch.
type pebbleReader interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

// pebbleGet returns a copy of the value at key, and whether there is one.
func pebbleGet(r pebbleReader, key []byte) ([]byte, bool, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := bytes.Clone(v)
	if out == nil {
		out = []byte{}
	}
	return out, true, closer.Close()
}

// prefixIter returns an iterator over the keys that start with p.
func prefixIter(r pebbleReader, p []byte) (*pebble.Iterator, error) {
	return r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
}

// Tuning implements storage.Index: as bbolt's.
func (x *pebbleIndex) Tuning() storage.FollowTuning {
	return storage.FollowTuning{
		Name:       "notarize pebble index",
		Poll:       followPoll,
		MaxBackoff: followMaxBackoff,
		MaxBatch:   followMaxBatch,
		MaxBytes:   followMaxBytes,
		ErrLevel:   slog.LevelError,
		SoleWriter: true, // the file lock
	}
}

// pebblePosition reads the follower position.
func pebblePosition(r pebbleReader) (uint64, error) {
	v, ok, err := pebbleGet(r, pkey(pfxMeta, nextKey))
	if err != nil || !ok {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("corrupt %q value", nextKey)
	}
	return binary.BigEndian.Uint64(v), nil
}

// Position implements storage.Index.
func (x *pebbleIndex) Position(context.Context) (uint64, error) {
	db, release, err := x.s.Acquire()
	if err != nil {
		return 0, err
	}
	defer release()
	next, err := pebblePosition(db)
	if err != nil {
		return 0, fmt.Errorf("read index position: %w", err)
	}
	return next, nil
}

// view calls fn with a snapshot of the database, which fn's reads share.
// A store that reported a corruption (before or during fn) answers its
// error, never fn's result.
func (x *pebbleIndex) view(fn func(r pebbleReader) error) error {
	db, release, err := x.s.Acquire()
	if err != nil {
		return err
	}
	defer release()
	s := db.NewSnapshot()
	err = fn(s)
	if herr := x.s.Err(); herr != nil {
		err = herr
	}
	return errors.Join(err, s.Close())
}

// Page implements storage.Index, as the bbolt one: the digests rows, or a
// merge of one iterator per key over the entries rows.
func (x *pebbleIndex) Page(_ context.Context, digest []byte, keyIDs [][]byte, from, below uint64, n int) ([]uint64, error) {
	var out []uint64
	err := x.view(func(r pebbleReader) error {
		if len(keyIDs) == 0 {
			prefix := pkey(pfxDigests, digest)
			it, err := prefixIter(r, prefix)
			if err != nil {
				return err
			}
			for ok := it.SeekGE(cat(prefix, be64(from))); ok && len(out) < n; ok = it.Next() {
				k := it.Key()
				if len(k) != 41 {
					return errors.Join(fmt.Errorf("corrupt digest key %x", k[1:]), it.Close())
				}
				i := binary.BigEndian.Uint64(k[33:])
				if i >= below {
					break
				}
				out = append(out, i)
			}
			return it.Close()
		}
		heads := make([]*pebbleKeyCursor, 0, len(keyIDs))
		defer func() {
			for _, h := range heads {
				_ = h.it.Close()
			}
		}()
		for _, key := range keyIDs {
			prefix := pkey(pfxEntries, digest, key)
			it, err := prefixIter(r, prefix)
			if err != nil {
				return err
			}
			h := &pebbleKeyCursor{it: it, prefix: prefix, below: below}
			heads = append(heads, h)
			if err := h.at(it.SeekGE(cat(prefix, be64(from)))); err != nil {
				return err
			}
		}
		live := slices.Clone(heads)
		live = slices.DeleteFunc(live, func(h *pebbleKeyCursor) bool { return !h.ok })
		for len(out) < n && len(live) > 0 {
			m := 0
			for j, h := range live {
				if h.idx < live[m].idx {
					m = j
				}
			}
			out = append(out, live[m].idx)
			if err := live[m].at(live[m].it.Next()); err != nil {
				return err
			}
			if !live[m].ok {
				live = slices.Delete(live, m, m+1)
			}
		}
		return nil
	})
	return out, err
}

// pebbleKeyCursor walks the entries rows of one (digest, key ID) prefix in
// index order, up to an index bound.
type pebbleKeyCursor struct {
	it     *pebble.Iterator
	prefix []byte
	below  uint64
	idx    uint64
	ok     bool
}

// at positions h on the iterator's current key (valid: whether there is one).
func (h *pebbleKeyCursor) at(valid bool) error {
	h.ok = false
	if !valid {
		return h.it.Error()
	}
	k := h.it.Key()
	if len(k) != len(h.prefix)+8 {
		return fmt.Errorf("corrupt entry key %x", k[1:])
	}
	h.idx = binary.BigEndian.Uint64(k[len(h.prefix):])
	h.ok = h.idx < h.below
	return nil
}

// Current implements storage.Index: the last bytime row of each key below
// the index bound.
func (x *pebbleIndex) Current(_ context.Context, digest []byte, keyIDs [][]byte, below uint64) ([]uint64, error) {
	var out []uint64
	err := x.view(func(r pebbleReader) error {
		for _, key := range keyIDs {
			prefix := pkey(pfxByTime, digest, key)
			it, err := prefixIter(r, prefix)
			if err != nil {
				return err
			}
			for ok := it.Last(); ok; ok = it.Prev() {
				k := it.Key()
				if len(k) != len(prefix)+len(storage.Stamp{})+8 {
					return errors.Join(fmt.Errorf("corrupt bytime key %x", k[1:]), it.Close())
				}
				if i := binary.BigEndian.Uint64(k[len(k)-8:]); i < below {
					out = append(out, i)
					break
				}
			}
			if err := it.Close(); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// lookup returns a copy of the value at key in the database, and whether
// there is one; a key the absent-key set lacks has none. The store is
// acquired first, so a closed store, or one that reported a corruption
// (before or during the read), answers its error, never a value and never
// "none", whether or not the set holds the key.
func (x *pebbleIndex) lookup(key []byte) ([]byte, bool, error) {
	db, release, err := x.s.Acquire()
	if err != nil {
		return nil, false, err
	}
	defer release()
	if x.absent.absent(key) {
		return nil, false, nil
	}
	v, ok, err := pebbleGet(db, key)
	if herr := x.s.Err(); herr != nil {
		return nil, false, herr
	}
	return v, ok, err
}

// Latest implements storage.Index: the key's keys row about the digest,
// which Write keeps at the current statement (storage.Newer, the order of
// the bytime rows) in the same batch as the rows it summarises. One Get,
// which the bloom filters answer without reading a data block when the
// key made no statement about the digest (a new statement's usual case);
// a bounded iterator over the bytime rows read a data block of every
// level it overlapped.
func (x *pebbleIndex) Latest(_ context.Context, digest, keyID []byte) (storage.Stamp, byte, bool, error) {
	v, ok, err := x.lookup(pkey(pfxKeys, keyID, digest))
	if err != nil || !ok {
		return storage.Stamp{}, 0, false, err
	}
	r, err := keyRowOf(digest, v)
	if err != nil {
		return storage.Stamp{}, 0, false, err
	}
	return r.Stamp, r.Status, true, nil
}

// IndexOf implements storage.Index.
func (x *pebbleIndex) IndexOf(_ context.Context, id []byte) (uint64, bool, error) {
	v, ok, err := x.lookup(pkey(pfxIDs, id))
	if err != nil || !ok {
		return 0, false, err
	}
	if len(v) != 8 {
		return 0, false, fmt.Errorf("corrupt identity value for %x", id)
	}
	return binary.BigEndian.Uint64(v), true, nil
}

// Entries implements storage.Index: one Get per entry, in one snapshot.
func (x *pebbleIndex) Entries(_ context.Context, indices []uint64, take func(i uint64, data []byte) bool) error {
	return x.view(func(r pebbleReader) error {
		for _, i := range indices {
			v, ok, err := pebbleGet(r, pkey(pfxData, be64(i)))
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("no bytes stored for entry %d", i)
			}
			if !take(i, v) {
				return nil
			}
		}
		return nil
	})
}

// Claim implements storage.Index: pebble's LOCK keeps every other process
// out, and the ledger joins concurrent submissions of a statement in memory.
func (x *pebbleIndex) Claim(context.Context, []byte) (bool, error) { return true, nil }

// Release implements storage.Index.
func (x *pebbleIndex) Release(context.Context, []byte) error { return nil }

// Write implements storage.Index: one indexed batch (its reads see its own
// writes: an identity or a key row written earlier in the batch), committed
// with pebble.Sync, so that the batch is durable when Write returns, as a
// bbolt transaction is. The position is checked under mu, which every
// Write holds until its batch is committed.
func (x *pebbleIndex) Write(_ context.Context, next uint64, batch []storage.Row) (bool, error) {
	db, release, err := x.s.Acquire()
	if err != nil {
		return false, err
	}
	defer release()
	x.mu.Lock()
	defer x.mu.Unlock()
	if cur, err := pebblePosition(db); err != nil {
		return false, err
	} else if cur != next {
		return false, fmt.Errorf("index position moved under the follower: %d, want %d", cur, next)
	}
	b := db.NewIndexedBatch()
	defer b.Close()
	for i, e := range batch {
		idx := be64(next + uint64(i))
		k := pkey(pfxIDs, e.ID)
		found := false
		if !x.absent.absent(k) {
			if _, found, err = pebbleGet(b, k); err != nil {
				return false, err
			}
		}
		if !found { // the identity's first entry
			x.absent.add(k) // before the row: a read that can see it, or a later row of the batch, must not skip it
			if err := b.Set(k, idx, nil); err != nil {
				return false, err
			}
		}
		if err := b.Set(pkey(pfxData, idx), e.Data, nil); err != nil {
			return false, err
		}
		if e.Digest == nil {
			continue
		}
		if err := b.Set(pkey(pfxEntries, e.Digest, e.KeyID, idx), cat(e.Stamp[:], []byte{e.Status}), nil); err != nil {
			return false, err
		}
		if err := b.Set(pkey(pfxByTime, e.Digest, e.KeyID, e.Stamp[:], idx), nil, nil); err != nil {
			return false, err
		}
		if err := b.Set(pkey(pfxDigests, e.Digest, idx), e.KeyID, nil); err != nil {
			return false, err
		}
		if err := x.keyCurrent(b, e, next+uint64(i)); err != nil {
			return false, err
		}
	}
	if err := b.Set(pkey(pfxMeta, nextKey), be64(next+uint64(len(batch))), nil); err != nil {
		return false, err
	}
	if err := x.s.Err(); err != nil {
		return false, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return false, fmt.Errorf("commit index batch: %w", err)
	}
	return true, nil
}

// keyCurrent makes e, at log index idx, the current statement of its key
// about its digest unless the current one is newer. A key the absent set
// lacks has no current statement to compare with.
func (x *pebbleIndex) keyCurrent(b *pebble.Batch, e storage.Row, idx uint64) error {
	k := pkey(pfxKeys, e.KeyID, e.Digest)
	var v []byte
	ok := false
	if !x.absent.absent(k) {
		var err error
		if v, ok, err = pebbleGet(b, k); err != nil {
			return err
		}
	}
	if ok {
		cur, err := keyRowOf(e.Digest, v)
		if err != nil {
			return err
		}
		if !storage.Newer(e.Stamp, idx, cur.Stamp, cur.Index) {
			return nil
		}
	} else {
		x.absent.add(k) // before the row, as for the identity (a row found is in the set already)
	}
	return b.Set(k, cat(e.Stamp[:], be64(idx), []byte{e.Status}), nil)
}

// KeyDigests implements storage.Index: an iterator over the key's prefix of
// the keys rows, so no other key's row is read.
func (x *pebbleIndex) KeyDigests(_ context.Context, keyID, after []byte, n int) ([]storage.KeyRow, error) {
	db, release, err := x.s.Acquire()
	if err != nil {
		return nil, err
	}
	defer release()
	var out []storage.KeyRow
	prefix := pkey(pfxKeys, keyID)
	it, err := prefixIter(db, prefix)
	if err != nil {
		return nil, err
	}
	ok := it.SeekGE(cat(prefix, after))
	if after != nil && ok && bytes.Equal(it.Key(), cat(prefix, after)) {
		ok = it.Next()
	}
	for ; ok && len(out) < n; ok = it.Next() {
		k := it.Key()
		if len(k) != len(prefix)+32 {
			return nil, errors.Join(fmt.Errorf("corrupt key index key %x", k[1:]), it.Close())
		}
		r, err := keyRowOf(k[len(prefix):], it.Value())
		if err != nil {
			return nil, errors.Join(err, it.Close())
		}
		out = append(out, r)
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	if err := x.s.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// close waits for the index's operations in flight and releases the
// database; later operations fail (pebblestore.ErrClosed).
func (x *pebbleIndex) close() error {
	x.stopScan.Do(func() { close(x.scanStop) })
	<-x.scanDone
	return x.s.Close()
}
