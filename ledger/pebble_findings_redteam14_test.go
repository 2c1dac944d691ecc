//go:build redteam14

package ledger

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/storage/posix"
	"github.com/notarize/docker-notarize/notarize"
)

// Red team 14 findings through a real ledger (they fail: build tag
// redteam14). Run: go test -tags redteam14 -run Redteam14 ./ledger/

// rt14DropMarker removes the MANIFEST marker of the pebble store at dir
// (a zero-byte file: what a backup that skips empty files loses).
func rt14DropMarker(t *testing.T, dir string) {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "marker.manifest.*"))
	if err != nil || len(m) != 1 {
		t.Fatalf("marker of %s: %v %v", dir, m, err)
	}
	if sst, _ := filepath.Glob(filepath.Join(dir, "*.sst")); len(sst) == 0 {
		t.Fatalf("%s has no sstable: nothing would be lost", dir)
	}
	if err := os.Remove(m[0]); err != nil {
		t.Fatal(err)
	}
}

// TestRedteam14PebbleMarkerDeletedLedger: LOSS. A pebble ledger (index
// and map) with statements A from a first run (flushed to sstables when
// the second run opened the stores) and B from a second run (in the WAL),
// restarted after the zero-byte MANIFEST marker of a store was removed,
// opens without an error, and:
//   - index.pebble: the index claims the whole log (its position is in
//     the WAL) but has lost A: A's resubmission is appended again (201, a
//     second log entry) instead of getting its receipt, and A's lookup
//     omits it;
//   - vindex.pebble: see TestRedteam14PebbleMapMarkerDeletedForks.
//
// Fix: open an existing store with pebble.Options.ErrorIfNotExists (the
// directory exists: it must hold a store), so the damage is an error at
// start and the operator rebuilds (map-rebuild / delete the index).
func TestRedteam14PebbleMarkerDeletedLedger(t *testing.T) {
	for _, store := range []string{posix.IndexDir} {
		t.Run(store, func(t *testing.T) {
			t.Setenv(posix.EnvIndexEngine, posix.EnginePebble)
			dir := t.TempDir()
			tl := startLedgerIn(t, dir, Config{MapCommitInterval: 30 * time.Millisecond})
			alice := newTestSigner(t)
			dA := randomDigest(t)
			t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
			var as []*notarize.Entry
			var recs []api.Receipt
			for i := range 5 {
				e := alice.sign(t, dA, notarize.StatusTrusted, t0.Add(time.Duration(i)*time.Minute))
				as = append(as, e)
				recs = append(recs, tl.submit(t, e, http.StatusCreated))
			}
			waitMapCovers(t, tl, tl.store.Processed())
			tl.restart(t) // the second run's open flushes the first run's WAL to sstables
			for range 3 {
				tl.submit(t, alice.sign(t, randomDigest(t), notarize.StatusTrusted, t0), http.StatusCreated)
			}
			waitMapCovers(t, tl, tl.store.Processed())
			tl.close(t)
			rt14DropMarker(t, filepath.Join(dir, store))
			tl.open(t)

			{
				for i, e := range as {
					if _, rec, err := post(t.Context(), http.DefaultClient, tl.url, mustMarshal(t, e)); err != nil || rec.Index != recs[i].Index {
						t.Errorf("LOSS: resubmission of A%d: index %d, want its receipt at %d", i, rec.Index, recs[i].Index)
					}
				}
				got := tl.checkLookup(t, tl.lookup(t, dA))
				for _, r := range recs {
					if !slices.Contains(got, r.Index) {
						t.Errorf("LOSS: lookup of A's digest %v omits receipted entry %d", got, r.Index)
					}
				}
			}
		})
	}
}

// TestRedteam14PebbleMapMarkerDeletedForks: LOSS (a fork of the signed
// map). The map's store (vindex.pebble) with its MANIFEST marker removed,
// after a first run's nodes were flushed to sstables: the restarted
// ledger opens it without an error at the position of its WAL (58 of 59),
// with the first run's nodes gone, and folds the next statements onto
// that hollow tree (a missing node reads as an empty subtree): the map
// root it then commits and signs into the log is not the root of the map
// recomputed from the log (3 runs of 3). Clients check completeness
// proofs against those roots: a statement of the first run is then
// provably "absent", or every proof fails. Fix: ErrorIfNotExists on an
// existing vindex.pebble (then map-rebuild), and a check at open that
// the stored root is the root of the stored nodes (vindex.Apply of
// nothing) before folding onto it.
func TestRedteam14PebbleMapMarkerDeletedForks(t *testing.T) {
	t.Setenv(posix.EnvIndexEngine, posix.EnginePebble)
	dir := t.TempDir()
	tl := startLedgerIn(t, dir, Config{MapCommitInterval: 30 * time.Millisecond})
	alice, bob := newTestSigner(t), newTestSigner(t)
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	for range 32 {
		tl.submit(t, alice.sign(t, randomDigest(t), notarize.StatusTrusted, t0), http.StatusCreated)
	}
	waitMapCovers(t, tl, tl.store.Processed())
	tl.restart(t)
	for range 3 {
		tl.submit(t, bob.sign(t, randomDigest(t), notarize.StatusTrusted, t0), http.StatusCreated)
	}
	waitMapCovers(t, tl, tl.store.Processed())
	tl.close(t)
	rt14DropMarker(t, filepath.Join(dir, mapDirName))
	tl.open(t)
	st, err := tl.vmap.m.MapState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("map after the damage: position %d of %d", st.Position, tl.store.Processed())
	for range 16 {
		tl.submit(t, bob.sign(t, randomDigest(t), notarize.StatusTrusted, t0), http.StatusCreated)
	}
	waitMapCovers(t, tl, tl.store.Processed())
	time.Sleep(200 * time.Millisecond)
	t.Log("a failure below is a LOSS: a signed map root that the log does not recompute (a fork)")
	t.Logf("%d roots recomputed", recomputeRoots(t, tl))
}
