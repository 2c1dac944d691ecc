package posix

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/notarize/docker-notarize/ledger/storage"
	bolt "go.etcd.io/bbolt"
)

// bbolt layout, format boltFormat. Digests and key IDs are raw 32-byte
// SHA-256 values, indices big-endian uint64, timestamps stamps.
var (
	bucketMeta    = []byte("meta")    // nextKey → next log index to process; formatKey → boltFormat
	bucketIDs     = []byte("ids")     // statement identity (32 bytes) → first log index
	bucketEntries = []byte("entries") // digest || key ID || index → stamp || status
	bucketByTime  = []byte("bytime")  // digest || key ID || stamp || index → empty
	bucketDigests = []byte("digests") // digest || index → key ID
	bucketData    = []byte("data")    // index → the entry's bytes as logged
	bucketKeys    = []byte("keys")    // key ID || digest → stamp || index || status of the key's current statement
	nextKey       = []byte("next")
	formatKey     = []byte("format")
)

// boltFormat is the index layout this binary writes. A file of another
// format (format 1 had no formatKey: identities were hashes of the entry
// bytes and digests mapped to indices alone; format 2 had no data bucket:
// lookups read entry bundles; format 3 had no keys bucket) is rebuilt from
// the log.
const boltFormat = 4

// boltBuckets are the buckets of boltFormat; the data buckets are dropped
// when an index of another format is rebuilt.
var boltBuckets = [][]byte{bucketMeta, bucketIDs, bucketEntries, bucketByTime, bucketDigests, bucketData, bucketKeys}

// bbolt follower tuning.
const (
	followPoll       = 10 * time.Millisecond // how often the follower looks for new entries
	followMaxBackoff = 5 * time.Second       // longest wait between retries after an error
	followMaxBatch   = 4096                  // entries per bbolt transaction
	followMaxBytes   = 64 << 20              // entry bytes per bbolt transaction
)

// index implements storage.Index on a bbolt database. The database's file
// lock keeps other processes out, so the follower is its only writer.
type index struct {
	db *bolt.DB
}

var _ storage.Index = (*index)(nil)

// openIndex opens (creating if needed) the index database at path.
// It fails fast if another process holds the database.
func openIndex(path string, logger *slog.Logger) (*index, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open index %s: in use by another process", path)
		}
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := boltUpgrade(tx, path, logger); err != nil {
			return err
		}
		_, err := boltPosition(tx)
		return err
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	return &index{db: db}, nil
}

// Tuning implements storage.Index.
func (b *index) Tuning() storage.FollowTuning {
	return storage.FollowTuning{
		Name:       "notarize bbolt index",
		Poll:       followPoll,
		MaxBackoff: followMaxBackoff,
		MaxBatch:   followMaxBatch,
		MaxBytes:   followMaxBytes,
		ErrLevel:   slog.LevelError,
		SoleWriter: true, // the file lock
	}
}

// boltUpgrade creates the buckets of a new index, and empties an index of
// another format so that the follower rebuilds it from the log.
func boltUpgrade(tx *bolt.Tx, path string, logger *slog.Logger) error {
	if meta := tx.Bucket(bucketMeta); meta != nil {
		v := meta.Get(formatKey)
		if len(v) == 8 && binary.BigEndian.Uint64(v) == boltFormat {
			return nil
		}
		format := uint64(1)
		if len(v) == 8 {
			format = binary.BigEndian.Uint64(v)
		}
		if format > boltFormat {
			return fmt.Errorf("index format %d is newer than this notarize-ledger's (%d)", format, boltFormat)
		}
		logger.Info("rebuilding the digest index from the log", slog.String("path", path),
			slog.Uint64("format", format), slog.Int("new_format", boltFormat))
		var names [][]byte
		_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			names = append(names, bytes.Clone(name))
			return nil
		})
		for _, name := range names {
			if err := tx.DeleteBucket(name); err != nil {
				return fmt.Errorf("drop index of format %d: %w", format, err)
			}
		}
	}
	for _, b := range boltBuckets {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketMeta).Put(formatKey, be64(boltFormat))
}

// boltPosition reads the follower position in tx.
func boltPosition(tx *bolt.Tx) (uint64, error) {
	v := tx.Bucket(bucketMeta).Get(nextKey)
	if v == nil {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("corrupt %q value", nextKey)
	}
	return binary.BigEndian.Uint64(v), nil
}

// Position implements storage.Index.
func (b *index) Position(context.Context) (uint64, error) {
	var next uint64
	err := b.db.View(func(tx *bolt.Tx) (err error) {
		next, err = boltPosition(tx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("read index position: %w", err)
	}
	return next, nil
}

// Page implements storage.Index. A filtered page merges one cursor per key, so
// it reads at most n+len(keyIDs) rows, none of another key.
func (b *index) Page(_ context.Context, digest []byte, keyIDs [][]byte, from, below uint64, n int) ([]uint64, error) {
	var out []uint64
	err := b.db.View(func(tx *bolt.Tx) error {
		if len(keyIDs) == 0 {
			c := tx.Bucket(bucketDigests).Cursor()
			for k, _ := c.Seek(cat(digest, be64(from))); k != nil && bytes.HasPrefix(k, digest) && len(out) < n; k, _ = c.Next() {
				if len(k) != 40 {
					return fmt.Errorf("corrupt digest key %x", k)
				}
				i := binary.BigEndian.Uint64(k[32:])
				if i >= below {
					break
				}
				out = append(out, i)
			}
			return nil
		}
		heads := make([]*keyCursor, 0, len(keyIDs))
		for _, key := range keyIDs {
			h := &keyCursor{c: tx.Bucket(bucketEntries).Cursor(), prefix: cat(digest, key), below: below}
			k, _ := h.c.Seek(cat(h.prefix, be64(from)))
			if err := h.at(k); err != nil {
				return err
			}
			if h.ok {
				heads = append(heads, h)
			}
		}
		for len(out) < n && len(heads) > 0 {
			m := 0
			for j, h := range heads {
				if h.idx < heads[m].idx {
					m = j
				}
			}
			out = append(out, heads[m].idx)
			k, _ := heads[m].c.Next()
			if err := heads[m].at(k); err != nil {
				return err
			}
			if !heads[m].ok {
				heads = slices.Delete(heads, m, m+1)
			}
		}
		return nil
	})
	return out, err
}

// keyCursor walks the entries bucket rows of one (digest, key ID) prefix
// in index order, up to an index bound.
type keyCursor struct {
	c      *bolt.Cursor
	prefix []byte
	below  uint64
	idx    uint64 // the index at the cursor, when ok
	ok     bool
}

// at positions h on key k, the cursor's current key.
func (h *keyCursor) at(k []byte) error {
	h.ok = false
	if k == nil || !bytes.HasPrefix(k, h.prefix) {
		return nil
	}
	if len(k) != len(h.prefix)+8 {
		return fmt.Errorf("corrupt entry key %x", k)
	}
	h.idx = binary.BigEndian.Uint64(k[len(h.prefix):])
	h.ok = h.idx < h.below
	return nil
}

// Current implements storage.Index: the last bytime row of each key below the
// index bound. Rows at or above it (entries indexed after the checkpoint
// the caller proves against) are few: they are skipped.
func (b *index) Current(_ context.Context, digest []byte, keyIDs [][]byte, below uint64) ([]uint64, error) {
	var out []uint64
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketByTime).Cursor()
		for _, key := range keyIDs {
			prefix := cat(digest, key)
			k, _ := c.Seek(cat(prefix, bytes.Repeat([]byte{0xff}, len(storage.Stamp{})+8)))
			if k == nil {
				k, _ = c.Last()
			} else {
				k, _ = c.Prev()
			}
			for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
				if len(k) != len(prefix)+len(storage.Stamp{})+8 {
					return fmt.Errorf("corrupt bytime key %x", k)
				}
				if i := binary.BigEndian.Uint64(k[len(k)-8:]); i < below {
					out = append(out, i)
					break
				}
			}
		}
		return nil
	})
	return out, err
}

// Latest implements storage.Index: the key's row about the digest in the
// keys bucket, which Write keeps at the current statement (storage.Newer,
// the order of the bytime bucket) in the same transaction as the rows it
// summarises: one Get, where a cursor over the bytime bucket read the
// pages around the key's place in it even when it made no statement.
func (b *index) Latest(_ context.Context, digest, keyID []byte) (storage.Stamp, byte, bool, error) {
	var r storage.KeyRow
	var ok bool
	err := b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketKeys).Get(cat(keyID, digest))
		if v == nil {
			return nil
		}
		var err error
		r, err = keyRowOf(digest, v)
		ok = err == nil
		return err
	})
	return r.Stamp, r.Status, ok, err
}

// IndexOf implements storage.Index.
func (b *index) IndexOf(_ context.Context, id []byte) (uint64, bool, error) {
	var idx uint64
	var ok bool
	err := b.db.View(func(tx *bolt.Tx) error {
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
	return idx, ok, err
}

// Entries implements storage.Index: one Get per entry, in one read transaction.
func (b *index) Entries(_ context.Context, indices []uint64, take func(i uint64, data []byte) bool) error {
	return b.db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucketData)
		for _, i := range indices {
			v := data.Get(be64(i))
			if v == nil {
				return fmt.Errorf("no bytes stored for entry %d", i)
			}
			if !take(i, bytes.Clone(v)) {
				return nil
			}
		}
		return nil
	})
}

// Claim implements storage.Index: the file lock keeps every other process out,
// and the ledger joins concurrent submissions of a statement in memory.
func (b *index) Claim(context.Context, []byte) (bool, error) { return true, nil }

// Release implements storage.Index.
func (b *index) Release(context.Context, []byte) error { return nil }

// Write implements storage.Index. Only the follower writes, so a position other
// than next is an error rather than a lost race.
//
// The keys and values of a batch are cut from one buffer (rowArena): bbolt
// keeps them until the transaction commits, and one allocation per batch
// instead of eight per row is less for the collector. The data bucket's
// keys are log indices, only ever appended, so its pages are filled before
// they split (FillPercent 1) rather than left half empty.
func (b *index) Write(_ context.Context, next uint64, batch []storage.Row) (bool, error) {
	err := b.db.Update(func(tx *bolt.Tx) error {
		meta, ids := tx.Bucket(bucketMeta), tx.Bucket(bucketIDs)
		entries, byTime, digests := tx.Bucket(bucketEntries), tx.Bucket(bucketByTime), tx.Bucket(bucketDigests)
		data, keys := tx.Bucket(bucketData), tx.Bucket(bucketKeys)
		data.FillPercent = appendFillPercent
		if cur, err := boltPosition(tx); err != nil {
			return err
		} else if cur != next {
			return fmt.Errorf("index position moved under the follower: %d, want %d", cur, next)
		}
		a := rowArena(make([]byte, 0, len(batch)*rowArenaSize))
		for i, e := range batch {
			idx := a.cat(be64Array(next + uint64(i)))
			if ids.Get(e.ID) == nil {
				if err := ids.Put(e.ID, idx); err != nil {
					return err
				}
			}
			if err := data.Put(idx, e.Data); err != nil {
				return err
			}
			if e.Digest == nil {
				continue
			}
			if err := entries.Put(a.cat(e.Digest, e.KeyID, idx), a.cat(e.Stamp[:], []byte{e.Status})); err != nil {
				return err
			}
			if err := byTime.Put(a.cat(e.Digest, e.KeyID, e.Stamp[:], idx), []byte{}); err != nil {
				return err
			}
			if err := digests.Put(a.cat(e.Digest, idx), e.KeyID); err != nil {
				return err
			}
			if err := putKeyCurrent(keys, e, next+uint64(i), &a); err != nil {
				return err
			}
		}
		return meta.Put(nextKey, be64(next+uint64(len(batch))))
	})
	return err == nil, err
}

// appendFillPercent is the data bucket's Bucket.FillPercent: bbolt's
// largest (its default, 0.5, suits keys inserted anywhere).
const appendFillPercent = 1.0

// rowArenaSize is what one row's keys and values take of a rowArena: the
// index (8), the entries key and value (72, 13), the bytime key (84), the
// digests key (40), the keys key and value (64, 21).
const rowArenaSize = 8 + 72 + 13 + 84 + 40 + 64 + 21

// rowArena hands out the keys and values of one write transaction from one
// buffer. Each slice it returns is capped at its length, so appending to
// one never overwrites the next; when the buffer is full a new one is
// started (the old one stays referenced by the slices cut from it).
type rowArena []byte

// cat returns the parts one after the other in a slice of a.
func (a *rowArena) cat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if cap(*a)-len(*a) < n {
		*a = make([]byte, 0, max(n, 2*cap(*a)))
	}
	start := len(*a)
	for _, p := range parts {
		*a = append(*a, p...)
	}
	return (*a)[start:len(*a):len(*a)]
}

// be64Array is v big-endian, as a slice of a fresh array for rowArena.cat
// (which copies it, so it need not escape).
func be64Array(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// close releases the database.
func (b *index) close() error {
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("close index: %w", err)
	}
	return nil
}

// cat returns a new slice holding the parts one after the other.
func cat(parts ...[]byte) []byte {
	return bytes.Join(parts, nil)
}

func be64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// keyRowSize is the size of a keys bucket value: stamp, index, status.
const keyRowSize = len(storage.Stamp{}) + 8 + 1

// putKeyCurrent makes e, at log index idx, the current statement of its
// key about its digest unless the current one is newer.
func putKeyCurrent(keys *bolt.Bucket, e storage.Row, idx uint64, a *rowArena) error {
	k := a.cat(e.KeyID, e.Digest)
	if v := keys.Get(k); v != nil {
		cur, err := keyRowOf(e.Digest, v)
		if err != nil {
			return err
		}
		if !storage.Newer(e.Stamp, idx, cur.Stamp, cur.Index) {
			return nil
		}
	}
	return keys.Put(k, a.cat(e.Stamp[:], be64Array(idx), []byte{e.Status}))
}

// keyRowOf decodes a keys bucket value.
func keyRowOf(digest, v []byte) (storage.KeyRow, error) {
	if len(v) != keyRowSize {
		return storage.KeyRow{}, fmt.Errorf("corrupt key row for digest %x", digest)
	}
	r := storage.KeyRow{Digest: bytes.Clone(digest), Index: binary.BigEndian.Uint64(v[len(storage.Stamp{}):]), Status: v[keyRowSize-1]}
	copy(r.Stamp[:], v)
	return r, nil
}

// KeyDigests implements storage.Index: a cursor over the key's prefix of
// the keys bucket, so no other key's row is read.
func (b *index) KeyDigests(_ context.Context, keyID, after []byte, n int) ([]storage.KeyRow, error) {
	var out []storage.KeyRow
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketKeys).Cursor()
		k, v := c.Seek(cat(keyID, after))
		if after != nil && k != nil && bytes.Equal(k, cat(keyID, after)) {
			k, v = c.Next()
		}
		for ; k != nil && bytes.HasPrefix(k, keyID) && len(out) < n; k, v = c.Next() {
			if len(k) != len(keyID)+32 {
				return fmt.Errorf("corrupt key index key %x", k)
			}
			r, err := keyRowOf(k[len(keyID):], v)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}
