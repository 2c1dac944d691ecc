package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

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
	nextKey       = []byte("next")
	formatKey     = []byte("format")
)

// boltFormat is the index layout this binary writes. A file of another
// format (format 1 had no formatKey: identities were hashes of the entry
// bytes and digests mapped to indices alone; format 2 had no data bucket:
// lookups read entry bundles) is rebuilt from the log.
const boltFormat = 3

// boltBuckets are the buckets of boltFormat; the data buckets are dropped
// when an index of another format is rebuilt.
var boltBuckets = [][]byte{bucketMeta, bucketIDs, bucketEntries, bucketByTime, bucketDigests, bucketData}

// bbolt follower tuning.
const (
	followPoll       = 10 * time.Millisecond // how often the follower looks for new entries
	followMaxBackoff = 5 * time.Second       // longest wait between retries after an error
	followMaxBatch   = 4096                  // entries per bbolt transaction
	followMaxBytes   = 64 << 20              // entry bytes per bbolt transaction
)

// boltIndex implements indexDB on a bbolt database. The database's file
// lock keeps other processes out, so the follower is its only writer.
type boltIndex struct {
	db *bolt.DB
}

var _ indexDB = (*boltIndex)(nil)

// openBoltStore opens (creating if needed) the index database at path.
// It fails fast if another process holds the database.
func openBoltStore(path string, logger *slog.Logger) (*indexStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open index %s: in use by another process", path)
		}
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	var next uint64
	err = db.Update(func(tx *bolt.Tx) (err error) {
		if err := boltUpgrade(tx, path, logger); err != nil {
			return err
		}
		next, err = boltPosition(tx)
		return err
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	tune := followTuning{
		name:       "notarize bbolt index",
		poll:       followPoll,
		maxBackoff: followMaxBackoff,
		maxBatch:   followMaxBatch,
		maxBytes:   followMaxBytes,
		errLevel:   slog.LevelError,
	}
	return newIndexStore(&boltIndex{db: db}, logger, tune, next), nil
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

// position implements indexDB.
func (b *boltIndex) position(context.Context) (uint64, error) {
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

// page implements indexDB. A filtered page merges one cursor per key, so
// it reads at most n+len(keyIDs) rows, none of another key.
func (b *boltIndex) page(_ context.Context, digest []byte, keyIDs [][]byte, from, below uint64, n int) ([]uint64, error) {
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

// current implements indexDB: the last bytime row of each key below the
// index bound. Rows at or above it (entries indexed after the checkpoint
// the caller proves against) are few: they are skipped.
func (b *boltIndex) current(_ context.Context, digest []byte, keyIDs [][]byte, below uint64) ([]uint64, error) {
	var out []uint64
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketByTime).Cursor()
		for _, key := range keyIDs {
			prefix := cat(digest, key)
			k, _ := c.Seek(cat(prefix, bytes.Repeat([]byte{0xff}, len(stamp{})+8)))
			if k == nil {
				k, _ = c.Last()
			} else {
				k, _ = c.Prev()
			}
			for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Prev() {
				if len(k) != len(prefix)+len(stamp{})+8 {
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

// latest implements indexDB: the last bytime row of the key, and its
// entries row for the status.
func (b *boltIndex) latest(_ context.Context, digest, keyID []byte) (stamp, byte, bool, error) {
	var ts stamp
	var status byte
	var ok bool
	err := b.db.View(func(tx *bolt.Tx) error {
		prefix := cat(digest, keyID)
		c := tx.Bucket(bucketByTime).Cursor()
		k, _ := c.Seek(cat(prefix, bytes.Repeat([]byte{0xff}, len(stamp{})+8)))
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		if k == nil || !bytes.HasPrefix(k, prefix) {
			return nil
		}
		if len(k) != len(prefix)+len(stamp{})+8 {
			return fmt.Errorf("corrupt bytime key %x", k)
		}
		v := tx.Bucket(bucketEntries).Get(cat(prefix, k[len(k)-8:]))
		if len(v) != len(stamp{})+1 {
			return fmt.Errorf("corrupt entry row for bytime key %x", k)
		}
		copy(ts[:], v)
		status, ok = v[len(stamp{})], true
		return nil
	})
	return ts, status, ok, err
}

// indexOf implements indexDB.
func (b *boltIndex) indexOf(_ context.Context, id []byte) (uint64, bool, error) {
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

// entries implements indexDB: one Get per entry, in one read transaction.
func (b *boltIndex) entries(_ context.Context, indices []uint64, take func(i uint64, data []byte) bool) error {
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

// claim implements indexDB: the file lock keeps every other process out,
// and the ledger joins concurrent submissions of a statement in memory.
func (b *boltIndex) claim(context.Context, []byte) (bool, error) { return true, nil }

// release implements indexDB.
func (b *boltIndex) release(context.Context, []byte) error { return nil }

// write implements indexDB. Only the follower writes, so a position other
// than next is an error rather than a lost race.
func (b *boltIndex) write(_ context.Context, next uint64, batch []followed) (bool, error) {
	err := b.db.Update(func(tx *bolt.Tx) error {
		meta, ids := tx.Bucket(bucketMeta), tx.Bucket(bucketIDs)
		entries, byTime, digests := tx.Bucket(bucketEntries), tx.Bucket(bucketByTime), tx.Bucket(bucketDigests)
		data := tx.Bucket(bucketData)
		if cur, err := boltPosition(tx); err != nil {
			return err
		} else if cur != next {
			return fmt.Errorf("index position moved under the follower: %d, want %d", cur, next)
		}
		for i, e := range batch {
			idx := be64(next + uint64(i))
			if ids.Get(e.id) == nil {
				if err := ids.Put(e.id, idx); err != nil {
					return err
				}
			}
			if err := data.Put(idx, e.data); err != nil {
				return err
			}
			if e.digest == nil {
				continue
			}
			if err := entries.Put(cat(e.digest, e.keyID, idx), cat(e.ts[:], []byte{e.status})); err != nil {
				return err
			}
			if err := byTime.Put(cat(e.digest, e.keyID, e.ts[:], idx), []byte{}); err != nil {
				return err
			}
			if err := digests.Put(cat(e.digest, idx), e.keyID); err != nil {
				return err
			}
		}
		return meta.Put(nextKey, be64(next+uint64(len(batch))))
	})
	return err == nil, err
}

// close implements indexDB.
func (b *boltIndex) close() error {
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
