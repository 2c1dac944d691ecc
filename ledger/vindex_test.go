package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/vindex"
)

// waitMapCovers waits until the ledger's map was folded over the log's
// first n entries (and its root committed, when any of them is a statement).
func waitMapCovers(t testing.TB, tl *testLedger, n uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := tl.vmap.m.MapState(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Position >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the map covers %d entries, want %d", st.Position, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recomputeRoots reads the ledger's whole log and checks every map-root
// entry in it against the map recomputed, in memory, from the entries
// before it; it returns how many roots it checked.
func recomputeRoots(t *testing.T, tl *testLedger) int {
	t.Helper()
	size := tl.store.Processed()
	idx := make([]uint64, size)
	for i := range idx {
		idx[i] = uint64(i)
	}
	var entries [][]byte
	if err := tl.store.entries(t.Context(), idx, func(_ uint64, data []byte) bool {
		entries = append(entries, data)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	m := vindex.NewMemStore()
	folded, roots := uint64(0), 0
	for i, e := range entries {
		if !notarize.IsMapRoot(e) {
			continue
		}
		mr, err := notarize.ParseMapRoot(e, tl.id.Verifier)
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if mr.Size < folded || mr.Size > uint64(i) {
			t.Fatalf("root entry %d covers %d entries; %d were covered before", i, mr.Size, folded)
		}
		b := vindex.NewBatch(m)
		for j := folded; j < mr.Size; j++ {
			if _, err := b.Add(j, entries[j]); err != nil {
				t.Fatal(err)
			}
		}
		root, writes, err := vindex.Apply(m, b.Updates())
		if err != nil {
			t.Fatal(err)
		}
		m.Write(writes)
		folded = mr.Size
		if root != mr.Root {
			t.Fatalf("root entry %d (size %d): committed %x, recomputed %x", i, mr.Size, mr.Root, root)
		}
		roots++
	}
	return roots
}

// TestMapRootsRecomputedFromLog: every map root the ledger commits is the
// root of the map recomputed from the log's entries before it (statements
// about repeated and new digests, status changes, older-dated statements),
// and a rebuild of the map from the log (its file removed) commits roots
// that recompute the same way.
func TestMapRootsRecomputedFromLog(t *testing.T) {
	tl := startLedger(t, Config{MapCommitInterval: 30 * time.Millisecond})
	alice, bob := newTestSigner(t), newTestSigner(t)
	shared := randomDigest(t)
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	submitRound := func(round int) {
		for i, e := range []*notarize.Entry{
			alice.sign(t, shared, notarize.StatusTrusted, t0.Add(time.Duration(round)*time.Minute)),
			bob.sign(t, shared, notarize.StatusUntrusted, t0.Add(time.Duration(10-round)*time.Minute)),
			alice.sign(t, randomDigest(t), notarize.StatusUnsupported, t0),
		} {
			if status, _, err := post(t.Context(), http.DefaultClient, tl.url, mustMarshal(t, e)); err != nil || status != http.StatusCreated {
				t.Fatalf("round %d entry %d: %d %v", round, i, status, err)
			}
		}
		waitMapCovers(t, tl, tl.store.Processed())
	}
	for round := range 3 {
		submitRound(round)
	}
	if n := recomputeRoots(t, tl); n < 3 {
		t.Fatalf("%d roots checked, want at least 3", n)
	}

	// Rebuild (notarize-ledger map-rebuild): refused while the ledger
	// runs; once stopped, the map is dropped and the ledger folds the whole
	// log again when it starts.
	if err := RebuildMap(tl.dir); !errors.Is(err, ErrMapInUse) {
		t.Fatalf("rebuild of a running ledger's map: %v", err)
	}
	tl.close(t)
	if err := RebuildMap(tl.dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tl.dir, mapFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("map file after rebuild: %v", err)
	}
	tl.open(t)
	submitRound(3)
	before := recomputeRoots(t, tl)
	st, err := tl.vmap.m.MapState(t.Context())
	if err != nil || st.Root == nil {
		t.Fatalf("rebuilt map: %v %+v", err, st)
	}
	if before < 4 {
		t.Fatalf("%d roots after the rebuild, want at least 4", before)
	}
}

// BenchmarkIngestWithMap measures ingest with and without the verifiable
// index, in the same run (issue 11: maintaining the map costs at most 20%
// of ingest throughput).
//
//	go test -run '^$' -bench IngestWithMap -benchtime 4000x ./ledger/
func BenchmarkIngestWithMap(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("map=%v", on), func(b *testing.B) {
			cfg := Config{noMap: !on}
			if on {
				cfg.MapCommitEntries = DefaultMapCommitEntries // the defaults, opted into (startLedgerAt)
			}
			tl := startLedger(b, cfg)
			ingest(b, []string{tl.url}, 64)
			if on {
				// The map catches up with what was ingested: its cost
				// is counted, not deferred past the benchmark.
				waitMapCovers(b, tl, uint64(b.N))
				reportRoots(b, tl.vmap)
			}
		})
	}
}

// TestMapMySQLTwoInstances: two instances on one MySQL database keep one
// map, in the database: each advances it in turn, in log order, and
// commits roots; every root committed recomputes from the log and covers
// at least as many entries as the one before, and both instances serve
// the same state.
func TestMapMySQLTwoInstances(t *testing.T) {
	dsn := mysqlEnv.database(t)
	skey := noteKey(t, "map.example/ledger")
	cfg := func() Config {
		c := mysqlConfig(t, skey)
		c.MapCommitInterval = 50 * time.Millisecond
		return c
	}
	a := startLedgerAt(t, mysqlAt(dsn), cfg())
	b := startLedgerAt(t, mysqlAt(dsn), cfg())
	if !a.vmap.shared || !b.vmap.shared {
		t.Fatal("the instances keep maps of their own, not the database's")
	}
	s := newTestSigner(t)
	d := randomDigest(t)
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	for round := range 3 {
		for i, tl := range []*testLedger{a, b, a} {
			e := s.sign(t, d, []notarize.Status{notarize.StatusTrusted, notarize.StatusUntrusted}[(round+i)%2], t0.Add(time.Duration(3*round+i)*time.Minute))
			tl.submit(t, e, http.StatusCreated)
			tl.submit(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, t0), http.StatusCreated)
		}
		for _, tl := range []*testLedger{a, b} {
			if err := tl.store.WaitProcessed(t.Context(), a.store.Processed()); err != nil {
				t.Fatal(err)
			}
			waitMapCovers(t, tl, tl.store.Processed())
		}
	}
	for _, tl := range []*testLedger{a, b} {
		if err := tl.store.WaitProcessed(t.Context(), max(a.store.Processed(), b.store.Processed())); err != nil {
			t.Fatal(err)
		}
	}
	if n := recomputeRoots(t, a); n < 4 {
		t.Fatalf("%d roots from both instances, want at least 4", n)
	}
	ra, err := a.vmap.m.MapState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.vmap.m.MapState(t.Context())
	if err != nil || ra.Root == nil || rb.Root == nil {
		t.Fatalf("instances' roots: %v %+v %+v", err, ra, rb)
	}
	if ra.Position != rb.Position || ra.Root.Index != rb.Root.Index || !bytes.Equal(ra.Root.Entry, rb.Root.Entry) {
		t.Fatalf("two maps: instance a at %d (root %d), b at %d (root %d)", ra.Position, ra.Root.Index, rb.Position, rb.Root.Index)
	}
	// Both answer a current lookup with a proof against that one root.
	for _, tl := range []*testLedger{a, b} {
		resp, _ := tl.getLookup(t, lookupURL(tl.url, d, api.PathCurrentSuffix, keyQuery(s.keyID)))
		if resp.Map == nil || resp.Map.RootIndex == nil || *resp.Map.RootIndex != ra.Root.Index {
			t.Fatalf("current lookup's map proof: %+v, want one against root entry %d", resp.Map, ra.Root.Index)
		}
	}
}
