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
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"

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
	db *pebble.DB
	h  *mapHealth // a corruption pebble reported: every read and write fails after it
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
// (posix.OpenPebbleStore: a store that lost its MANIFEST marker is
// refused, a corruption fails its reads, a fatal pebble error stops the
// process with a logged reason).
func openPebbleMapStore(dir string) (*pebbleMapStore, error) {
	db, h, err := openPebbleMapDB(dir, MapPebbleOptions(), slog.Default())
	if err != nil {
		return nil, fmt.Errorf("open map %s: %w", dir, err)
	}
	return &pebbleMapStore{db: db, h: h}, nil
}

// ErrMapDamaged is the error of a pebble map that is damaged: it holds
// data files but no current MANIFEST marker (it would open as a new,
// partial map), or pebble reported a corruption in one of its files. The
// operator deletes it; the ledger rebuilds it from the log. (The map's
// copy of package posix's OpenPebbleStore: package ledger does not import
// its drivers.)
var ErrMapDamaged = errors.New("pebble map damaged")

// mapHealth records a corruption pebble reported in the map.
type mapHealth struct {
	dir     string
	corrupt atomic.Pointer[string]
}

// Err returns nil while the map is sound, else an ErrMapDamaged error.
func (h *mapHealth) Err() error {
	if h == nil {
		return nil
	}
	if c := h.corrupt.Load(); c != nil {
		return fmt.Errorf("%w: %s: %s; stop the ledger and delete %s: it is rebuilt from the log", ErrMapDamaged, h.dir, *c, h.dir)
	}
	return nil
}

// mapPebbleExit ends the process after pebble's Logger.Fatalf (tests replace it).
var mapPebbleExit = os.Exit

// mapPebbleLogger is the map's pebble logger: chatter dropped, errors to
// slog, Fatalf (pebble cannot go on: a failed WAL write on a full disk)
// an slog error naming the map and what to do, then exit status 1 (a
// panic would leave references held and kill the process with a trace).
type mapPebbleLogger struct {
	l   *slog.Logger
	dir string
}

func (p mapPebbleLogger) Infof(string, ...any) {}
func (p mapPebbleLogger) Errorf(format string, args ...any) {
	p.l.Error("pebble map store", slog.String("path", p.dir), slog.String("msg", fmt.Sprintf(format, args...)))
}
func (p mapPebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error("pebble map store failed: the ledger stops", slog.String("path", p.dir), slog.String("error", msg),
		slog.String("todo", "free disk space if it is full and start the ledger again; if the map is damaged, delete "+p.dir+": it is rebuilt from the log"))
	mapPebbleExit(1)
	panic("pebble: " + msg)
}

// openPebbleMapDB opens the map database at dir with opts: a directory
// that holds a store's files is opened with ErrorIfNotExists (a lost
// MANIFEST marker would open a new, partial map at the WAL's position:
// refused, ErrMapDamaged); a corruption pebble reports is logged and fails
// the map's reads and writes (mapHealth). It releases opts.Cache's reference.
func openPebbleMapDB(dir string, opts *pebble.Options, logger *slog.Logger) (*pebble.DB, *mapHealth, error) {
	if opts.Cache != nil {
		defer opts.Cache.Unref()
	}
	h := &mapHealth{dir: dir}
	opts.Logger = mapPebbleLogger{l: logger, dir: dir}
	opts.EventListener = &pebble.EventListener{DataCorruption: func(info pebble.DataCorruptionInfo) {
		msg := fmt.Sprintf("on-disk corruption in %s: %v", info.Path, info.Details)
		h.corrupt.CompareAndSwap(nil, &msg)
		logger.Error("pebble map store corrupt: its reads fail from now on", slog.String("path", dir), slog.String("error", msg),
			slog.String("todo", "stop the ledger and delete "+dir+": it is rebuilt from the log"))
	}}
	had, err := hasPebbleFiles(dir)
	if err != nil {
		return nil, nil, err
	}
	opts.ErrorIfNotExists = had
	db, err := pebble.Open(dir, opts)
	if errors.Is(err, pebble.ErrDBDoesNotExist) {
		return nil, nil, fmt.Errorf("%w: %s holds pebble files but no current MANIFEST (its marker file is lost): it would open as a new, partial map; stop the ledger and delete %s: it is rebuilt from the log",
			ErrMapDamaged, dir, dir)
	}
	if err != nil {
		return nil, nil, err
	}
	return db, h, nil
}

// hasPebbleFiles reports whether dir holds a pebble store's files (a
// MANIFEST, its marker, a WAL, a table, a blob file).
func hasPebbleFiles(dir string) (bool, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "MANIFEST-") || strings.HasPrefix(n, "marker.") ||
			strings.HasSuffix(n, ".sst") || strings.HasSuffix(n, ".log") || strings.HasSuffix(n, ".blob") {
			return true, nil
		}
	}
	return false, nil
}

// mapEngineOf returns the engine of the map kept in dir: the one it has
// (vindex.db: bbolt; vindex.pebble: pebble), else the index's (st's
// IndexEngine), else bbolt. Both is an error, as for the index
// (posix.DirEngine): a migration was interrupted, and which one is
// complete is for the migration to say.
func mapEngineOf(dir string, st Storage) (string, error) {
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

// pebbleNodes reads map nodes from one snapshot (or an indexed batch).
type pebbleNodes struct {
	get func([]byte) ([]byte, bool, error)
}

// MapNodes implements storage.MapNodeReader.
func (r pebbleNodes) MapNodes(_ context.Context, ids [][]byte) ([][]byte, error) {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		v, ok, err := r.get(mapNodeKey(id))
		if err != nil {
			return nil, fmt.Errorf("read map node: %w", err)
		}
		if ok {
			out[i] = v
		}
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
	if err := m.h.Err(); err != nil {
		return err
	}
	s := m.db.NewSnapshot()
	get := snapGet(s)
	st, err := readPebbleMapState(get)
	if err == nil {
		err = fn(st, pebbleNodes{get: get})
	}
	if herr := m.h.Err(); herr != nil {
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
	m.mu.Lock()
	defer m.mu.Unlock()
	var c *storage.MapCommit
	var from uint64
	err := m.view(func(st storage.MapState, r storage.MapNodeReader) (err error) {
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
	b := m.db.NewBatch()
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
	if err := m.h.Err(); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("map update: %w", err)
	}
	return nil
}

// MapReset implements storage.MapStore: every key deleted in one batch.
func (m *pebbleMapStore) MapReset(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange([]byte{0}, []byte{0xff}, nil); err != nil {
		return fmt.Errorf("map reset: %w", err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("map reset: %w", err)
	}
	return nil
}

func (m *pebbleMapStore) close() error { return m.db.Close() }

// rebuildPebbleMap removes the pebble map at dir, if any, unless a ledger
// holds it (ErrMapInUse): pebble's LOCK file is held by the process that
// opened it.
func rebuildPebbleMap(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	m, err := openPebbleMapStore(dir)
	if errors.Is(err, ErrMapDamaged) {
		// Not held (pebble takes its LOCK before it looks for the
		// MANIFEST), and to be rebuilt anyway.
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("rebuild map: %w", err)
		}
		return nil
	}
	if err != nil {
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) || strings.Contains(err.Error(), "lock held") {
			return fmt.Errorf("rebuild map %s: %w", dir, ErrMapInUse)
		}
		return fmt.Errorf("rebuild map %s: %w", dir, err)
	}
	if err := m.close(); err != nil {
		return fmt.Errorf("rebuild map %s: %w", dir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
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
