package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bbolt layout.
var (
	bucketMeta    = []byte("meta")    // nextKey → next log index to process (uint64 BE)
	bucketIDs     = []byte("ids")     // identity hash (32 bytes) → first log index (uint64 BE)
	bucketDigests = []byte("digests") // subject sha256 (32 bytes) || log index (uint64 BE) → empty
	nextKey       = []byte("next")
)

// bbolt follower tuning.
const (
	followPoll       = 10 * time.Millisecond // how often the follower looks for new entries
	followMaxBackoff = 5 * time.Second       // longest wait between retries after an error
	followMaxBatch   = 4096                  // entries per bbolt transaction
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
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketIDs, bucketDigests} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
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
		errLevel:   slog.LevelError,
	}
	return newIndexStore(&boltIndex{db: db}, logger, tune, next), nil
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

// lookup implements indexDB.
func (b *boltIndex) lookup(_ context.Context, digest []byte) ([]uint64, error) {
	var out []uint64
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDigests).Cursor()
		for k, _ := c.Seek(digest); k != nil && bytes.HasPrefix(k, digest); k, _ = c.Next() {
			if len(k) != 40 {
				return fmt.Errorf("corrupt digest key %x", k)
			}
			out = append(out, binary.BigEndian.Uint64(k[32:]))
		}
		return nil
	})
	return out, err
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

// write implements indexDB. Only the follower writes, so a position other
// than next is an error rather than a lost race.
func (b *boltIndex) write(_ context.Context, next uint64, batch []followed) (bool, error) {
	err := b.db.Update(func(tx *bolt.Tx) error {
		meta, ids, digests := tx.Bucket(bucketMeta), tx.Bucket(bucketIDs), tx.Bucket(bucketDigests)
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
			if e.digest != nil {
				if err := digests.Put(append(e.digest, idx...), []byte{}); err != nil {
					return err
				}
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

func be64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}
