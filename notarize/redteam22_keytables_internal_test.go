package notarize

import "testing"

// TestRedteam22ConfiguredBoundBuildsBounded: a cache made with a tables
// bound other than DefaultKeyCacheTables (the ledger's Config.KeyTables) keeps
// both bounds the comments give for it: at most that many held keys with
// a table (memory: bound × KeyTableBytes), and at most the bound plus one
// build per reclaimEvery entries (CPU), against a hostile signer's keys
// that sign in bursts and idle in between, each busy at every burst and
// finding idle tables to reclaim every time.
//
// Mutants checked: canBuild bounded by DefaultKeyCacheTables, or by
// max(c.tables, DefaultKeyCacheTables), instead of c.tables (the package
// default's burst kept for a cache bounded lower): 78 builds here, against
// at most 32+15+1; the second passes every other test of the package.
func TestRedteam22ConfiguredBoundBuildsBounded(t *testing.T) {
	const bound = DefaultKeyCacheTables / 2  // a bound below the default, with room for a burst past it
	const n = 2*bound + tableIdle/tableAfter // each key idles > tableIdle between its bursts
	c := NewKeyCacheTables(n, bound)
	if c.TablesBound() != bound {
		t.Fatalf("bound %d, want %d", c.TablesBound(), bound)
	}
	ks := heldKeys(t, c, n)
	builds, entries := 0, 0
	for range 3 {
		for _, k := range ks {
			was := k.table.Load()
			earn(c, k)
			entries += tableAfter
			if now := k.table.Load(); now != nil && now != was {
				builds++
			}
			if got := withTables(ks); got > bound {
				t.Fatalf("%d keys hold a table, bound %d", got, bound)
			}
		}
	}
	if most := bound + entries/reclaimEvery + 1; builds > most {
		t.Fatalf("%d tables built for %d entries in bursts, bound %d: want at most %d", builds, entries, bound, most)
	}
	t.Logf("%d tables built for %d entries", builds, entries)
	checkTables(t, c)
}
