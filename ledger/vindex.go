package ledger

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/transparency-dev/tessera"
	bolt "go.etcd.io/bbolt"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/vindex"
)

// The verifiable index (issue 11): a map from (subject digest, signer key
// ID) to a commitment to that key's statements about that digest (package
// vindex), derived from the log in log order and committed to by it. Every
// MapCommitEntries statements, or MapCommitInterval after the first one
// that is not yet committed, the ledger computes the map after the log's
// first S entries, appends a map-root entry (notarize.MapRoot: the root and
// S, signed by the checkpoint key) and, once that entry is published, keeps
// the new map. The stored map is therefore always the map of the newest
// committed root, and a current lookup proves each asked-for key against it
// (api.MapProof); the client reads the log after S itself.

// Defaults of the map's commitment cadence (Config.MapCommitEntries,
// Config.MapCommitInterval). A client reads the tail of the log after the
// newest root: about MapCommitEntries entries at most, plus what arrived
// while the root was being published.
const (
	DefaultMapCommitEntries  = 1024
	DefaultMapCommitInterval = 2 * time.Second
)

// mapFileName is the map's bbolt file in the data directory (POSIX storage).
const mapFileName = "vindex.db"

// mapPoll is how often the map follower looks for new entries.
const mapPoll = 50 * time.Millisecond

// bbolt layout of the map: nodes by vindex.NodeID.Bytes(), and in meta the
// position (entries folded into the stored map) and the newest committed
// root (its log index, then the entry's bytes).
var (
	mapBucketNodes = []byte("nodes")
	mapBucketMeta  = []byte("meta")
	mapKeyPosition = []byte("position")
	mapKeyRoot     = []byte("root")
)

// mapStore keeps the map in a bbolt file of its own.
type mapStore struct {
	db *bolt.DB
}

// openMapStore opens (creating if needed) the map database at path.
func openMapStore(path string) (*mapStore, error) {
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
	return &mapStore{db: db}, nil
}

// boltNodes reads map nodes in one bbolt transaction.
type boltNodes struct{ b *bolt.Bucket }

// ReadNode implements vindex.NodeReader.
func (r boltNodes) ReadNode(id vindex.NodeID) (vindex.Node, bool, error) {
	v := r.b.Get(id.Bytes())
	if v == nil {
		return vindex.Node{}, false, nil
	}
	n, err := vindex.UnmarshalNode(v)
	return n, err == nil, err
}

// committedRoot is the newest map-root entry in the log.
type committedRoot struct {
	index uint64
	entry []byte
}

// mapState is what the map holds: its position and newest committed root.
type mapState struct {
	position uint64
	root     *committedRoot
}

func readMapState(tx *bolt.Tx) (mapState, error) {
	meta := tx.Bucket(mapBucketMeta)
	var st mapState
	if v := meta.Get(mapKeyPosition); v != nil {
		if len(v) != 8 {
			return st, fmt.Errorf("map position of %d bytes", len(v))
		}
		st.position = binary.BigEndian.Uint64(v)
	}
	if v := meta.Get(mapKeyRoot); v != nil {
		if len(v) < 8 {
			return st, fmt.Errorf("map root record of %d bytes", len(v))
		}
		st.root = &committedRoot{index: binary.BigEndian.Uint64(v), entry: slices.Clone(v[8:])}
	}
	return st, nil
}

// state returns the map's position and newest committed root.
func (m *mapStore) state() (st mapState, err error) {
	err = m.db.View(func(tx *bolt.Tx) error {
		st, err = readMapState(tx)
		return err
	})
	return st, err
}

// commit stores writes, the new position and the committed root at once.
func (m *mapStore) commit(writes []vindex.NodeWrite, position uint64, root *committedRoot) error {
	return m.db.Update(func(tx *bolt.Tx) error {
		nodes := tx.Bucket(mapBucketNodes)
		for _, w := range writes {
			var err error
			if w.Delete {
				err = nodes.Delete(w.ID.Bytes())
			} else {
				err = nodes.Put(w.ID.Bytes(), w.Node.Marshal())
			}
			if err != nil {
				return err
			}
		}
		meta := tx.Bucket(mapBucketMeta)
		if err := meta.Put(mapKeyPosition, binary.BigEndian.AppendUint64(nil, position)); err != nil {
			return err
		}
		if root != nil {
			return meta.Put(mapKeyRoot, append(binary.BigEndian.AppendUint64(nil, root.index), root.entry...))
		}
		return nil
	})
}

// proofs returns the newest committed root and the proof of each of keyIDs
// (sorted) for d, read in one transaction so that they agree.
func (m *mapStore) proofs(d notarize.Digest, keyIDs []string) (*committedRoot, []api.KeyMapProof, error) {
	var root *committedRoot
	out := make([]api.KeyMapProof, 0, len(keyIDs))
	err := m.db.View(func(tx *bolt.Tx) error {
		st, err := readMapState(tx)
		if err != nil {
			return err
		}
		root = st.root
		r := boltNodes{tx.Bucket(mapBucketNodes)}
		for _, k := range keyIDs {
			p, value, err := vindex.Prove(r, vindex.MapKey(d, k))
			if err != nil {
				return err
			}
			out = append(out, keyMapProof(k, p, value))
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("map proofs: %w", err)
	}
	return root, out, nil
}

// keyMapProof is p and value on the wire.
func keyMapProof(keyID string, p *vindex.Proof, value []byte) api.KeyMapProof {
	kp := api.KeyMapProof{KeyID: keyID, Value: value, Depth: p.Depth, Bitmap: p.Bitmap}
	for _, s := range p.Siblings {
		kp.Siblings = append(kp.Siblings, slices.Clone(s[:]))
	}
	if p.LeafKey != nil {
		kp.LeafKey, kp.LeafValueHash = slices.Clone(p.LeafKey[:]), slices.Clone(p.LeafValueHash[:])
	}
	return kp
}

func (m *mapStore) close() error { return m.db.Close() }

// mapFollower folds the log into the map and commits its roots.
type mapFollower struct {
	l       *Ledger
	m       *mapStore
	entries int
	every   time.Duration
	cancel  context.CancelFunc
	done    chan struct{}
}

// mapPath returns where the map's file is: in Config.MapDir, else in the
// storage's data directory (POSIX); "" when there is neither.
func (l *Ledger) mapPath() string {
	if l.cfg.MapDir != "" {
		return filepath.Join(l.cfg.MapDir, mapFileName)
	}
	if d, ok := l.st.(interface{ Dir() string }); ok {
		return filepath.Join(d.Dir(), mapFileName)
	}
	return ""
}

// startMap opens the map at path and starts its follower; it stops when
// ctx is done, and close waits for it.
func (l *Ledger) startMap(ctx context.Context, path string) error {
	if l.cfg.noMap {
		return nil
	}
	m, err := openMapStore(path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &mapFollower{l: l, m: m, entries: l.cfg.mapCommitEntries(), every: l.cfg.mapCommitInterval(),
		cancel: cancel, done: make(chan struct{})}
	l.vmap = f
	go f.run(ctx)
	return nil
}

// closeMap stops the map follower, waits for it and closes the map. It is
// called before the log shuts down: a root appended meanwhile is then
// sequenced, and the follower stops waiting for its publication.
func (l *Ledger) closeMap() error {
	if l.vmap == nil {
		return nil
	}
	l.vmap.cancel()
	<-l.vmap.done
	return l.vmap.m.close()
}

func (c Config) mapCommitEntries() int {
	if c.MapCommitEntries > 0 {
		return c.MapCommitEntries
	}
	return DefaultMapCommitEntries
}

func (c Config) mapCommitInterval() time.Duration {
	if c.MapCommitInterval > 0 {
		return c.MapCommitInterval
	}
	return DefaultMapCommitInterval
}

// run commits map roots until ctx is done.
func (f *mapFollower) run(ctx context.Context) {
	defer close(f.done)
	var pendingSince time.Time // when entries after the map's position were first seen
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(mapPoll):
		}
		since, err := f.step(ctx, pendingSince)
		pendingSince = since
		if err != nil && ctx.Err() == nil {
			f.l.log.WarnContext(ctx, "verifiable index", slog.Any("error", err))
		}
	}
}

// step folds the entries after the map's position into it and commits a
// new root, once MapCommitEntries entries wait or the first waited
// MapCommitInterval. It returns when the waiting entries were first seen
// (zero when none wait).
func (f *mapFollower) step(ctx context.Context, pendingSince time.Time) (time.Time, error) {
	st, err := f.m.state()
	if err != nil {
		return pendingSince, err
	}
	size := f.l.store.Processed()
	if size <= st.position {
		return time.Time{}, nil
	}
	if pendingSince.IsZero() {
		pendingSince = time.Now()
	}
	if size-st.position < uint64(f.entries) && time.Since(pendingSince) < f.every {
		return pendingSince, nil
	}
	if locker, ok := f.l.st.(mapCommitLocker); ok {
		// Instances sharing a log take turns: under the lock, fold up to
		// the latest published checkpoint, which holds every root an
		// earlier turn appended, so this root covers more than any.
		release, err := locker.MapCommitLock(ctx)
		if err != nil {
			return pendingSince, err
		}
		defer release()
		if size, err = f.publishedSize(ctx); err != nil {
			return pendingSince, err
		}
	}
	root, writes, stmts, err := f.fold(ctx, st.position, size)
	if err != nil {
		return pendingSince, fmt.Errorf("fold entries [%d, %d): %w", st.position, size, err)
	}
	if stmts == 0 {
		// Only map roots or entries that are no statements: the map and
		// its root stay.
		return time.Time{}, f.m.commit(nil, size, nil)
	}
	cr, err := f.appendRoot(ctx, size, root)
	if err != nil {
		return pendingSince, err
	}
	if err := f.m.commit(writes, size, cr); err != nil {
		return pendingSince, fmt.Errorf("store map at %d: %w", size, err)
	}
	f.l.log.DebugContext(ctx, "map root committed", slog.Uint64("size", size), slog.Uint64("index", cr.index), slog.Int("statements", stmts))
	return time.Time{}, nil
}

// mapCommitLocker is a storage shared by several ledger instances
// (ledger/storage/mysql): its lock serializes their map commitments.
type mapCommitLocker interface {
	MapCommitLock(ctx context.Context) (release func(), err error)
}

// publishedSize waits until the index covers the latest published
// checkpoint and returns the entries it has processed (at least that
// checkpoint's size).
func (f *mapFollower) publishedSize(ctx context.Context) (uint64, error) {
	_, cp, err := f.l.latestCheckpoint(ctx)
	if err != nil {
		return 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, indexWait)
	defer cancel()
	if err := f.l.store.WaitProcessed(wctx, cp.Size); err != nil {
		return 0, fmt.Errorf("wait for the index to cover %d entries: %w", cp.Size, err)
	}
	return f.l.store.Processed(), nil
}

// fold computes the map after the entries [from, to) (from being the
// stored map's position): its root, the writes that store it and the
// number of statements among the entries.
func (f *mapFollower) fold(ctx context.Context, from, to uint64) (root vindex.Hash, writes []vindex.NodeWrite, stmts int, err error) {
	err = f.m.db.View(func(tx *bolt.Tx) error {
		nodes := boltNodes{tx.Bucket(mapBucketNodes)}
		batch := vindex.NewBatch(nodes)
		idx := make([]uint64, 0, to-from)
		for i := from; i < to; i++ {
			idx = append(idx, i)
		}
		var addErr error
		if err := f.l.store.entries(ctx, idx, func(i uint64, data []byte) bool {
			ok, err := batch.Add(i, data)
			if ok {
				stmts++
			}
			addErr = err
			return err == nil
		}); err != nil {
			return err
		}
		if addErr != nil || stmts == 0 {
			return addErr
		}
		var err error
		root, writes, err = vindex.Apply(nodes, batch.Updates())
		return err
	})
	return root, writes, stmts, err
}

// appendRoot appends the map-root entry of root after the log's first
// size entries and waits until a published checkpoint covers it.
func (f *mapFollower) appendRoot(ctx context.Context, size uint64, root vindex.Hash) (*committedRoot, error) {
	mr := &notarize.MapRoot{Origin: f.l.Origin(), Size: size, Root: root}
	entry, err := mr.Sign(f.l.id.Signer)
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, receiptTimeout)
	defer cancel()
	idx, _, err := f.l.awaiter.Await(actx, f.l.add(actx, tessera.NewEntry(entry)))
	if err != nil {
		return nil, fmt.Errorf("append map root for %d entries: %w", size, err)
	}
	return &committedRoot{index: idx.Index, entry: entry}, nil
}

// mapProof returns the map proof of a current lookup for d by keyIDs, or
// nil when the ledger keeps no map. It is read before the answer's
// checkpoint, so that the checkpoint covers the root entry.
func (l *Ledger) mapProof(d notarize.Digest, keyIDs []string) (*api.MapProof, *committedRoot, error) {
	if l.vmap == nil {
		return nil, nil, nil
	}
	ids := slices.Clone(keyIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	root, keys, err := l.vmap.m.proofs(d, ids)
	if err != nil {
		return nil, nil, err
	}
	return &api.MapProof{Keys: keys}, root, nil
}

// proveMapRoot adds the committed root entry and its inclusion proof under
// a checkpoint of size to mp.
func (l *Ledger) proveMapRoot(ctx context.Context, mp *api.MapProof, root *committedRoot, size uint64) error {
	if mp == nil || root == nil {
		return nil
	}
	if root.index >= size {
		return fmt.Errorf("%w: map root entry %d is not yet in the checkpoint of %d entries", ErrUnavailable, root.index, size)
	}
	proofs, err := l.inclusionProofs(ctx, size, root.index)
	if err != nil {
		return err
	}
	idx := root.index
	mp.RootIndex, mp.RootEntry, mp.RootInclusionProof = &idx, root.entry, proofs[0]
	return nil
}

// ErrMapInUse is returned by RebuildMap while a ledger holds the map.
// ErrNoMapDir is returned by New for a storage that keeps no files of its
// own (MySQL) when Config.MapDir is empty: without a map, every lookup's
// completeness proof would be missing and clients would fail closed once
// the log outgrows what they read themselves, so the ledger refuses to
// start instead.
var ErrNoMapDir = errors.New("this storage keeps the log in a database: the verifiable index needs a directory for this instance's copy of it (notarize-ledger --map-dir DIR; any empty directory, derived data rebuilt from the log)")

var ErrMapInUse = errors.New("the verifiable index is in use by a running ledger; stop it first")

// RebuildMap drops the verifiable index of the ledger whose POSIX data
// directory is dir, so that the ledger folds it again from the whole log
// when it next starts, and commits a new root (the map is derived data:
// every committed root can be recomputed from the log, by the ledger or by
// anyone following it). It refuses while a ledger holds the map.
func RebuildMap(dir string) error {
	path := filepath.Join(dir, mapFileName)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 500 * time.Millisecond})
	if errors.Is(err, bolt.ErrTimeout) {
		return fmt.Errorf("rebuild map %s: %w", path, ErrMapInUse)
	}
	if err != nil {
		return fmt.Errorf("rebuild map %s: %w", path, err)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("rebuild map %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("rebuild map: %w", err)
	}
	return nil
}
