//go:build redteam14

package posix

import (
	"os"
	"strings"
	"testing"
)

// TestRedteam14PebbleFullDiskPanics: DoS. When the disk refuses a write
// (full; here RLIMIT_FSIZE, EFBIG, in a child process), the pebble
// index's Write does not return an error as bbolt's does: pebble reports
// a "fatal commit error" through Logger.Fatalf, which pebbleLogger makes
// a panic. In the ledger that is the follower's goroutine: the whole
// process dies, lookups included, where a bbolt ledger keeps answering
// lookups and refuses submissions until space is freed (observed also on
// a real 2 MiB tmpfs: "pebble: fatal commit error: write .../000006.log:
// no space left on device"). The map store (vindex.pebble) is the same.
// Fix: pebble cannot go on after a failed WAL write, so keep the process
// from reaching it: have the follower (and the map) check free space
// before a Write (statfs, a reserve of a few MemTableSizes) and return
// storage.ErrUnavailable below it; and make Fatalf log before it exits,
// so the operator sees why.
func TestRedteam14PebbleFullDiskPanics(t *testing.T) {
	if os.Getenv(envRT14Full) != "" {
		t.Skip("in the child")
	}
	if out := rt14WriteUntilFull(t, EnginePebble); !strings.Contains(out, "ERROR: ") {
		t.Fatalf("DoS: the pebble index on a full disk did not return an error from Write: %s", out)
	}
}
