package ledgerclient

import (
	"errors"
	"fmt"
	"runtime"
	"testing"

	"github.com/transparency-dev/tessera/api/layout"
)

// TestRedteam4FollowLiesAtBundleBoundaries: with eight workers checking
// bundles in parallel, a front lies exactly where the work is split: two
// entries swapped across a bundle boundary, an entry of the previous bundle
// repeated at the start of the next, the last bundle of a batch ending with
// the first entry of the next batch, and a bundle served twice in place of
// its neighbour. Each lying batch is refused as a whole (ErrBadProof), no
// entry of it is returned, the state stays where the last honest batch
// left it, and the honest batches before it are kept, whichever batch size.
func TestRedteam4FollowLiesAtBundleBoundaries(t *testing.T) {
	t.Parallel()
	const w = layout.EntryBundleWidth
	const n = 5*w + 40 // five full bundles and a partial one
	leaves := makeLeaves(t, 0, n)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8))
	for _, tc := range []struct {
		name string
		at   uint64 // the first index the lie touches
		hook func(idx uint64, e [][]byte) [][]byte
	}{
		{"swapped across bundles 1|2", 2*w - 1, func(idx uint64, e [][]byte) [][]byte {
			switch idx {
			case 1:
				e[w-1] = leaves[2*w]
			case 2:
				e[0] = leaves[2*w-1]
			}
			return e
		}},
		{"previous bundle's last entry repeated", 2 * w, func(idx uint64, e [][]byte) [][]byte {
			if idx == 2 {
				e[0] = leaves[2*w-1]
			}
			return e
		}},
		{"next batch's first entry pulled in", 4*w - 1, func(idx uint64, e [][]byte) [][]byte {
			if idx == 3 {
				e[w-1] = leaves[4*w]
			}
			return e
		}},
		{"bundle 3 served as bundle 4", 4 * w, func(idx uint64, e [][]byte) [][]byte {
			if idx == 4 {
				return append([][]byte(nil), leaves[3*w:4*w]...)
			}
			return e
		}},
		{"partial bundle's entries reordered", 5*w + 10, func(idx uint64, e [][]byte) [][]byte {
			if idx == 5 {
				e[10], e[11] = e[11], e[10]
			}
			return e
		}},
	} {
		for _, batch := range []uint64{w, 2 * w, 0} {
			t.Run(fmt.Sprintf("%s/batch %d", tc.name, batch), func(t *testing.T) {
				f, c := followLogOf(t, leaves)
				f.bundleHook = tc.hook
				fl := NewFollower(c, batch)
				st := FollowState{}
				var got []FollowedEntry
				var err error
				for range 20 {
					var b *FollowBatch
					if b, err = fl.Next(t.Context(), st); err != nil {
						break
					}
					if len(b.Entries) == 0 {
						break
					}
					got = append(got, b.Entries...)
					st = b.State
				}
				if !errors.Is(err, ErrBadProof) {
					t.Fatalf("BYPASS: the lie at %d: Next() = %v after %d entries, want ErrBadProof", tc.at, err, st.Size)
				}
				if st.Size > tc.at {
					t.Fatalf("BYPASS: the state advanced to %d over the lie at %d", st.Size, tc.at)
				}
				if uint64(len(got)) != st.Size {
					t.Fatalf("%d entries returned for a state of %d", len(got), st.Size)
				}
				for i, e := range got {
					want := verifyLeaf(uint64(i), leaves[i]) // makeLeaves logs a few bad entries too
					if e.Index != uint64(i) || (e.Err == nil) != (want.Err == nil) || e.Record.Index != want.Record.Index || string(e.Leaf) != string(leaves[i]) {
						t.Fatalf("BYPASS: entry %d of the honest batches: index %d, err %v (want %v), leaf as logged %v", i, e.Index, e.Err, want.Err, string(e.Leaf) == string(leaves[i]))
					}
				}
				// The honest batches before the lie were kept.
				bs := batch
				if bs == 0 {
					bs = DefaultFollowBatch
				}
				if want := tc.at / bs * bs; st.Size != want {
					t.Fatalf("state %d, want %d (every honest batch before the lie at %d)", st.Size, want, tc.at)
				}
				// Without the lie, the same follower goes on from there to the end.
				f.mu.Lock()
				f.bundleHook = nil
				f.mu.Unlock()
				rest, end := catchUp(t, fl, st)
				if end.Size != n || uint64(len(rest)) != n-st.Size {
					t.Fatalf("after the front stopped lying: %d entries, size %d; want %d", len(rest), end.Size, n)
				}
			})
		}
	}
}
