package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/notarize/docker-notarize/ledger/storage"
)

// mapFileName is the map's bbolt file in the data directory (POSIX storage).
const mapFileName = "vindex.db"

// bbolt layout of the map: nodes by vindex.NodeID.Bytes(), and in meta the
// position (entries folded into the stored map) and the newest committed
// root (its log index, then the entry's bytes).
var (
	mapBucketNodes = []byte("nodes")
	mapBucketMeta  = []byte("meta")
	mapKeyPosition = []byte("position")
	mapKeyRoot     = []byte("root")
)

// boltMapStore implements storage.MapStore in a bbolt file of its own, for
// a storage used by one process (POSIX). Its update lock is bbolt's one
// writer: the file belongs to one ledger (bbolt's file lock).
type boltMapStore struct {
	db *bolt.DB
}

var _ storage.MapStore = (*boltMapStore)(nil)

// openBoltMapStore opens (creating if needed) the map database at path.
func openBoltMapStore(path string) (*boltMapStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("open map %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{mapBucketNodes, mapBucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open map %s: %w", path, err), db.Close())
	}
	return &boltMapStore{db: db}, nil
}

// boltNodes reads map nodes in one bbolt transaction.
type boltNodes struct{ b *bolt.Bucket }

// MapNodes implements storage.MapNodeReader.
func (r boltNodes) MapNodes(_ context.Context, ids [][]byte) ([][]byte, error) {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		if v := r.b.Get(id); v != nil {
			out[i] = bytes.Clone(v)
		}
	}
	return out, nil
}

func readBoltMapState(tx *bolt.Tx) (storage.MapState, error) {
	meta := tx.Bucket(mapBucketMeta)
	var st storage.MapState
	if v := meta.Get(mapKeyPosition); v != nil {
		if len(v) != 8 {
			return st, fmt.Errorf("map position of %d bytes", len(v))
		}
		st.Position = binary.BigEndian.Uint64(v)
	}
	if v := meta.Get(mapKeyRoot); v != nil {
		if len(v) < 8 {
			return st, fmt.Errorf("map root record of %d bytes", len(v))
		}
		st.Root = &storage.MapRoot{Index: binary.BigEndian.Uint64(v), Entry: slices.Clone(v[8:])}
	}
	return st, nil
}

// MapState implements storage.MapStore.
func (m *boltMapStore) MapState(context.Context) (st storage.MapState, err error) {
	err = m.db.View(func(tx *bolt.Tx) error {
		st, err = readBoltMapState(tx)
		return err
	})
	return st, err
}

// MapView implements storage.MapStore: one bbolt read transaction.
func (m *boltMapStore) MapView(_ context.Context, fn func(storage.MapState, storage.MapNodeReader) error) error {
	return m.db.View(func(tx *bolt.Tx) error {
		st, err := readBoltMapState(tx)
		if err != nil {
			return err
		}
		return fn(st, boltNodes{tx.Bucket(mapBucketNodes)})
	})
}

// MapUpdate implements storage.MapStore: one bbolt write transaction, whose
// writer lock is the update lock.
func (m *boltMapStore) MapUpdate(_ context.Context, fn func(storage.MapState, storage.MapNodeReader) (*storage.MapCommit, error)) error {
	return m.db.Update(func(tx *bolt.Tx) error {
		st, err := readBoltMapState(tx)
		if err != nil {
			return err
		}
		c, err := fn(st, boltNodes{tx.Bucket(mapBucketNodes)})
		if err != nil || c == nil {
			return err
		}
		if c.From != st.Position || c.Position <= c.From {
			return fmt.Errorf("%w: commit of [%d, %d), the map is at %d", storage.ErrMapStale, c.From, c.Position, st.Position)
		}
		nodes := tx.Bucket(mapBucketNodes)
		for _, w := range c.Writes {
			if w.Delete {
				err = nodes.Delete(w.ID)
			} else {
				err = nodes.Put(w.ID, w.Node)
			}
			if err != nil {
				return err
			}
		}
		meta := tx.Bucket(mapBucketMeta)
		if err := meta.Put(mapKeyPosition, binary.BigEndian.AppendUint64(nil, c.Position)); err != nil {
			return err
		}
		if c.Root != nil {
			return meta.Put(mapKeyRoot, append(binary.BigEndian.AppendUint64(nil, c.Root.Index), c.Root.Entry...))
		}
		return nil
	})
}

// MapReset implements storage.MapStore.
func (m *boltMapStore) MapReset(context.Context) error {
	return m.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{mapBucketNodes, mapBucketMeta} {
			if err := tx.DeleteBucket(b); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
				return err
			}
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		return nil
	})
}

func (m *boltMapStore) close() error { return m.db.Close() }
