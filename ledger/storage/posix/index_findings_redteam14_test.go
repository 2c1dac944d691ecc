package posix

import (
	"fmt"
	"os"
	"testing"
)

// Red team 14 findings at the storage level (they fail: build tag
// redteam14). Run: go test -tags redteam14 -run Redteam14 ./ledger/storage/posix/

// TestRedteam14PebbleMarkerDeletedServesPartialIndex: LOSS. pebble finds
// its current MANIFEST through a marker file (marker.manifest.NNNNNN.
// MANIFEST-NNNNNN, zero bytes). With that one empty file gone (a backup or
// sync tool that skips empty files, an operator's clean-up, a damaged
// directory entry), openPebble creates a NEW store in the directory and
// replays the WAL files still there into it: the index opens without an
// error at the position of the last batches (their meta row is in the
// WAL) while every row flushed to sstables is gone. The ledger then
// believes it has indexed the whole log: IndexOf misses earlier
// statements (a resubmission is appended again instead of getting its
// receipt), lookups and self-revocation refusals miss them.
// Fix: open an existing index.pebble / vindex.pebble with
// pebble.Options.ErrorIfNotExists = true (posix.New knows the directory
// exists), and refuse a store whose position is non-zero but whose data
// rows do not reach it.
func TestRedteam14PebbleMarkerDeletedServesPartialIndex(t *testing.T) {
	rt14Damage(t, "marker.manifest.*", os.Remove, 40)
}

// TestRedteam14PebbleCorruptBlockPanics: DoS. A flipped byte in an
// sstable block makes pebble report a DataCorruption event, whose default
// handler calls Logger.Fatalf, which pebbleLogger turns into a panic: the
// read panics instead of returning the corruption error. In the ledger
// the follower's Write (its IndexOf Gets) or a lookup then takes the
// process down (or net/http drops the connection without an answer), on
// every restart again. Fix: set EventListener.DataCorruption to log the
// corruption (the read already returns pebble's corruption error, which
// the ledger answers with a 5xx), and keep Fatalf for pebble's fatal
// states only.
func TestRedteam14PebbleCorruptBlockPanics(t *testing.T) {
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("DoS: a read of a corrupt pebble block panicked instead of returning an error: %.300v", fmt.Sprint(r))
		}
	}()
	rt14Damage(t, "*.sst", func(p string) error {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i := len(b) / 4; i < len(b)/2; i += 97 {
			b[i] ^= 0x5a
		}
		return os.WriteFile(p, b, 0o600)
	}, 40)
}
