package ledger

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/ledger/storage/posix"
	"github.com/notarize/docker-notarize/notarize"
)

// pebbleSuite is the part of this package's tests that runs again with
// every new POSIX ledger on the pebble engine (TestLedgerSuiteOnPebble):
// submissions, duplicates and replays, restarts, lookups by digest and
// key, pages, revocations, the follower, the verifiable map and its
// rebuild. Not the key lookups over 10,000 digests and the answer bound
// (46 s under -race): the engines' key pages, cursor and all, are held
// equal row for row by posix's TestIndexEnginesAgree.
const pebbleSuite = `^(TestSubmitAndLookup|TestDuplicates|TestRestartKeepsEverything|TestConcurrentSubmissions|` +
	`TestLookupByKeyID|TestPaginationWalksEveryEntryOnce|TestCurrentStatement|TestIndexFollowerResumes|TestIndexAheadOfLog|` +
	`TestKeyLookup(ProofChecked|StatusFilters|ReadsOnlyTheKeysRows|CurrentBelowCheckpoint|BadInput)|TestMapRootsRecomputedFromLog|TestMapStoreRefusesStaleCommits|TestReceiptCheckpoint|` +
	`TestResignedReplayIsDuplicate|TestConcurrentReplaysAppendOnce|TestSelfRevoked.*|TestRevokedByAnotherKeyAdmitted|` +
	`TestFoldFromRowsMatchesRebuild|TestFoldAheadMatchesLog|TestRedteam5FoldSpellingsPOSIX|TestPagesShowSelfRevocation|` +
	`TestFollowerIndexesVerifiedEntriesOnly|TestInlineTailServed|TestEngineFromEnvironment)$`

// TestLedgerSuiteOnPebble runs pebbleSuite in a child test process whose
// new data directories get the pebble engine ($NOTARIZE_LEDGER_INDEX_ENGINE),
// so that the ledger's behaviour tests cover both engines without a copy.
// TestEngineFromEnvironment, in the suite, fails if the child's ledgers
// are not on pebble.
func TestLedgerSuiteOnPebble(t *testing.T) {
	t.Parallel()
	if os.Getenv(envTestEngine) != "" {
		t.Skipf("$%s is set: this process is the suite's run on one engine", envTestEngine)
	}
	if testing.Short() {
		t.Skip("-short: the suite on pebble runs in full test runs")
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run", pebbleSuite, "-test.count=1")
	cmd.Env = append(os.Environ(), envTestEngine+"="+posix.EnginePebble)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the ledger suite on pebble: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("PASS")) {
		t.Fatalf("the ledger suite on pebble ran nothing:\n%s", out)
	}
}

// TestEngineFromEnvironment: a new POSIX ledger keeps its index and map in
// the engine $NOTARIZE_LEDGER_INDEX_ENGINE names (bbolt when unset).
func TestEngineFromEnvironment(t *testing.T) {
	want := os.Getenv(envTestEngine)
	tl := startLedger(t, Config{MapCommitInterval: 30 * time.Millisecond})
	s := newTestSigner(t)
	tl.submit(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
	waitMapCovers(t, tl, tl.store.Processed())
	index, vmap := posix.IndexFile, mapFileName
	if want == posix.EnginePebble {
		index, vmap = posix.IndexDir, mapDirName
	}
	for _, name := range []string{index, vmap} {
		if _, err := os.Stat(filepath.Join(tl.dir, name)); err != nil {
			t.Fatalf("engine %q: %v", want, err)
		}
	}
}

// TestPebbleMapStoreSnapshotAndReopen: a MapView reads one snapshot while
// a MapUpdate commits; a commit is there after a reopen; a stale commit
// and MapReset behave as the bbolt store's (TestMapStoreRefusesStaleCommits
// runs both when MariaDB is here).
func TestPebbleMapStoreSnapshotAndReopen(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), mapDirName)
	m, err := openPebbleMapStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	root := func(i uint64) *storage.MapRoot { return &storage.MapRoot{Index: i, Entry: []byte{byte(i)}} }
	id := []byte{0, 1, 0x80}
	if err := m.MapUpdate(ctx, commitOf(storage.MapCommit{From: 0, Position: 3, Root: root(3), Writes: []storage.MapNodeWrite{{ID: id, Node: []byte("a")}}})); err != nil {
		t.Fatal(err)
	}
	err = m.MapView(ctx, func(st storage.MapState, r storage.MapNodeReader) error {
		// Another commit lands while the view runs...
		if err := m.MapUpdate(ctx, commitOf(storage.MapCommit{From: 3, Position: 5, Root: root(5), Writes: []storage.MapNodeWrite{{ID: id, Delete: true}}})); err != nil {
			return err
		}
		// ...and the view still reads its snapshot.
		got, err := r.MapNodes(ctx, [][]byte{id, {9}})
		if err != nil {
			return err
		}
		if st.Position != 3 || !bytes.Equal(got[0], []byte("a")) || got[1] != nil {
			t.Errorf("view at %d read %q, want position 3 and node a", st.Position, got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.MapUpdate(ctx, commitOf(storage.MapCommit{From: 3, Position: 6})); !errors.Is(err, storage.ErrMapStale) {
		t.Fatalf("a stale commit: %v", err)
	}
	if err := m.close(); err != nil {
		t.Fatal(err)
	}
	if m, err = openPebbleMapStore(dir); err != nil {
		t.Fatal(err)
	}
	defer m.close()
	st, err := m.MapState(ctx)
	if err != nil || st.Position != 5 || st.Root == nil || st.Root.Index != 5 {
		t.Fatalf("after reopening: %+v %v", st, err)
	}
	if got := readNode(t, m, id); got != nil {
		t.Fatalf("a deleted node after reopening: %q", got)
	}
	if err := m.MapReset(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := m.MapState(ctx); err != nil || st.Position != 0 || st.Root != nil {
		t.Fatalf("after reset: %+v %v", st, err)
	}
}

// TestMigrateLedgerToPebble: a bbolt ledger with statements, revocations
// and a committed map root, migrated to pebble (what notarize-ledger
// migrate-index does), serves the same lookups, the same receipts for
// resubmissions and the same map root, and keeps accepting statements.
func TestMigrateLedgerToPebble(t *testing.T) {
	t.Setenv(envTestEngine, posix.EngineBbolt)
	dir := t.TempDir()
	tl := startLedgerIn(t, dir, Config{MapCommitInterval: 30 * time.Millisecond})
	alice, bob := newTestSigner(t), newTestSigner(t)
	d1, d2 := randomDigest(t), randomDigest(t)
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	entries := []*notarize.Entry{
		alice.sign(t, d1, notarize.StatusTrusted, t0),
		bob.sign(t, d1, notarize.StatusTrusted, t0.Add(time.Minute)),
		alice.sign(t, d1, notarize.StatusUntrusted, t0.Add(2*time.Minute)), // alice revokes d1
		alice.sign(t, d2, notarize.StatusTrusted, t0),
		bob.sign(t, d2, notarize.StatusUnsupported, t0.Add(time.Minute)),
	}
	var receipts []api.Receipt
	for _, e := range entries {
		receipts = append(receipts, tl.submit(t, e, http.StatusCreated))
	}
	waitMapCovers(t, tl, tl.store.Processed())
	lookups := func() string {
		var b strings.Builder
		for _, d := range []notarize.Digest{d1, d2} {
			resp := tl.lookup(t, d)
			resp.Checkpoint = ""
			j, err := json.Marshal(resp)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(j)
		}
		return b.String()
	}
	want := lookups()
	wantRoot, err := tl.vmap.m.MapState(t.Context())
	if err != nil || wantRoot.Root == nil {
		t.Fatalf("no map root before the migration: %+v %v", wantRoot, err)
	}
	tl.close(t)

	file, mdir, prefixes := MapMigration()
	if _, err := posix.MigrateBolt(t.Context(), filepath.Join(dir, file), filepath.Join(dir, mdir), prefixes, nil, nil, testLogger(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := posix.MigrateIndex(t.Context(), dir, testLogger(t)); err != nil {
		t.Fatal(err)
	}
	if e, err := posix.DirEngine(dir); e != posix.EnginePebble || err != nil {
		t.Fatalf("engine after the migration: %q %v", e, err)
	}
	tl.open(t)
	if _, ok := tl.vmap.m.(*pebbleMapStore); !ok {
		t.Fatalf("the migrated ledger's map is a %T", tl.vmap.m)
	}
	if got := lookups(); got != want {
		t.Fatalf("lookups after the migration:\n%s\nwant\n%s", got, want)
	}
	st, err := tl.vmap.m.MapState(t.Context())
	if err != nil || st.Root == nil || st.Root.Index != wantRoot.Root.Index || !bytes.Equal(st.Root.Entry, wantRoot.Root.Entry) || st.Position != wantRoot.Position {
		t.Fatalf("map state after the migration: %+v %v, want %+v", st, err, wantRoot)
	}
	for i, e := range entries {
		if rec := tl.submit(t, e, http.StatusOK); rec.Index != receipts[i].Index {
			t.Fatalf("resubmission %d: index %d, want %d", i, rec.Index, receipts[i].Index)
		}
	}
	rec := tl.submit(t, bob.sign(t, d1, notarize.StatusUntrusted, t0.Add(3*time.Minute)), http.StatusCreated)
	waitMapCovers(t, tl, tl.store.Processed())
	if got := tl.checkLookup(t, tl.lookup(t, d1)); len(got) == 0 || got[len(got)-1] != rec.Index {
		t.Fatalf("a statement after the migration: lookup %v, want it to end with %d", got, rec.Index)
	}
}

// TestPebbleMapReadsAgree: the pebble map's two ways of reading a batch of
// nodes (a Get each; one iterator, prefix-seeked in key order) answer
// alike, in the order asked: stored nodes (empty ones included), absent
// IDs, IDs that are prefixes of stored ones, duplicates; and a batch read
// in a snapshot sees it, not a later commit.
func TestPebbleMapReadsAgree(t *testing.T) {
	m, err := openPebbleMapStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	rng := mrand.New(mrand.NewPCG(1, 2))
	c := &storage.MapCommit{From: 0, Position: 1}
	var stored [][]byte
	for i := range 3000 {
		id := make([]byte, 2+rng.IntN(6))
		for j := range id {
			id[j] = byte(rng.IntN(4)) // a small alphabet: many IDs prefix others
		}
		node := bytes.Repeat([]byte{byte(i)}, rng.IntN(3)*33)
		c.Writes = append(c.Writes, storage.MapNodeWrite{ID: id, Node: node})
		stored = append(stored, id)
	}
	if err := m.MapUpdate(t.Context(), func(storage.MapState, storage.MapNodeReader) (*storage.MapCommit, error) { return c, nil }); err != nil {
		t.Fatal(err)
	}
	if err := m.s.DB().Flush(); err != nil {
		t.Fatal(err)
	}
	db := m.s.DB()
	s := db.NewSnapshot()
	defer s.Close()
	later := &storage.MapCommit{From: 1, Position: 2}
	for _, id := range stored[:500] {
		later.Writes = append(later.Writes, storage.MapNodeWrite{ID: id, Delete: true})
	}
	if err := m.MapUpdate(t.Context(), func(storage.MapState, storage.MapNodeReader) (*storage.MapCommit, error) { return later, nil }); err != nil {
		t.Fatal(err)
	}
	r := pebbleNodes{s: s}
	for range 300 {
		ids := make([][]byte, seekNodes+rng.IntN(60))
		for i := range ids {
			switch rng.IntN(4) {
			case 0, 1:
				ids[i] = stored[rng.IntN(len(stored))]
			case 2:
				ids[i] = []byte{byte(rng.IntN(4)), byte(rng.IntN(4)), byte(rng.IntN(4))}
			default:
				ids[i] = ids[rng.IntN(i+1)] // a duplicate, or itself
				if ids[i] == nil {
					ids[i] = []byte{0xff, 0xff}
				}
			}
		}
		got, err := r.seekEach(ids)
		if err != nil {
			t.Fatal(err)
		}
		want, err := r.getEach(ids)
		if err != nil {
			t.Fatal(err)
		}
		for i := range ids {
			if (got[i] == nil) != (want[i] == nil) || !bytes.Equal(got[i], want[i]) {
				t.Fatalf("id %x: seeked %x (nil %v), got %x (nil %v)", ids[i], got[i], got[i] == nil, want[i], want[i] == nil)
			}
		}
		viaView, err := r.MapNodes(t.Context(), ids)
		if err != nil || len(viaView) != len(ids) {
			t.Fatalf("MapNodes: %d answers, %v", len(viaView), err)
		}
	}
	v, err := r.seekEach(slices.Repeat([][]byte{stored[0]}, seekNodes))
	if err != nil || v[0] == nil {
		t.Fatalf("a node deleted after the snapshot, read in it: %x, %v", v, err)
	}
	err = m.MapView(t.Context(), func(_ storage.MapState, r storage.MapNodeReader) error {
		v, err = r.MapNodes(t.Context(), slices.Repeat([][]byte{stored[0]}, seekNodes))
		return err
	})
	if err != nil || v[0] != nil {
		t.Fatalf("a node deleted, read after: %x, %v", v, err)
	}
}

// TestPebbleMapSeekedValuesAreCopies: the nodes a seeked batch returns are
// its own: an iterator's value is valid only until it moves, so a batch
// that kept pebble's buffers would hand the fold other keys' bytes once
// their blocks are evicted and the memory reused. Batches over a reopened
// (cold) store, each spanning many blocks, are held while a compaction
// evicts their blocks and new blocks are read, then checked byte for byte.
// (It catches a kept buffer where pebble's cache is C memory, freed and
// reused: a cgo build, as go test's and -race's are.)
func TestPebbleMapSeekedValuesAreCopies(t *testing.T) {
	dir := t.TempDir()
	m, err := openPebbleMapStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	value := func(id uint64, gen byte) []byte {
		v := make([]byte, 64)
		for i := range v {
			v[i] = byte(id>>(8*(i%4))) ^ gen
		}
		return v
	}
	commit := func(from uint64, gen byte) {
		c := &storage.MapCommit{From: from, Position: from + 1}
		for i := range uint64(n) {
			c.Writes = append(c.Writes, storage.MapNodeWrite{ID: binary.BigEndian.AppendUint64(nil, i*7919), Node: value(i, gen)})
		}
		if err := m.MapUpdate(t.Context(), func(storage.MapState, storage.MapNodeReader) (*storage.MapCommit, error) { return c, nil }); err != nil {
			t.Fatal(err)
		}
		if err := m.s.DB().Compact(t.Context(), []byte{mapPfxNodes}, []byte{mapPfxNodes + 1}, true); err != nil {
			t.Fatal(err)
		}
	}
	commit(0, 0)
	if err := m.close(); err != nil {
		t.Fatal(err)
	}
	if m, err = openPebbleMapStore(dir); err != nil {
		t.Fatal(err)
	}
	defer m.close()
	rng := mrand.New(mrand.NewPCG(3, 4))
	type held struct {
		ids  []uint64
		vals [][]byte
	}
	var kept []held
	for range 50 {
		var h held
		ids := make([][]byte, 200)
		for i := range ids {
			h.ids = append(h.ids, uint64(rng.IntN(n)))
			ids[i] = binary.BigEndian.AppendUint64(nil, h.ids[i]*7919)
		}
		if err := m.MapView(t.Context(), func(_ storage.MapState, r storage.MapNodeReader) (err error) {
			h.vals, err = r.MapNodes(t.Context(), ids)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		kept = append(kept, h)
	}
	// The blocks read above are evicted with their sstable, and new ones
	// read into the cache.
	commit(1, 0x5a)
	for i := 0; i < n; i += 500 {
		ids := make([][]byte, 500)
		for j := range ids {
			ids[j] = binary.BigEndian.AppendUint64(nil, uint64(i+j)*7919)
		}
		if err := m.MapView(t.Context(), func(_ storage.MapState, r storage.MapNodeReader) error {
			_, err := r.MapNodes(t.Context(), ids)
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range kept {
		for i, id := range h.ids {
			if want := value(id, 0); !bytes.Equal(h.vals[i], want) {
				t.Fatalf("node %d, held: %x, want %x", id, h.vals[i], want)
			}
		}
	}
}
