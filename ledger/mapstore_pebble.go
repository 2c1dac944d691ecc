package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/notarize/docker-notarize/internal/pebblestore"
	"github.com/notarize/docker-notarize/ledger/storage"
)

// mapDirName is the map's pebble directory in the data directory (POSIX
// storage, engine pebble), beside or instead of mapFileName.
const mapDirName = "vindex.pebble"

// Map engines: the values of a POSIX storage's IndexEngine (package
// posix's EngineBbolt and EnginePebble; package ledger does not import
// its drivers).
const (
	engineBbolt  = "bbolt"
	enginePebble = "pebble"
)

// pebble layout of the map: the bbolt layout's buckets as key prefixes,
// nodes under mapPfxNodes by vindex.NodeID.Bytes(), position and root
// under mapPfxMeta with the same values (mapstore_bolt.go).
const (
	mapPfxNodes byte = 'n'
	mapPfxMeta  byte = 'm'
)

// pebbleMapStore implements storage.MapStore in a pebble database of its
// own, for a storage used by one process (POSIX, engine pebble). Its
// update lock is mu: pebble's LOCK keeps other processes out.
type pebbleMapStore struct {
	s  *pebblestore.Store // every operation acquires it: a corruption pebble reported fails it, close waits for it
	mu sync.Mutex
}

var _ storage.MapStore = (*pebbleMapStore)(nil)

// mapCacheBytes is the pebble map's block cache: a fold reads ~2 nodes
// per tree level per key, all over the map; a map of 1,000,000 statements
// takes ~240 MB.
const mapCacheBytes = 256 << 20

// MapPebbleOptions returns the pebble options of the map: its block cache,
// bloom filters (a fold Gets random node IDs) and no compression (nodes
// are hashes: compressing them costs CPU and saves nothing). A migration
// writes the map with them too.
func MapPebbleOptions() *pebble.Options {
	opts := &pebble.Options{
		Cache:              pebble.NewCache(mapCacheBytes),
		FormatMajorVersion: pebble.FormatNewest,
		MemTableSize:       32 << 20,
	}
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		opts.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
	}
	return opts
}

// openPebbleMapStore opens (creating if needed) the map database at dir
// (pebblestore.Open: a store that lost its MANIFEST marker is refused, a
// corruption fails its reads, a fatal pebble error stops the process with
// a logged reason).
func openPebbleMapStore(dir string) (*pebbleMapStore, error) {
	s, err := pebblestore.Open(dir, "map", MapPebbleOptions(), slog.Default())
	if err != nil {
		return nil, fmt.Errorf("open map %s: %w", dir, err)
	}
	return &pebbleMapStore{s: s}, nil
}

// ErrMapDamaged is the error of a damaged pebble map
// (pebblestore.ErrDamaged): it holds data files but no current MANIFEST
// marker (it would open as a new, partial map), or pebble reported a
// corruption in one of its files. The operator deletes it; the ledger
// rebuilds it from the log.
var ErrMapDamaged = pebblestore.ErrDamaged

// MapEngine returns the engine of the verifiable index a POSIX ledger
// keeps in dir (its --data directory, or its --map-dir): bbolt if dir
// holds vindex.db, pebble if it holds vindex.pebble, "" if neither. Both
// is an error, as for the index (posix.DirEngine): a migration was
// interrupted, and which one is complete is for the migration to say.
// notarize-ledger gives an index rebuilt beside an existing map the map's
// engine.
func MapEngine(dir string) (string, error) {
	var have []string
	for _, c := range []struct{ name, engine string }{{mapDirName, enginePebble}, {mapFileName, engineBbolt}} {
		_, err := os.Stat(filepath.Join(dir, c.name))
		if err == nil {
			have = append(have, c.engine)
			continue
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("open map: %w", err)
		}
	}
	switch len(have) {
	case 2:
		return "", fmt.Errorf("open map: %s holds both %s and %s: a migration was interrupted; run notarize-ledger migrate-index --data DIR (with --map-dir %s if the map has its own) --to pebble again to finish it",
			dir, mapFileName, mapDirName, dir)
	case 1:
		return have[0], nil
	}
	return "", nil
}

// mapEngineOf returns the engine of the map kept in dir: the one it has
// (MapEngine), else the index's (st's IndexEngine), else bbolt.
func mapEngineOf(dir string, st Storage) (string, error) {
	have, err := MapEngine(dir)
	if err != nil || have != "" {
		return have, err
	}
	if e, ok := st.(interface{ IndexEngine() string }); ok && e.IndexEngine() == enginePebble {
		return enginePebble, nil
	}
	return engineBbolt, nil
}

// openLocalMapStore opens the map kept in dir in its engine (mapEngineOf).
func openLocalMapStore(dir string, st Storage) (storage.MapStore, func() error, error) {
	engine, err := mapEngineOf(dir, st)
	if err != nil {
		return nil, nil, err
	}
	if engine == enginePebble {
		m, err := openPebbleMapStore(filepath.Join(dir, mapDirName))
		if err != nil {
			return nil, nil, err
		}
		return m, m.close, nil
	}
	m, err := openBoltMapStore(filepath.Join(dir, mapFileName))
	if err != nil {
		return nil, nil, err
	}
	return m, m.close, nil
}

// pebbleNodes reads map nodes from one snapshot.
type pebbleNodes struct {
	s *pebble.Snapshot
}

// seekNodes is the fewest nodes MapNodes reads with one iterator rather
// than a Get each. Each Get builds its iterators over every level anew;
// one iterator, prefix-seeked in key order (bloom filters still skip the
// files without the key), reuses them: a proof's 63 node IDs take 59–73
// µs instead of 122–179 (BenchmarkPebbleMapNodes), on the
// 1,000,000-statement map 44 instead of 96 (BENCHMARKS, round seventeen).
const seekNodes = 4

// MapNodes implements storage.MapNodeReader.
func (r pebbleNodes) MapNodes(_ context.Context, ids [][]byte) ([][]byte, error) {
	if len(ids) < seekNodes {
		return r.getEach(ids)
	}
	return r.seekEach(ids)
}

// getEach reads ids with a Get each.
func (r pebbleNodes) getEach(ids [][]byte) ([][]byte, error) {
	out, get := make([][]byte, len(ids)), snapGet(r.s)
	for i, id := range ids {
		v, ok, err := get(mapNodeKey(id))
		if err != nil {
			return nil, fmt.Errorf("read map node: %w", err)
		}
		if ok {
			out[i] = v
		}
	}
	return out, nil
}

// seekEach reads ids with one iterator, prefix-seeked in key order.
func (r pebbleNodes) seekEach(ids [][]byte) ([][]byte, error) {
	out := make([][]byte, len(ids))
	keys, order := make([][]byte, len(ids)), make([]int, len(ids))
	for i, id := range ids {
		keys[i], order[i] = mapNodeKey(id), i
	}
	slices.SortFunc(order, func(a, b int) int { return bytes.Compare(keys[a], keys[b]) })
	it, err := r.s.NewIter(&pebble.IterOptions{LowerBound: []byte{mapPfxNodes}, UpperBound: []byte{mapPfxNodes + 1}})
	if err != nil {
		return nil, fmt.Errorf("read map nodes: %w", err)
	}
	fail := func(err error) ([][]byte, error) {
		if cerr := it.Close(); cerr != nil && !errors.Is(cerr, err) { // Close answers the iterator's error again
			err = errors.Join(err, cerr)
		}
		return nil, fmt.Errorf("read map node: %w", err)
	}
	for _, i := range order {
		if !it.SeekPrefixGE(keys[i]) || !bytes.Equal(it.Key(), keys[i]) {
			if err := it.Error(); err != nil { // a seek clears it: not absent, unread
				return fail(err)
			}
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return fail(err)
		}
		out[i] = append([]byte{}, v...) // a copy: v is valid until the next seek; not nil: an empty node is stored
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("read map nodes: %w", err)
	}
	return out, nil
}

func mapNodeKey(id []byte) []byte { return append([]byte{mapPfxNodes}, id...) }
func mapMetaKey(k []byte) []byte  { return append([]byte{mapPfxMeta}, k...) }

// snapGet returns a copy of the value at key in s, and whether there is one.
func snapGet(s *pebble.Snapshot) func([]byte) ([]byte, bool, error) {
	return func(key []byte) ([]byte, bool, error) {
		v, closer, err := s.Get(key)
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
}

func readPebbleMapState(get func([]byte) ([]byte, bool, error)) (storage.MapState, error) {
	var st storage.MapState
	v, ok, err := get(mapMetaKey(mapKeyPosition))
	if err != nil {
		return st, err
	}
	if ok {
		if len(v) != 8 {
			return st, fmt.Errorf("map position of %d bytes", len(v))
		}
		st.Position = binary.BigEndian.Uint64(v)
	}
	v, ok, err = get(mapMetaKey(mapKeyRoot))
	if err != nil {
		return st, err
	}
	if ok {
		if len(v) < 8 {
			return st, fmt.Errorf("map root record of %d bytes", len(v))
		}
		st.Root = &storage.MapRoot{Index: binary.BigEndian.Uint64(v), Entry: slices.Clone(v[8:])}
	}
	return st, nil
}

// view calls fn with the state and nodes of one snapshot.
func (m *pebbleMapStore) view(fn func(storage.MapState, storage.MapNodeReader) error) error {
	db, release, err := m.s.Acquire()
	if err != nil {
		return err
	}
	defer release()
	return m.viewOf(db, fn)
}

// viewOf is view, in an operation that acquired db.
func (m *pebbleMapStore) viewOf(db *pebble.DB, fn func(storage.MapState, storage.MapNodeReader) error) error {
	s := db.NewSnapshot()
	get := snapGet(s)
	st, err := readPebbleMapState(get)
	if err == nil {
		err = fn(st, pebbleNodes{s: s})
	}
	if herr := m.s.Err(); herr != nil {
		err = herr
	}
	return errors.Join(err, s.Close())
}

// MapState implements storage.MapStore.
func (m *pebbleMapStore) MapState(context.Context) (st storage.MapState, err error) {
	err = m.view(func(s storage.MapState, _ storage.MapNodeReader) error {
		st = s
		return nil
	})
	return st, err
}

// MapView implements storage.MapStore: one pebble snapshot.
func (m *pebbleMapStore) MapView(_ context.Context, fn func(storage.MapState, storage.MapNodeReader) error) error {
	return m.view(fn)
}

// MapUpdate implements storage.MapStore: under the update lock, fn reads a
// snapshot, and its commit is one batch committed with pebble.Sync.
func (m *pebbleMapStore) MapUpdate(_ context.Context, fn func(storage.MapState, storage.MapNodeReader) (*storage.MapCommit, error)) error {
	db, release, err := m.s.Acquire()
	if err != nil {
		return err
	}
	defer release()
	m.mu.Lock()
	defer m.mu.Unlock()
	var c *storage.MapCommit
	var from uint64
	err = m.viewOf(db, func(st storage.MapState, r storage.MapNodeReader) (err error) {
		from = st.Position
		c, err = fn(st, r)
		return err
	})
	if err != nil || c == nil {
		return err
	}
	if c.From != from || c.Position <= c.From {
		return fmt.Errorf("%w: commit of [%d, %d), the map is at %d", storage.ErrMapStale, c.From, c.Position, from)
	}
	b := db.NewBatch()
	defer b.Close()
	for _, w := range c.Writes {
		if w.Delete {
			err = b.Delete(mapNodeKey(w.ID), nil)
		} else {
			err = b.Set(mapNodeKey(w.ID), w.Node, nil)
		}
		if err != nil {
			return fmt.Errorf("map update: %w", err)
		}
	}
	if err := b.Set(mapMetaKey(mapKeyPosition), binary.BigEndian.AppendUint64(nil, c.Position), nil); err != nil {
		return fmt.Errorf("map update: %w", err)
	}
	if c.Root != nil {
		if err := b.Set(mapMetaKey(mapKeyRoot), append(binary.BigEndian.AppendUint64(nil, c.Root.Index), c.Root.Entry...), nil); err != nil {
			return fmt.Errorf("map update: %w", err)
		}
	}
	if err := m.s.Err(); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("map update: %w", err)
	}
	return nil
}

// MapReset implements storage.MapStore: every key deleted in one batch.
func (m *pebbleMapStore) MapReset(context.Context) error {
	db, release, err := m.s.Acquire()
	if err != nil {
		return err
	}
	defer release()
	m.mu.Lock()
	defer m.mu.Unlock()
	b := db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange([]byte{0}, []byte{0xff}, nil); err != nil {
		return fmt.Errorf("map reset: %w", err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("map reset: %w", err)
	}
	return nil
}

// close waits for the map's operations in flight and releases the
// database; later operations fail (pebblestore.ErrClosed).
func (m *pebbleMapStore) close() error { return m.s.Close() }

// rebuildPebbleMap removes the pebble map at dir, if any, unless a ledger
// holds it (ErrMapInUse). It takes pebble's own LOCK on the directory (the
// lock a ledger's open holds, in this process or another) rather than
// opening the store: a map too damaged to open (a malformed MANIFEST, a
// missing sstable) is removed all the same, as the operator asked.
func rebuildPebbleMap(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	lock, err := vfs.Default.Lock(filepath.Join(dir, "LOCK"))
	if err != nil {
		if pebblestore.Locked(err) {
			return fmt.Errorf("rebuild map %s: %w", dir, ErrMapInUse)
		}
		return fmt.Errorf("rebuild map %s: %w", dir, err)
	}
	err = os.RemoveAll(dir)
	if cerr := lock.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("rebuild map: %w", err)
	}
	return nil
}

// MapMigration describes the POSIX map's move from bbolt to pebble, for
// notarize-ledger migrate-index (posix.MigrateBolt): the bbolt file and
// the pebble directory inside a data directory, and the pebble key prefix
// of each bbolt bucket.
func MapMigration() (file, dir string, prefixes map[string]byte) {
	return mapFileName, mapDirName, map[string]byte{string(mapBucketNodes): mapPfxNodes, string(mapBucketMeta): mapPfxMeta}
}
