package ledger

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/ledger/storage/posix"
	"github.com/notarize/docker-notarize/notarize"
)

// rt21TopAgrees compares every node topNodes holds with the store's
// snapshot, when both are at one position; it returns the nodes compared
// (0: not at one position just then).
func rt21TopAgrees(t *testing.T, tl *testLedger) int {
	t.Helper()
	top := tl.vmap.top
	top.mu.Lock()
	defer top.mu.Unlock()
	if !top.valid {
		return 0
	}
	ids := make([][]byte, 0, len(top.nodes))
	for id := range top.nodes {
		ids = append(ids, []byte(id))
	}
	compared := 0
	err := tl.vmap.m.MapView(t.Context(), func(st storage.MapState, r storage.MapNodeReader) error {
		if st.Position != top.pos {
			return nil // a commit stored, committed not yet run (it waits for mu)
		}
		got, err := r.MapNodes(t.Context(), ids)
		if err != nil {
			return err
		}
		for i, id := range ids {
			if !bytes.Equal(got[i], top.nodes[string(id)]) || (got[i] == nil) != (top.nodes[string(id)] == nil) {
				return fmt.Errorf("at %d, node %x: kept %x, stored %x", st.Position, id, top.nodes[string(id)], got[i])
			}
		}
		compared = len(ids)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return compared
}

// TestRedteam21TopAgreesWithStoreUnderFoldAhead: under a stream of
// entries that keeps the fold ahead (during a root's publication) and the
// fold between updates busy, on both engines, whenever topNodes and the
// store are at one position every node it holds is the store's, and the
// roots recompute from the log.
func TestRedteam21TopAgreesWithStoreUnderFoldAhead(t *testing.T) {
	for _, engine := range []string{posix.EnginePebble, posix.EngineBbolt} {
		for _, tc := range []struct {
			name string
			cfg  Config
		}{
			{"while a root is published", Config{MapCommitInterval: 20 * time.Millisecond, CheckpointInterval: 400 * time.Millisecond}},
			{"between updates", Config{MapCommitEntries: 40, MapCommitInterval: time.Second}},
		} {
			t.Run(engine+"/"+tc.name, func(t *testing.T) {
				t.Setenv(envTestEngine, engine)
				tl := startLedger(t, tc.cfg)
				alice, bob := newTestSigner(t), newTestSigner(t)
				shared := randomDigest(t)
				t0 := time.Now().Add(-time.Hour).UTC()
				compared, checks := 0, 0
				deadline := time.Now().Add(60 * time.Second)
				for round := 0; round < 10 || tl.vmap.aheadUsed.Load()+tl.vmap.preFolds.Load() < 3; round++ {
					if time.Now().After(deadline) {
						t.Fatalf("after %d rounds: %d continued folds ahead, %d preFolds", round, tl.vmap.aheadUsed.Load(), tl.vmap.preFolds.Load())
					}
					var batch [][]byte
					batch = append(batch, foldMix(t, alice, bob, shared, t0, round)...)
					for i := range 20 {
						batch = append(batch, mustMarshal(t, alice.signAt(t, randomDigest(t), notarize.StatusTrusted, t0.Add(time.Duration(round*20+i)*time.Second))))
					}
					appendRaw(t, tl, batch)
					if n := rt21TopAgrees(t, tl); n > 0 {
						compared, checks = compared+n, checks+1
					}
				}
				waitMapCovers(t, tl, tl.store.Processed())
				waitRootIndexed(t, tl)
				if n := rt21TopAgrees(t, tl); n > 0 {
					compared, checks = compared+n, checks+1
				}
				if n := recomputeRoots(t, tl); n < 3 {
					t.Fatalf("%d roots checked", n)
				}
				top := tl.vmap.top
				top.mu.Lock()
				hits, misses := top.hits, top.misses
				top.mu.Unlock()
				t.Logf("%d checks, %d kept nodes compared; %d continued folds ahead, %d preFolds; %d hits, %d misses",
					checks, compared, tl.vmap.aheadUsed.Load(), tl.vmap.preFolds.Load(), hits, misses)
				if checks == 0 || compared == 0 || hits+misses == 0 {
					t.Fatal("nothing compared, or the kept levels were never read")
				}
			})
		}
	}
}
