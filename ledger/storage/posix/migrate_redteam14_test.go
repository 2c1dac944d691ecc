package posix

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestRedteam14PebbleOpenedTwiceInOneProcess: a second storage on a
// pebble data directory already open in this process (two ledgers in one
// test binary, a restart that did not close the first) fails as in use,
// and the first keeps working.
func TestRedteam14PebbleOpenedTwiceInOneProcess(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	st, err := New(ctx, Config{Dir: dir, Engine: EnginePebble, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st2, err := New(ctx, Config{Dir: dir, Logger: quiet()}); err == nil || !strings.Contains(err.Error(), "in use") {
		if st2 != nil {
			_ = st2.Close()
		}
		t.Fatalf("BYPASS: a second open of a pebble directory in one process: %v", err)
	}
	if ok, err := st.Index().Write(ctx, 0, rt14Batch(0, 4, h("d"), h("k"))); !ok || err != nil {
		t.Fatalf("the first storage after the refused second: %v %v", ok, err)
	}
}

// TestRedteam14MigrateInterruptedBeforeCopy: a migration killed while its
// copy ran leaves a half-written index.pebble.tmp (here: a directory of
// garbage, as a crash may leave); the ledger keeps its bbolt index (the
// .tmp is never opened) and the next migration throws the .tmp away and
// completes.
func TestRedteam14MigrateInterruptedBeforeCopy(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	bx, err := openIndex(filepath.Join(dir, IndexFile), quiet())
	if err != nil {
		t.Fatal(err)
	}
	rows := rt14Batch(0, 32, h("d0"), h("k"))
	if ok, err := bx.Write(ctx, 0, rows); !ok || err != nil {
		t.Fatal(ok, err)
	}
	want := observe(t, bx)
	if err := bx.close(); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, IndexDir+".tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"000001.log", "MANIFEST-000001", "marker.manifest.000001.MANIFEST-000001", "000005.sst"} {
		if err := os.WriteFile(filepath.Join(tmp, f), []byte("half written"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if e, err := DirEngine(dir); e != EngineBbolt || err != nil {
		t.Fatalf("with a half-written .tmp: engine %q %v", e, err)
	}
	if res, err := MigrateIndex(ctx, dir, quiet()); err != nil || !res.Done || res.Rows == 0 {
		t.Fatalf("the migration after a half-written .tmp: %+v %v", res, err)
	}
	st, err := New(ctx, Config{Dir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got := observe(t, st.Index()); st.IndexEngine() != EnginePebble || got != want {
		t.Fatalf("after migrating over a half-written .tmp (%s):\n%s\nwant\n%s", st.IndexEngine(), got, want)
	}
}

// TestRedteam14MigrateRefusesOddIndexes: a bbolt index with a bucket this
// binary does not know (written by another version), or of an older
// format, is not migrated: the error names the problem, index.db stays in
// use and nothing is left beside it.
func TestRedteam14MigrateRefusesOddIndexes(t *testing.T) {
	ctx := t.Context()
	for _, c := range []struct {
		name, want string
		hurt       func(tx *bolt.Tx) error
	}{
		{"unknown bucket", "unknown bucket", func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("future")); return err }},
		{"older format", "not of format", func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(formatKey, be64(boltFormat-1)) }},
		{"no format", "not of format", func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(formatKey) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			bx, err := openIndex(filepath.Join(dir, IndexFile), quiet())
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := bx.Write(ctx, 0, rt14Batch(0, 8, h("d"), h("k"))); !ok || err != nil {
				t.Fatal(ok, err)
			}
			if err := bx.db.Update(c.hurt); err != nil {
				t.Fatal(err)
			}
			if err := bx.close(); err != nil {
				t.Fatal(err)
			}
			if res, err := MigrateIndex(ctx, dir, quiet()); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("BYPASS: migration of an index with %s: %+v %v", c.name, res, err)
			}
			if e, err := DirEngine(dir); e != EngineBbolt || err != nil {
				t.Fatalf("after the refused migration: %q %v", e, err)
			}
			for _, left := range []string{IndexDir, IndexFile + OldSuffix} {
				if _, err := os.Stat(filepath.Join(dir, left)); err == nil {
					t.Fatalf("a refused migration left %s", left)
				}
			}
		})
	}
}
