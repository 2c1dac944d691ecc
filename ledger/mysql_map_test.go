package ledger

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/storage"
	mysqlstorage "github.com/notarize/docker-notarize/ledger/storage/mysql"
	"github.com/notarize/docker-notarize/notarize"
)

// Tests of the verifiable index kept in the MySQL database (one map shared
// by every instance; storage.MapStore), beside the bbolt one.

// mapStores returns a fresh map store of each kind: bbolt (POSIX) and the
// MySQL driver's.
func mapStores(t *testing.T) map[string]storage.MapStore {
	t.Helper()
	bm, err := openBoltMapStore(filepath.Join(t.TempDir(), mapFileName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bm.close() })
	pm, err := openPebbleMapStore(filepath.Join(t.TempDir(), mapDirName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pm.close() })
	st := mysqlAt(mysqlEnv.database(t))(t)
	t.Cleanup(func() { _ = st.Close() })
	return map[string]storage.MapStore{"bbolt": bm, "pebble": pm, "mysql": st.Map()}
}

// commitOf returns an update that stores c, whatever the state it is given.
func commitOf(c storage.MapCommit) func(storage.MapState, storage.MapNodeReader) (*storage.MapCommit, error) {
	return func(storage.MapState, storage.MapNodeReader) (*storage.MapCommit, error) { return &c, nil }
}

// readNode reads one node of m (nil when none is stored).
func readNode(t *testing.T, m storage.MapStore, id []byte) []byte {
	t.Helper()
	var out []byte
	if err := m.MapView(t.Context(), func(_ storage.MapState, r storage.MapNodeReader) error {
		got, err := r.MapNodes(t.Context(), [][]byte{id})
		out = got[0]
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMapStoreRefusesStaleCommits: a map store applies a commit only from
// the position it holds. A commit folded from a snapshot that another
// writer has since advanced (raced), or that claims a position the map is
// not at (lying), is refused with ErrMapStale and writes nothing, so two
// instances never both apply the same range of the log and the map's
// updates stay in log order.
func TestMapStoreRefusesStaleCommits(t *testing.T) {
	idA, idB, idC := []byte{0, 1, 0x80}, []byte{0, 1, 0}, []byte{0, 2, 0x40}
	root := func(i uint64) *storage.MapRoot { return &storage.MapRoot{Index: i, Entry: []byte{byte(i)}} }
	for name, m := range mapStores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			if err := m.MapUpdate(ctx, commitOf(storage.MapCommit{From: 0, Position: 3, Root: root(3),
				Writes: []storage.MapNodeWrite{{ID: idA, Node: []byte("a")}}})); err != nil {
				t.Fatal(err)
			}
			// A writer folds from a snapshot at 3...
			var seen storage.MapState
			if err := m.MapView(ctx, func(st storage.MapState, _ storage.MapNodeReader) error { seen = st; return nil }); err != nil {
				t.Fatal(err)
			}
			// ...another advances the map to 5 meanwhile...
			if err := m.MapUpdate(ctx, commitOf(storage.MapCommit{From: 3, Position: 5, Root: root(5),
				Writes: []storage.MapNodeWrite{{ID: idB, Node: []byte("b")}}})); err != nil {
				t.Fatal(err)
			}
			// ...and the first one's commit of [3, 6) is refused.
			for _, c := range []storage.MapCommit{
				{From: seen.Position, Position: 6, Root: root(6)}, // raced
				{From: 7, Position: 9, Root: root(9)},             // lying: ahead of the map
				{From: 5, Position: 5, Root: root(10)},            // an empty range
				{From: 4, Position: 6, Root: root(11)},            // overlapping [3, 5)
			} {
				c.Writes = []storage.MapNodeWrite{{ID: idC, Node: []byte("c")}, {ID: idA, Delete: true}}
				if err := m.MapUpdate(ctx, commitOf(c)); !errors.Is(err, storage.ErrMapStale) {
					t.Fatalf("commit of [%d, %d) onto a map at 5: %v, want ErrMapStale", c.From, c.Position, err)
				}
			}
			st, err := m.MapState(ctx)
			if err != nil || st.Position != 5 || st.Root == nil || st.Root.Index != 5 {
				t.Fatalf("state after refused commits: %+v %v, want position 5 and root 5", st, err)
			}
			if got := readNode(t, m, idC); got != nil {
				t.Fatalf("a refused commit wrote a node: %q", got)
			}
			if got := readNode(t, m, idA); !bytes.Equal(got, []byte("a")) {
				t.Fatalf("a refused commit deleted a node: %q", got)
			}
			// A commit with no root keeps the root.
			if err := m.MapUpdate(ctx, commitOf(storage.MapCommit{From: 5, Position: 8})); err != nil {
				t.Fatal(err)
			}
			if st, err := m.MapState(ctx); err != nil || st.Position != 8 || st.Root == nil || st.Root.Index != 5 || !bytes.Equal(st.Root.Entry, []byte{5}) {
				t.Fatalf("state after a commit without root: %+v %v", st, err)
			}
			// A reset drops everything.
			if err := m.MapReset(ctx); err != nil {
				t.Fatal(err)
			}
			if st, err := m.MapState(ctx); err != nil || st.Position != 0 || st.Root != nil {
				t.Fatalf("state after reset: %+v %v", st, err)
			}
			if got := readNode(t, m, idB); got != nil {
				t.Fatalf("node after reset: %q", got)
			}
		})
	}
}

// TestMapMySQLUpdateLock: while one instance updates the shared map (it
// holds the lock from reading the position until its root is stored),
// another is refused at once with ErrMapBusy instead of folding the same
// entries; once the first is done, the second proceeds from the new
// position.
func TestMapMySQLUpdateLock(t *testing.T) {
	dsn := mysqlEnv.database(t)
	a, b := mysqlAt(dsn)(t), mysqlAt(dsn)(t)
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- a.Map().MapUpdate(t.Context(), func(st storage.MapState, _ storage.MapNodeReader) (*storage.MapCommit, error) {
			close(inside)
			<-release
			return &storage.MapCommit{From: st.Position, Position: 4}, nil
		})
	}()
	<-inside
	start := time.Now()
	err := b.Map().MapUpdate(t.Context(), func(storage.MapState, storage.MapNodeReader) (*storage.MapCommit, error) {
		t.Error("a second instance updated the map while the first held it")
		return nil, nil
	})
	if !errors.Is(err, storage.ErrMapBusy) {
		t.Fatalf("update while another instance updates: %v after %v, want ErrMapBusy", err, time.Since(start))
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := b.Map().MapUpdate(t.Context(), func(st storage.MapState, _ storage.MapNodeReader) (*storage.MapCommit, error) {
		if st.Position != 4 {
			t.Errorf("second update from %d, want 4", st.Position)
		}
		return &storage.MapCommit{From: st.Position, Position: 6}, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// submitMapRounds submits statements about shared and new digests to the
// instances in turn, waiting each round for the map to cover the log.
func submitMapRounds(t *testing.T, s *testSigner, d notarize.Digest, rounds int, ledgers ...*testLedger) {
	t.Helper()
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	for round := range rounds {
		for i, tl := range ledgers {
			st := []notarize.Status{notarize.StatusTrusted, notarize.StatusUntrusted}[(round+i)%2]
			tl.submit(t, s.sign(t, d, st, t0.Add(time.Duration(10*round+i)*time.Minute)), http.StatusCreated)
			tl.submit(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, t0), http.StatusCreated)
		}
		waitShared(t, ledgers...)
	}
}

// waitShared waits until every instance's index covers the log and the
// shared map covers it.
func waitShared(t *testing.T, ledgers ...*testLedger) {
	t.Helper()
	var n uint64
	for _, tl := range ledgers {
		n = max(n, tl.store.Processed())
	}
	for _, tl := range ledgers {
		if err := tl.store.WaitProcessed(t.Context(), n); err != nil {
			t.Fatal(err)
		}
		waitMapCovers(t, tl, tl.store.Processed())
	}
}

// mapRootCovers returns the size the newest committed root covers.
func mapRootCovers(t *testing.T, tl *testLedger) (storage.MapState, uint64) {
	t.Helper()
	st, err := tl.vmap.m.MapState(t.Context())
	if err != nil || st.Root == nil {
		t.Fatalf("map state: %+v %v", st, err)
	}
	mr, err := notarize.ParseMapRoot(st.Root.Entry, tl.id.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	return st, mr.Size
}

// TestMapMySQLRebuild: `notarize-ledger map-rebuild --storage mysql`
// (RebuildSharedMap) drops the shared map while two instances run; they
// fold it again from the whole log, in chunks, and commit one root that
// covers the whole log, never fewer entries than a root before it; every
// root in the log, before and after the rebuild, recomputes from the log.
func TestMapMySQLRebuild(t *testing.T) {
	dsn := mysqlEnv.database(t)
	skey := noteKey(t, "map.example/rebuild")
	cfg := mysqlConfig(t, skey)
	cfg.MapCommitInterval, cfg.mapBuildChunk = 50*time.Millisecond, 3
	a := startLedgerAt(t, mysqlAt(dsn), cfg)
	b := startLedgerAt(t, mysqlAt(dsn), cfg)
	s, d := newTestSigner(t), randomDigest(t)
	submitMapRounds(t, s, d, 2, a, b)
	_, before := mapRootCovers(t, a)
	rootsBefore := recomputeRoots(t, a)

	st := mysqlAt(dsn)(t)
	err := RebuildSharedMap(t.Context(), st)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	waitShared(t, a, b)
	state, after := mapRootCovers(t, b)
	if after < before {
		t.Fatalf("the rebuilt map's root covers %d entries, an earlier root %d", after, before)
	}
	if err := a.store.WaitProcessed(t.Context(), state.Root.Index+1); err != nil { // the new root's entry is in what a reads
		t.Fatal(err)
	}
	if n := recomputeRoots(t, a); n <= rootsBefore {
		t.Fatalf("%d roots after the rebuild, %d before", n, rootsBefore)
	}
	resp, _ := a.getLookup(t, lookupURL(a.url, d, api.PathCurrentSuffix, keyQuery(s.keyID)))
	if resp.Map == nil || resp.Map.RootIndex == nil || *resp.Map.RootIndex < state.Root.Index {
		t.Fatalf("current lookup after the rebuild: map proof %+v, want one against root entry %d or later", resp.Map, state.Root.Index)
	}
	px := posixAt(t.TempDir())(t)
	defer px.Close()
	if err := RebuildSharedMap(t.Context(), px); err == nil {
		t.Fatal("RebuildSharedMap of POSIX storage succeeded")
	}
}

// TestMapMySQLUpgradeFromV4: a database of schema version 4, whose
// instances each kept a copy of the map in a directory (--map-dir) and
// committed roots to the log, is migrated to version 5 by the first
// instance to start: the map tables start empty, that instance folds the
// whole log into them (in chunks) and commits a root covering it all;
// the old directory is ignored (with a warning) and may be deleted. An
// operator only upgrades the binary.
func TestMapMySQLUpgradeFromV4(t *testing.T) {
	dsn := mysqlEnv.database(t)
	skey := noteKey(t, "map.example/upgrade")
	cfg := mysqlConfig(t, skey)
	cfg.MapCommitInterval = 50 * time.Millisecond
	old := startLedgerAt(t, mysqlAt(dsn), cfg)
	s, d := newTestSigner(t), randomDigest(t)
	submitMapRounds(t, s, d, 2, old)
	_, before := mapRootCovers(t, old)
	old.close(t)

	// Take the database back to version 4, as that release left it: no
	// map tables; each instance had its own map file.
	db := openSQL(t, dsn)
	for _, q := range []string{
		"DROP TABLE `notarize_map_node`",
		"DROP TABLE `notarize_map_state`",
		"UPDATE `notarize_schema` SET `version` = 4",
	} {
		if _, err := db.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	mapDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(mapDir, mapFileName), []byte("a version 4 map file"), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg.MapDir, cfg.mapBuildChunk = mapDir, 2
	tl := startLedgerAt(t, mysqlAt(dsn), cfg)
	var version int
	if err := db.QueryRowContext(t.Context(), "SELECT `version` FROM `notarize_schema` WHERE `id` = 0").Scan(&version); err != nil || version != 5 {
		t.Fatalf("schema version %d (%v), want 5", version, err)
	}
	waitShared(t, tl)
	state, after := mapRootCovers(t, tl)
	if after < before {
		t.Fatalf("the upgraded map's root covers %d entries, the version 4 root %d", after, before)
	}
	if err := tl.store.WaitProcessed(t.Context(), state.Root.Index+1); err != nil {
		t.Fatal(err)
	}
	if recomputeRoots(t, tl) < 2 {
		t.Fatal("fewer than 2 roots in the log")
	}
	if b, err := os.ReadFile(filepath.Join(mapDir, mapFileName)); err != nil || string(b) != "a version 4 map file" {
		t.Fatalf("the ignored --map-dir was touched: %q %v", b, err)
	}
	// New statements are folded into the shared map and proven.
	submitMapRounds(t, s, d, 1, tl)
	resp, _ := tl.getLookup(t, lookupURL(tl.url, d, api.PathCurrentSuffix, keyQuery(s.keyID)))
	if resp.Map == nil || resp.Map.RootIndex == nil {
		t.Fatalf("current lookup after the upgrade: no map proof")
	}
	var nodes int
	if err := db.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM `notarize_map_node`").Scan(&nodes); err != nil || nodes == 0 {
		t.Fatalf("map nodes in the database: %d %v", nodes, err)
	}
}

// frozenIndex is a MySQL index an instance stops following while frozen:
// the instance's index lags behind the shared one (a slow instance).
type frozenIndex struct {
	storage.Index
	frozen atomic.Bool
	at     atomic.Uint64
}

func (f *frozenIndex) Position(ctx context.Context) (uint64, error) {
	if f.frozen.Load() {
		return f.at.Load(), nil
	}
	return f.Index.Position(ctx)
}

func (f *frozenIndex) Write(ctx context.Context, next uint64, batch []storage.Row) (bool, error) {
	if f.frozen.Load() {
		return false, errors.New("index frozen by the test")
	}
	return f.Index.Write(ctx, next, batch)
}

// laggingStorage is MySQL storage whose index is idx.
type laggingStorage struct {
	*mysqlstorage.Storage
	idx *frozenIndex
}

func (s laggingStorage) Index() storage.Index { return s.idx }

// orphaningMap appends its update's root entry, then fails before storing
// the commit, as an instance that dies (or times out) between the two.
type orphaningMap struct{ storage.MapStore }

func (m orphaningMap) MapUpdate(ctx context.Context, fn func(storage.MapState, storage.MapNodeReader) (*storage.MapCommit, error)) error {
	return m.MapStore.MapUpdate(ctx, func(st storage.MapState, r storage.MapNodeReader) (*storage.MapCommit, error) {
		c, err := fn(st, r)
		if err == nil && c != nil && c.Root != nil {
			return nil, errors.New("instance died after appending its root")
		}
		return c, err
	})
}

// manualMap is a map follower of tl on m that the test steps itself.
func manualMap(tl *testLedger, m storage.MapStore) *mapFollower {
	return &mapFollower{l: tl.Ledger, m: m, close: func() error { return nil }, shared: true,
		entries: 1, every: time.Hour, done: make(chan struct{}), backoff: mapPoll}
}

// TestMapMySQLOrphanRootNotUndercut: an instance appends a map root to the
// log and dies before storing it in the shared map (an orphan root: a
// correct root the map's state does not know). The next instance to
// commit, whose own index lags behind the orphan's entries, must not
// append a root covering fewer entries than the orphan (the proxy's audit
// fails closed on that): it first waits for its index to cover every
// entry already in the log, and commits nothing until it does.
func TestMapMySQLOrphanRootNotUndercut(t *testing.T) {
	dsn := mysqlEnv.database(t)
	cfg := mysqlConfig(t, noteKey(t, "map.example/orphan")) // no map follower of their own: the test steps them
	a := startLedgerAt(t, mysqlAt(dsn), cfg)
	lag := &frozenIndex{}
	b := startLedgerAt(t, func(t testing.TB) Storage {
		st := mysqlAt(dsn)(t).(*mysqlstorage.Storage)
		lag.Index = st.Index()
		return laggingStorage{Storage: st, idx: lag}
	}, cfg)
	fa, fb := manualMap(a, orphaningMap{a.st.Map()}), manualMap(b, b.st.Map())
	s := newTestSigner(t)
	submit := func(n int) {
		for range n {
			a.submit(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
		}
	}
	submit(2)
	if _, err := fb.step(t.Context(), time.Time{}); err != nil { // B commits the first root
		t.Fatal(err)
	}
	submit(2)
	if err := b.store.WaitProcessed(t.Context(), a.store.Processed()); err != nil {
		t.Fatal(err)
	}
	lag.at.Store(b.store.Processed()) // B's index stops here
	lag.frozen.Store(true)
	submit(2)
	if _, err := fa.step(t.Context(), time.Time{}); err == nil || !strings.Contains(err.Error(), "died") {
		t.Fatalf("A's update: %v, want its injected death", err)
	}
	// B, behind: no root while its index does not cover the orphan.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	_, err := fb.step(ctx, time.Time{})
	cancel()
	if err == nil {
		t.Error("an instance whose index lags behind a root in the log committed a root")
	}
	lag.frozen.Store(false)
	if _, err := fb.step(t.Context(), time.Time{}); err != nil {
		t.Fatal(err)
	}
	st, err := b.st.Map().MapState(t.Context())
	if err != nil || st.Root == nil {
		t.Fatalf("map state: %+v %v", st, err)
	}
	if err := a.store.WaitProcessed(t.Context(), st.Root.Index+1); err != nil {
		t.Fatal(err)
	}
	if n := recomputeRoots(t, a); n != 3 {
		t.Fatalf("%d roots in the log, want 3 (B's, A's orphan, B's after it)", n)
	}
}
