package ledger

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/tessera"

	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/vindex"
)

// foldMix returns a round of log entries that exercises every rule of the
// map's fold: statements by two keys about a shared digest and new ones,
// timestamps to the nanosecond, a statement dated before the key's
// current one, two statements of one key signed at the same instant (the
// later log index wins the tie), and entries that do not verify: a
// well-formed statement whose signature is another statement's, one
// whose payload was changed after signing, a statement signed with the
// wrong key ID, and bytes that are no entry at all. The map folds the
// statements only; the ledger's own map roots fall between the rounds.
func foldMix(t testing.TB, alice, bob *testSigner, shared notarize.Digest, t0 time.Time, round int) [][]byte {
	t.Helper()
	at := t0.Add(time.Duration(round)*time.Minute + time.Duration(round*7919+1)*time.Nanosecond)
	good := alice.signAt(t, shared, notarize.StatusTrusted, at)
	forged := bob.signAt(t, shared, notarize.StatusUntrusted, at.Add(time.Hour))
	forged.Envelope.Signatures[0].Sig = good.Envelope.Signatures[0].Sig
	tampered := bob.signAt(t, shared, notarize.StatusUntrusted, at.Add(2*time.Hour))
	other := bob.signAt(t, shared, notarize.StatusTrusted, at.Add(3*time.Hour))
	tampered.Envelope.Payload = other.Envelope.Payload
	wrongKey := alice.signAt(t, randomDigest(t), notarize.StatusTrusted, at)
	wrongKey.Envelope.Signatures[0].KeyID = bob.keyID
	return [][]byte{
		mustMarshal(t, good),
		mustMarshal(t, forged),
		mustMarshal(t, bob.signAt(t, shared, notarize.StatusUntrusted, at.Add(-time.Duration(round)*time.Second))),
		mustMarshal(t, tampered),
		mustMarshal(t, alice.signAt(t, shared, notarize.StatusUntrusted, at)), // same instant as good: wins the tie
		mustMarshal(t, alice.signAt(t, shared, notarize.StatusUnsupported, at.Add(-time.Minute))),
		mustMarshal(t, wrongKey),
		[]byte("not an entry " + string(rune('a'+round))),
		mustMarshal(t, alice.signAt(t, randomDigest(t), notarize.StatusTrusted, at)),
		mustMarshal(t, bob.signAt(t, shared, notarize.StatusTrusted, at.Add(time.Nanosecond))),
	}
}

// appendRaw appends entries straight to the log (no submission checks, as
// a foreign log would hold them) and waits until the index covers them.
func appendRaw(t testing.TB, tl *testLedger, entries [][]byte) {
	t.Helper()
	futures := make([]tessera.IndexFuture, len(entries))
	for i, data := range entries {
		futures[i] = tl.add(t.Context(), tessera.NewEntry(data))
	}
	var top uint64
	for i, f := range futures {
		idx, err := f()
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		top = max(top, idx.Index)
	}
	if err := tl.store.WaitProcessed(t.Context(), top+1); err != nil {
		t.Fatal(err)
	}
}

// TestFoldFromRowsMatchesRebuild: the map follower folds from the index's
// rows (no second parse and signature check) exactly what a fold from the
// entries' bytes folds (vindex.Batch.Add, as the proxy's auditor and a
// rebuild compute it). Over rounds that mix valid statements, entries that
// do not verify, same-instant ties and the ledger's own map roots, every
// root committed while the rows were at hand recomputes from the log;
// then the map is rebuilt from the log (the rows are gone: every entry is
// read and checked again) and its roots recompute as well. Folding one
// entry that does not verify, on either path, changes a root.
func TestFoldFromRowsMatchesRebuild(t *testing.T) {
	tl := startLedger(t, Config{MapCommitInterval: 20 * time.Millisecond})
	tap := tl.rowTapOf()
	if tap == nil {
		t.Fatal("the ledger keeps a map but its index has no row tap")
	}
	alice, bob := newTestSigner(t), newTestSigner(t)
	shared := randomDigest(t)
	t0 := time.Now().Add(-time.Hour).UTC()
	for round := range 4 {
		appendRaw(t, tl, foldMix(t, alice, bob, shared, t0, round))
		waitMapCovers(t, tl, tl.store.Processed())
	}
	waitRootIndexed(t, tl)
	if n := recomputeRoots(t, tl); n < 4 {
		t.Fatalf("%d roots checked, want at least 4", n)
	}
	if hits, misses := tap.hits.Load(), tap.misses.Load(); hits == 0 || misses != 0 {
		t.Fatalf("the fold took %d entries from the index's rows and read %d again; want all from the rows", hits, misses)
	}
	before, err := tl.vmap.m.MapState(t.Context())
	if err != nil || before.Root == nil {
		t.Fatalf("map state: %+v %v", before, err)
	}

	tl.close(t)
	if err := RebuildMap(tl.dir); err != nil {
		t.Fatal(err)
	}
	tl.open(t)
	waitMapCovers(t, tl, tl.store.Processed())
	waitRootIndexed(t, tl)
	if misses := tl.rowTapOf().misses.Load(); misses < before.Position {
		t.Fatalf("the rebuild read %d entries again, want all %d", misses, before.Position)
	}
	// It checked them with the index's key cache (mapStatementWith): each
	// signer's key parsed once, not once per entry, and kept.
	if n := tl.store.keys.Len(); n < 2 {
		t.Fatalf("the rebuild's checks left %d keys in the index's cache, want alice's and bob's", n)
	}
	if n := recomputeRoots(t, tl); n < 5 {
		t.Fatalf("%d roots after the rebuild, want at least 5", n)
	}
	// The rebuilt map holds every key's statements as the folds from the
	// rows did: the last root before the rebuild, recomputed from scratch
	// over the same entries, is the one the rows' fold committed.
	mr, err := notarize.ParseMapRoot(before.Root.Entry, tl.id.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	if got := scratchRoot(t, tl, mr.Size); got != mr.Root {
		t.Fatalf("root of the first %d entries: committed %x, from scratch %x", mr.Size, mr.Root, got)
	}
}

// waitRootIndexed waits until the index covers the newest committed map
// root's entry, so that recomputeRoots checks it too.
func waitRootIndexed(t testing.TB, tl *testLedger) {
	t.Helper()
	st, err := tl.vmap.m.MapState(t.Context())
	if err != nil || st.Root == nil {
		t.Fatalf("map state: %+v %v", st, err)
	}
	if err := tl.store.WaitProcessed(t.Context(), st.Root.Index+1); err != nil {
		t.Fatal(err)
	}
}

// scratchRoot folds the log's first n entries into an empty map with
// vindex.Batch.Add, in one batch, and returns its root.
func scratchRoot(t *testing.T, tl *testLedger, n uint64) vindex.Hash {
	t.Helper()
	idx := make([]uint64, n)
	for i := range idx {
		idx[i] = uint64(i)
	}
	m := vindex.NewMemStore()
	b := vindex.NewBatch(m)
	if err := tl.store.entries(t.Context(), idx, func(i uint64, data []byte) bool {
		if _, err := b.Add(i, data); err != nil {
			t.Fatal(err)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	root, _, err := vindex.Apply(m, b.Updates())
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestRowStatementIsBatchAdd: for every kind of entry of foldMix, the
// index's row (indexEntry) yields a statement exactly when
// vindex.Batch.Add folds the entry, with the digest, key ID, timestamp
// (to the nanosecond) and leaf hash that Batch.Add uses, so that the two
// folds give the same map value, byte for byte.
func TestRowStatementIsBatchAdd(t *testing.T) {
	alice, bob := newTestSigner(t), newTestSigner(t)
	shared := randomDigest(t)
	t0 := time.Now().Add(-time.Hour).UTC()
	var entries [][]byte
	for round := range 3 {
		entries = append(entries, foldMix(t, alice, bob, shared, t0, round)...)
	}
	fromRows, fromBytes := vindex.NewMemStore(), vindex.NewMemStore()
	rb, bb := vindex.NewBatch(fromRows), vindex.NewBatch(fromBytes)
	statements := 0
	for i, data := range entries {
		s, ok := rowStatement(uint64(i), indexEntry(data))
		added, err := bb.Add(uint64(i), data)
		if err != nil {
			t.Fatal(err)
		}
		if ok != added {
			t.Fatalf("entry %d: folded from its row %v, from its bytes %v", i, ok, added)
		}
		if !ok {
			continue
		}
		statements++
		v, _ := mapStatement(data)
		if s.d != v.Statement.Digest() || s.keyID != v.KeyID || !s.ts.Equal(v.Statement.Predicate.Timestamp) || s.leaf != vindex.EntryLeafHash(data) {
			t.Fatalf("entry %d: row statement %+v, entry %s by %s at %v", i, s, v.Statement.Digest(), v.KeyID, v.Statement.Predicate.Timestamp)
		}
		if err := rb.AddStatement(s.index, s.d, s.keyID, s.ts, s.leaf); err != nil {
			t.Fatal(err)
		}
	}
	if statements != 3*6 {
		t.Fatalf("%d statements folded, want %d", statements, 3*6)
	}
	ra, _, err := vindex.Apply(fromRows, rb.Updates())
	if err != nil {
		t.Fatal(err)
	}
	rr, _, err := vindex.Apply(fromBytes, bb.Updates())
	if err != nil {
		t.Fatal(err)
	}
	if ra != rr {
		t.Fatalf("root from the rows %x, from the bytes %x", ra, rr)
	}
	// A map root among the entries is no statement, on either path.
	root := []byte(notarize.MapRootHeader + "x\n1\nAAAA\n")
	if _, ok := rowStatement(0, indexEntry(root)); ok {
		t.Fatal("a map root's row folded as a statement")
	}
}

// TestMySQLFoldFromRowsTwoInstances: two instances sharing one MySQL map
// fold rounds of foldMix, each from the rows its own index follower kept
// and from entries read and checked again where the other instance
// indexed them; every root either commits recomputes from the log.
func TestMySQLFoldFromRowsTwoInstances(t *testing.T) {
	dsn := mysqlEnv.database(t)
	skey := noteKey(t, "fold.example/ledger")
	cfg := func() Config {
		c := mysqlConfig(t, skey)
		c.MapCommitInterval = 30 * time.Millisecond
		return c
	}
	a := startLedgerAt(t, mysqlAt(dsn), cfg())
	b := startLedgerAt(t, mysqlAt(dsn), cfg())
	alice, bob := newTestSigner(t), newTestSigner(t)
	shared := randomDigest(t)
	t0 := time.Now().Add(-time.Hour).UTC()
	for round := range 4 {
		appendRaw(t, []*testLedger{a, b}[round%2], foldMix(t, alice, bob, shared, t0, round))
		for _, tl := range []*testLedger{a, b} {
			if err := tl.store.WaitProcessed(t.Context(), max(a.store.Processed(), b.store.Processed())); err != nil {
				t.Fatal(err)
			}
		}
		waitMapCovers(t, a, a.store.Processed())
	}
	waitRootIndexed(t, a)
	if n := recomputeRoots(t, a); n < 2 {
		t.Fatalf("%d roots checked, want at least 2", n)
	}
	if hits := a.rowTapOf().hits.Load() + b.rowTapOf().hits.Load(); hits == 0 {
		t.Fatal("no entry was folded from an index row")
	}
}

// TestFoldAheadMatchesLog: the follower folds the entries that keep
// arriving while each root waits for its publication and, between
// updates, while they accumulate towards the next commit (fold_ahead.go);
// the next update continues that fold. Under a stream of foldMix rounds
// (statements, entries that do not verify, ties), the updates that
// continued a fold ahead commit roots that recompute from the log, in log
// order, each covering at least as many entries as the one before
// (recomputeRoots); and the newest root is the root of the same entries
// folded from scratch.
func TestFoldAheadMatchesLog(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		cfg      Config
		preFolds bool
	}{
		{"while a root is published", Config{MapCommitInterval: 20 * time.Millisecond, CheckpointInterval: 400 * time.Millisecond}, false},
		{"between updates", Config{MapCommitEntries: 40, MapCommitInterval: time.Second}, true},
		// A fold ahead stops at its bound (a build chunk of entries,
		// here 25, more than the cadence's 10; the map is built in such
		// chunks first), and the update folds the rest.
		{"bounded", Config{MapCommitEntries: 10, MapCommitInterval: time.Second, CheckpointInterval: 400 * time.Millisecond, mapBuildChunk: 25}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tl := startLedger(t, tc.cfg)
			alice, bob := newTestSigner(t), newTestSigner(t)
			shared := randomDigest(t)
			t0 := time.Now().Add(-time.Hour).UTC()
			deadline := time.Now().Add(60 * time.Second)
			bounded := tc.cfg.mapBuildChunk > 0
			enough := func() bool {
				return tl.vmap.aheadUsed.Load() >= 3 && (!tc.preFolds || tl.vmap.preFolds.Load() >= 3) &&
					(!bounded || tl.vmap.aheadCapped.Load() >= 1)
			}
			// Bounded, each append brings three rounds (30 entries) at
			// once, more than the bound: a fold ahead that sees one
			// arrive stops at the bound however slowly the rounds come
			// (one round at a time, a loaded machine indexed too few
			// while a root waited: 0 of 93 rounds, CI).
			perAppend := 1
			if bounded {
				perAppend = 3
			}
			for round := 0; round < 12 || !enough(); round++ {
				if time.Now().After(deadline) {
					t.Fatalf("after %d rounds, %d updates continued a fold ahead, %d folds between updates, %d stopped at the bound",
						round, tl.vmap.aheadUsed.Load(), tl.vmap.preFolds.Load(), tl.vmap.aheadCapped.Load())
				}
				var batch [][]byte
				for k := range perAppend {
					batch = append(batch, foldMix(t, alice, bob, shared, t0, round*perAppend+k)...)
				}
				appendRaw(t, tl, batch)
			}
			waitMapCovers(t, tl, tl.store.Processed())
			waitRootIndexed(t, tl)
			if n := recomputeRoots(t, tl); n < 3 {
				t.Fatalf("%d roots checked, want at least 3", n)
			}
			st, err := tl.vmap.m.MapState(t.Context())
			if err != nil || st.Root == nil {
				t.Fatalf("map state: %+v %v", st, err)
			}
			mr, err := notarize.ParseMapRoot(st.Root.Entry, tl.id.Verifier)
			if err != nil {
				t.Fatal(err)
			}
			if got := scratchRoot(t, tl, mr.Size); got != mr.Root {
				t.Fatalf("root of the first %d entries: committed %x, from scratch %x", mr.Size, mr.Root, got)
			}
		})
	}
}

// TestTakeAheadOnlyFromItsPosition: a fold ahead is continued only by an
// update that finds the stored map where the fold started, with a root:
// not after another instance sharing the map advanced it, nor after a
// rebuild reset it; it is used once.
func TestTakeAheadOnlyFromItsPosition(t *testing.T) {
	f := &mapFollower{}
	root := &storage.MapRoot{Index: 9, Entry: []byte("root")}
	ahead := &folded{from: 10, to: 14, stmts: 2, writes: map[string]storage.MapNodeWrite{"x": {ID: []byte("x")}}}
	for _, tc := range []struct {
		name string
		st   storage.MapState
		used bool
	}{
		{"moved by another instance", storage.MapState{Position: 12, Root: root}, false},
		{"reset by a rebuild", storage.MapState{Position: 0}, false},
		{"rebuilt to the same position, no root yet", storage.MapState{Position: 10}, false},
		{"where it started", storage.MapState{Position: 10, Root: root}, true},
	} {
		f.ahead = ahead
		got := f.takeAhead(tc.st)
		if used := got == ahead; used != tc.used {
			t.Fatalf("%s: fold ahead used %v, want %v", tc.name, used, tc.used)
		}
		if !tc.used && (got.from != tc.st.Position || got.to != tc.st.Position || got.stmts != 0 || len(got.writes) != 0) {
			t.Fatalf("%s: fresh fold %+v, want an empty one at %d", tc.name, got, tc.st.Position)
		}
		if f.ahead != nil {
			t.Fatalf("%s: the fold ahead is kept after it was taken", tc.name)
		}
	}
}

// TestTapKeepsAMapCycleOfRows: the tap keeps the rows of a backlog of
// several build chunks, the entries that arrive while a root is folded
// and published under 1,024 clients (~8,000 in a cycle on two cores on an
// empty ledger; on one of 1,000,000 entries the map fell 25,000-30,000
// behind), so that the fold reads none of them again; past its bound it
// keeps none and the fold reads those entries itself; and once folded
// they go.
func TestTapKeepsAMapCycleOfRows(t *testing.T) {
	tap := &rowTap{rows: make(map[uint64]keptRow)}
	row := func(i int) storage.Row {
		return storage.Row{
			ID: bytes.Repeat([]byte{byte(i)}, 32), Digest: bytes.Repeat([]byte{1}, 32), KeyID: bytes.Repeat([]byte{2}, 32),
			Stamp: storage.StampOf(time.Unix(int64(1000+i), 0)), Data: fmt.Appendf(nil, "entry %d", i),
		}
	}
	backlog := 40_000
	for next := 0; next < backlog+2*mapBuildChunk; next += 1000 {
		batch := make([]storage.Row, 1000)
		for i := range batch {
			batch[i] = row(next + i)
		}
		tap.keep(uint64(next), batch)
	}
	rows, ok := tap.take(0, uint64(backlog))
	for i := range backlog {
		if !ok[i] || !rows[i].stmt {
			t.Fatalf("row %d of a backlog of %d not kept", i, backlog)
		}
	}
	if s := rows[7].statement(7); s.index != 7 || s.keyID != strings.Repeat("02", 32) || s.ts.Unix() != 1007 ||
		s.d != notarize.Digest("sha256:"+strings.Repeat("01", 32)) || s.leaf != vindex.EntryLeafHash([]byte("entry 7")) {
		t.Fatalf("row 7 folds as %+v", s)
	}
	if _, ok := tap.take(uint64(foldRowsMax), uint64(foldRowsMax)+1); ok[0] {
		t.Fatal("a row past the tap's bound was kept")
	}
	tap.forget(uint64(backlog))
	if _, ok := tap.take(0, uint64(backlog)); slices.Contains(ok, true) {
		t.Fatal("folded rows still kept")
	}
}
