package posix

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRedteam14MigrateOverwritesOldBackup: LOSS (low: the file is derived
// data). A directory migrated once keeps index.db.bbolt-old, the
// operator's way back; if it later holds an index.db again (the operator
// went back to bbolt and let the ledger rebuild it, or restored a backup)
// and is migrated again, finishMigration's os.Rename replaces the
// existing index.db.bbolt-old without a word: the earlier way back is
// gone. Fix: refuse when src+OldSuffix exists (name it), or pick a free
// name (index.db.bbolt-old.1).
func TestRedteam14MigrateOverwritesOldBackup(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	old := filepath.Join(dir, IndexFile+OldSuffix)
	if err := os.WriteFile(old, []byte("the first migration's bbolt index"), 0o600); err != nil {
		t.Fatal(err)
	}
	bx, err := openIndex(filepath.Join(dir, IndexFile), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := bx.Write(ctx, 0, rt14Batch(0, 4, h("d"), h("k"))); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := bx.close(); err != nil {
		t.Fatal(err)
	}
	res, err := MigrateIndex(ctx, dir, quiet())
	b, _ := os.ReadFile(old)
	if err == nil && string(b) != "the first migration's bbolt index" {
		t.Fatalf("LOSS: the migration (%+v) replaced the existing %s without an error", res, old)
	}
}
