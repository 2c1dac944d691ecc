package posix

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/notarize/docker-notarize/internal/pebblestore"
	"github.com/notarize/docker-notarize/ledger/storage"
)

// pfRows are n rows of batch b (identities pf-b-i), about one digest.
func pfRows(b, n int) []storage.Row {
	rows := make([]storage.Row, n)
	for i := range rows {
		rows[i] = storage.Row{ID: h(fmt.Sprint("pf-", b, "-", i)), Digest: h("pf-digest"), KeyID: h("pf-key"),
			Stamp: stampAt(int64(20000 + b*n + i)), Status: 1, Data: []byte(fmt.Sprint("entry ", b, "/", i))}
	}
	return rows
}

// pfFill writes batches of 8 rows into a pebble index at dir/index.pebble,
// in two runs: the first run's rows are flushed to sstables, the second
// run's last batches stay in its WAL. It returns the position.
func pfFill(t *testing.T, dir string, batches int) uint64 {
	t.Helper()
	next := uint64(0)
	for run := range 2 {
		ix, err := openPebbleIndex(filepath.Join(dir, IndexDir), quiet())
		if err != nil {
			t.Fatal(err)
		}
		for b := run * batches / 2; b < (run+1)*batches/2; b++ {
			if ok, err := ix.Write(t.Context(), next, pfRows(b, 8)); !ok || err != nil {
				t.Fatal(ok, err)
			}
			next += 8
		}
		if run == 0 {
			if err := ix.s.DB().Flush(); err != nil {
				t.Fatal(err)
			}
		}
		if err := ix.close(); err != nil {
			t.Fatal(err)
		}
	}
	return next
}

// TestPebbleFixMarkerLostRefused: LOSS fixed. An index whose MANIFEST
// marker is lost would open as a new store holding only its WAL's last
// batches, at the full position; it is refused, naming the directory and
// what to do, and deleting the store (as the error says) opens an empty
// index that the follower rebuilds from the log.
func TestPebbleFixMarkerLostRefused(t *testing.T) {
	dir := t.TempDir()
	pfFill(t, dir, 10)
	markers, err := filepath.Glob(filepath.Join(dir, IndexDir, "marker.manifest.*"))
	if err != nil || len(markers) == 0 {
		t.Fatalf("no marker: %v", err)
	}
	for _, m := range markers {
		if err := os.Remove(m); err != nil {
			t.Fatal(err)
		}
	}
	_, err = New(t.Context(), Config{Dir: dir, Logger: quiet()})
	if !errors.Is(err, ErrPebbleDamaged) || !strings.Contains(err.Error(), filepath.Join(dir, IndexDir)) || !strings.Contains(err.Error(), "rebuilt from the log") {
		t.Fatalf("an index without its MANIFEST marker: %v, want ErrPebbleDamaged naming the directory and the rebuild", err)
	}
	if err := os.RemoveAll(filepath.Join(dir, IndexDir)); err != nil {
		t.Fatal(err)
	}
	st, err := New(t.Context(), Config{Dir: dir, Logger: quiet(), Engine: EnginePebble})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if pos, err := st.Index().Position(t.Context()); err != nil || pos != 0 {
		t.Fatalf("the deleted index reopened at %d (%v), want 0", pos, err)
	}
}

// TestPebbleFixFirstOpenCrashOpens: a directory with no store's files (a
// crash in the very first open, before pebble wrote its MANIFEST) still
// opens as a new store: the refusal is only for a store created before.
func TestPebbleFixFirstOpenCrashOpens(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, IndexDir)
	if err := os.MkdirAll(p, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "LOCK"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ix, err := openPebbleIndex(p, quiet())
	if err != nil {
		t.Fatalf("a directory holding only LOCK: %v", err)
	}
	if err := ix.close(); err != nil {
		t.Fatal(err)
	}
}

// TestPebbleFixRowsWithoutFormatRefused: a store with rows (a position)
// but no format key lost its first batches; upgrade refuses it
// (ErrPebbleDamaged) rather than trusting its position.
func TestPebbleFixRowsWithoutFormatRefused(t *testing.T) {
	p := filepath.Join(t.TempDir(), IndexDir)
	opts := PebbleOptions(1 << 20)
	db, err := pebble.Open(p, opts)
	opts.Cache.Unref()
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set(pkey(pfxMeta, nextKey), be64(640), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Set(pkey(pfxIDs, h("late")), be64(639), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := openPebbleIndex(p, quiet()); !errors.Is(err, ErrPebbleDamaged) || !strings.Contains(err.Error(), "no format key") {
		t.Fatalf("rows without a format key: %v, want ErrPebbleDamaged", err)
	}
}

// TestPebbleFixCorruptionFailsReads: DoS fixed. A damaged sstable block
// makes the read return an error (no panic), the corruption is logged
// with the store's path, and from then on every read of the index fails
// (ErrPebbleDamaged): a lookup never answers from a store that reported
// corruption, even of rows in undamaged blocks.
func TestPebbleFixCorruptionFailsReads(t *testing.T) {
	dir := t.TempDir()
	pfFill(t, dir, 40)
	ssts, _ := filepath.Glob(filepath.Join(dir, IndexDir, "*.sst"))
	if len(ssts) == 0 {
		t.Fatal("no sstable")
	}
	b, err := os.ReadFile(ssts[0])
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 4; i < len(b)/2; i += 97 {
		b[i] ^= 0x5a
	}
	if err := os.WriteFile(ssts[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	ix, err := openPebbleIndex(filepath.Join(dir, IndexDir), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		if !strings.Contains(err.Error(), "corrupt") {
			t.Fatalf("open of a corrupt index: %v", err)
		}
		return // refused at open: fails closed
	}
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("a read of a corrupt block panicked: %.300v", r)
		}
	}()
	var readErr error
	for bt := range 20 {
		for i := range 8 {
			if _, _, err := ix.IndexOf(t.Context(), h(fmt.Sprint("pf-", bt, "-", i))); err != nil {
				readErr = err
			}
		}
	}
	if readErr == nil {
		t.Fatal("every read of a corrupt index succeeded")
	}
	if !strings.Contains(logs.String(), "pebble store corrupt") || !strings.Contains(logs.String(), filepath.Join(dir, IndexDir)) {
		t.Fatalf("the corruption was not logged with the store: %s", logs.String())
	}
	if _, _, err := ix.IndexOf(t.Context(), h("pf-39-7")); !errors.Is(err, ErrPebbleDamaged) {
		t.Fatalf("a read after the corruption was reported: %v, want ErrPebbleDamaged", err)
	}
	if _, err := ix.Page(t.Context(), h("pf-digest"), nil, 0, 1<<62, 10); !errors.Is(err, ErrPebbleDamaged) {
		t.Fatalf("a page after the corruption was reported: %v, want ErrPebbleDamaged", err)
	}
	if ok, err := ix.Write(t.Context(), 320, pfRows(99, 1)); ok || !errors.Is(err, ErrPebbleDamaged) {
		t.Fatalf("a write after the corruption was reported: %v %v, want ErrPebbleDamaged", ok, err)
	}
}

// TestPebbleFixConcurrentMigrationRefused: a second migration while the
// first one copies is refused ("in use"), and the first completes with
// every row (two migrations sharing index.pebble.tmp broke each other's
// store).
func TestPebbleFixConcurrentMigrationRefused(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	bx, err := openIndex(filepath.Join(dir, IndexFile), quiet())
	if err != nil {
		t.Fatal(err)
	}
	var rows []storage.Row
	for b := range 30 {
		rows = append(rows, pfRows(b, 8)...)
	}
	if ok, err := bx.Write(ctx, 0, rows); !ok || err != nil {
		t.Fatal(ok, err)
	}
	want := observe(t, bx)
	if err := bx.close(); err != nil {
		t.Fatal(err)
	}
	defer func(n int) { migrateBatchBytes, migrateBatchHook = n, nil }(migrateBatchBytes)
	migrateBatchBytes = 2048
	var second error
	ran := false
	migrateBatchHook = func(int) error {
		if !ran {
			ran = true
			_, second = MigrateIndex(ctx, dir, quiet())
		}
		return nil
	}
	if res, err := MigrateIndex(ctx, dir, quiet()); err != nil || !res.Done {
		t.Fatalf("the first migration: %+v %v", res, err)
	}
	if !errors.Is(second, ErrInUse) || !strings.Contains(second.Error(), "another migration") {
		t.Fatalf("a second migration during the first: %v, want ErrInUse", second)
	}
	st, err := New(ctx, Config{Dir: dir, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got := observe(t, st.Index()); got != want {
		t.Fatalf("the migrated index differs:\n%s\nwant\n%s", got, want)
	}
}

// TestPebbleFixMigrationKeepsOldBackup: LOSS (low) fixed. A migration
// whose bbolt file would be renamed over an earlier migration's
// index.db.bbolt-old refuses (ErrOldExists, naming the file) and leaves
// both files as they were; once the operator moves the old file away,
// it completes.
func TestPebbleFixMigrationKeepsOldBackup(t *testing.T) {
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
	if ok, err := bx.Write(ctx, 0, pfRows(0, 4)); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := bx.close(); err != nil {
		t.Fatal(err)
	}
	_, err = MigrateIndex(ctx, dir, quiet())
	if !errors.Is(err, ErrOldExists) || !strings.Contains(err.Error(), old) {
		t.Fatalf("migration over an existing %s: %v, want ErrOldExists", old, err)
	}
	if b, _ := os.ReadFile(old); string(b) != "the first migration's bbolt index" {
		t.Fatalf("LOSS: %s replaced", old)
	}
	if e, err := DirEngine(dir); e != EngineBbolt || err != nil {
		t.Fatalf("after the refusal: engine %q %v, want bbolt", e, err)
	}
	if err := os.Rename(old, old+".away"); err != nil {
		t.Fatal(err)
	}
	if res, err := MigrateIndex(ctx, dir, quiet()); err != nil || !res.Done {
		t.Fatalf("migration once the old file is moved: %+v %v", res, err)
	}
}

// TestPebbleFixReadAfterClose: a read that reaches the index after it was
// closed (a request the HTTP server's shutdown gave up waiting for) fails
// with pebblestore.ErrClosed; pebble itself panics on a closed database.
func TestPebbleFixReadAfterClose(t *testing.T) {
	ix, err := openPebbleIndex(filepath.Join(t.TempDir(), IndexDir), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := ix.Write(t.Context(), 0, pfRows(0, 8)); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := ix.close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ix.IndexOf(t.Context(), h("pf-0-0")); !errors.Is(err, pebblestore.ErrClosed) {
		t.Fatalf("IndexOf after close: %v, want ErrClosed", err)
	}
	if _, err := ix.Page(t.Context(), h("pf-digest"), nil, 0, 1<<62, 10); !errors.Is(err, pebblestore.ErrClosed) {
		t.Fatalf("Page after close: %v, want ErrClosed", err)
	}
}
