package posix

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/notarize/docker-notarize/ledger/storage"
)

// Red team 14: attacks on the pebble digest index and the bbolt → pebble
// migration at the storage level. Each test states the defence it checks.

// rt14Batch returns n rows of batch b, every one about digest d by key k,
// each with an identity of its own.
func rt14Batch(b, n int, d, k []byte) []storage.Row {
	rows := make([]storage.Row, n)
	for i := range rows {
		rows[i] = storage.Row{ID: h(fmt.Sprint("rt14-", b, "-", i)), Digest: d, KeyID: k,
			Stamp: stampAt(int64(10000 + b*n + i)), Status: 1, Data: []byte(fmt.Sprint("entry ", b, "/", i))}
	}
	return rows
}

// TestRedteam14PebbleBatchAllOrNothing: readers running beside the
// follower's Writes never see part of a batch: a digest's page, a key's
// filtered page and the key index always hold whole batches, an identity
// of a batch's last row is never indexed before its first row's, and the
// position read after a page never lags the rows the page saw.
func TestRedteam14PebbleBatchAllOrNothing(t *testing.T) {
	ctx := t.Context()
	ix, err := openPebbleIndex(filepath.Join(t.TempDir(), IndexDir), quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer ix.close()
	const batch, batches = 8, 120
	d, k := h("rt14-digest"), h("rt14-key")
	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !done.Load(); n++ {
				page, err := ix.Page(ctx, d, nil, 0, math.MaxUint64, 1<<20)
				if err != nil {
					errs <- err
					return
				}
				if len(page)%batch != 0 {
					errs <- fmt.Errorf("reader %d: a page of %d rows: part of a batch", r, len(page))
					return
				}
				if pos, err := ix.Position(ctx); err != nil || pos < uint64(len(page)) {
					errs <- fmt.Errorf("reader %d: position %d after a page of %d (%v)", r, pos, len(page), err)
					return
				}
				kp, err := ix.Page(ctx, d, [][]byte{k}, 0, math.MaxUint64, 1<<20)
				if err != nil || len(kp)%batch != 0 {
					errs <- fmt.Errorf("reader %d: a key page of %d rows (%v)", r, len(kp), err)
					return
				}
				b := n % batches
				_, lastOK, err1 := ix.IndexOf(ctx, h(fmt.Sprint("rt14-", b, "-", batch-1)))
				_, firstOK, err2 := ix.IndexOf(ctx, h(fmt.Sprint("rt14-", b, "-", 0)))
				if err := errors.Join(err1, err2); err != nil {
					errs <- err
					return
				}
				if lastOK && !firstOK {
					errs <- fmt.Errorf("reader %d: batch %d's last identity indexed, its first not", r, b)
					return
				}
			}
		}()
	}
	for b := range batches {
		if ok, err := ix.Write(ctx, uint64(b*batch), rt14Batch(b, batch, d, k)); !ok || err != nil {
			done.Store(true)
			wg.Wait()
			t.Fatalf("write %d: %v %v", b, ok, err)
		}
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestRedteam14PebbleRacingWritesOneWins: Writes racing at one position
// (a second follower, a retry after a timeout) commit exactly one batch;
// the others report an error and write nothing (none of their identities
// is indexed, the position is the winner's).
func TestRedteam14PebbleRacingWritesOneWins(t *testing.T) {
	ctx := t.Context()
	ix, err := openPebbleIndex(filepath.Join(t.TempDir(), IndexDir), quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer ix.close()
	const writers, n = 8, 16
	var wg sync.WaitGroup
	won := make([]bool, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := ix.Write(ctx, 0, rt14Batch(w, n, h(fmt.Sprint("d", w)), h("k")))
			if ok != (err == nil) {
				t.Errorf("writer %d: ok %v with error %v", w, ok, err)
			}
			won[w] = ok
		}()
	}
	wg.Wait()
	winners := 0
	for w := range writers {
		if won[w] {
			winners++
		}
		for i := range n {
			_, ok, err := ix.IndexOf(ctx, h(fmt.Sprint("rt14-", w, "-", i)))
			if err != nil || ok != won[w] {
				t.Fatalf("writer %d (won %v): identity %d indexed %v (%v)", w, won[w], i, ok, err)
			}
		}
	}
	if pos, err := ix.Position(ctx); winners != 1 || pos != n || err != nil {
		t.Fatalf("%d writers won, position %d (%v); want one and %d", winners, pos, err, n)
	}
}

// rt14FilledPebble writes rows batches of rt14Batch into a pebble index in
// dir, flushed to sstables (compacted when compact), and closes it.
func rt14FilledPebble(t *testing.T, dir string, batches int, compact bool) {
	t.Helper()
	ix, err := openPebbleIndex(filepath.Join(dir, IndexDir), quiet())
	if err != nil {
		t.Fatal(err)
	}
	for b := range batches {
		if ok, err := ix.Write(t.Context(), uint64(b*16), rt14Batch(b, 16, h(fmt.Sprint("d", b%5)), h("k"))); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if b%(batches/4+1) == 0 {
			if err := ix.s.DB().Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := ix.s.DB().Flush(); err != nil {
		t.Fatal(err)
	}
	if compact {
		if err := ix.s.DB().Compact(t.Context(), []byte{0}, []byte{0xff}, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := ix.close(); err != nil {
		t.Fatal(err)
	}
}

// rt14Open opens the storage in dir and, when that succeeds, reads every
// row back: it returns whether the index answered all of them, and the
// first error of the open or of a read.
func rt14Open(t *testing.T, dir string, batches int) (complete bool, pos uint64, err error) {
	t.Helper()
	st, err := New(t.Context(), Config{Dir: dir, Logger: quiet()})
	if err != nil {
		return false, 0, err
	}
	defer st.Close()
	ix := st.Index()
	pos, err = ix.Position(t.Context())
	if err != nil {
		return false, pos, err
	}
	complete = true
	for b := range batches {
		for i := range 16 {
			_, ok, err := ix.IndexOf(t.Context(), h(fmt.Sprint("rt14-", b, "-", i)))
			if err != nil {
				return false, pos, err
			}
			complete = complete && ok
		}
	}
	var all []uint64
	for d := range 5 {
		p, err := ix.Page(t.Context(), h(fmt.Sprint("d", d)), nil, 0, math.MaxUint64, 1<<20)
		if err != nil {
			return false, pos, err
		}
		all = append(all, p...)
	}
	return complete && uint64(len(all)) == pos, pos, nil
}

// TestRedteam14PebbleDamagedStoreFailsClosed: a pebble index whose files
// were damaged on disk (an sstable deleted or truncated, the MANIFEST
// truncated) either refuses to open or reads with an error; it never
// answers with a position that claims rows it no longer holds, since
// the ledger answers duplicate receipts and self-revocation refusals from
// those rows.
func TestRedteam14PebbleDamagedStoreFailsClosed(t *testing.T) {
	const batches = 40
	damages := []struct {
		name string
		glob string
		hurt func(path string) error
	}{
		{"sstable deleted", "*.sst", os.Remove},
		{"sstable truncated", "*.sst", func(p string) error { return os.Truncate(p, 100) }},
		{"manifest truncated", "MANIFEST-*", func(p string) error {
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			return os.Truncate(p, fi.Size()/2)
		}},
	}
	for _, dm := range damages {
		t.Run(dm.name, func(t *testing.T) { rt14Damage(t, dm.glob, dm.hurt, batches) })
	}
}

// rt14Damage fills a pebble index, hurts the last of its files matching
// glob, reopens it and fails the test if it answers lookups without an
// error at a non-zero position while missing rows.
func rt14Damage(t *testing.T, glob string, hurt func(string) error, batches int) {
	t.Helper()
	dir := t.TempDir()
	rt14FilledPebble(t, dir, batches, false)
	files, err := filepath.Glob(filepath.Join(dir, IndexDir, glob))
	if err != nil || len(files) == 0 {
		t.Fatalf("no %s in the store: %v", glob, err)
	}
	if err := hurt(files[len(files)-1]); err != nil {
		t.Fatal(err)
	}
	complete, pos, err := rt14Open(t, dir, batches)
	t.Logf("complete %v position %d err %v", complete, pos, err)
	if err == nil && !complete && pos != 0 {
		t.Fatalf("LOSS: a damaged pebble index (%s) opened at position %d and answered lookups without an error, missing rows", glob, pos)
	}
}

// TestRedteam14PebbleFormatGarbage: a format key that is not 8 bytes is
// taken as an old format (the store is emptied and rebuilt from the log:
// position 0), never as a store to trust; a position of the wrong size is
// an error at open.
func TestRedteam14PebbleFormatGarbage(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	rt14FilledPebble(t, dir, 4, false)
	db, err := openPebble(filepath.Join(dir, IndexDir), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set(pkey(pfxMeta, formatKey), []byte{1}, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if complete, pos, err := rt14Open(t, dir, 4); err != nil || complete || pos != 0 {
		t.Fatalf("a garbage format: complete %v position %d err %v, want an empty index at 0", complete, pos, err)
	}
	db, err = openPebble(filepath.Join(dir, IndexDir), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set(pkey(pfxMeta, nextKey), []byte{0, 1}, nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, Config{Dir: dir, Logger: quiet()}); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("a position of 2 bytes: %v", err)
	}
}

// TestRedteam14EngineConfusion: a data directory whose index.pebble is a
// regular file, or whose index.db is a directory, is refused with an
// error; an unknown engine for a new directory is refused.
func TestRedteam14EngineConfusion(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, IndexDir), []byte("not a store"), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, err := New(ctx, Config{Dir: dir, Logger: quiet()}); err == nil {
		_ = st.Close()
		t.Fatal("BYPASS: an index.pebble that is a file opened")
	}
	dir = t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, IndexFile), 0o700); err != nil {
		t.Fatal(err)
	}
	if st, err := New(ctx, Config{Dir: dir, Logger: quiet()}); err == nil {
		_ = st.Close()
		t.Fatal("BYPASS: an index.db that is a directory opened")
	}
	if st, err := New(ctx, Config{Dir: t.TempDir(), NewEngine: "Pebble", Logger: quiet()}); err == nil || !strings.Contains(err.Error(), `new directory "Pebble"`) {
		if st != nil {
			_ = st.Close()
		}
		t.Fatalf("an unknown engine for a new directory: %v", err)
	}
}

// TestRedteam14MigrateRunTwiceAndOnPebble: a migration run again on the
// migrated directory, or on a directory that was pebble from the start,
// has nothing to do and changes nothing (the pebble index answers as
// before).
func TestRedteam14MigrateRunTwiceAndOnPebble(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	rt14FilledPebble(t, dir, 8, false)
	before, pos, err := rt14Open(t, dir, 8)
	if err != nil || !before || pos != 8*16 {
		t.Fatalf("the pebble index: %v %d %v", before, pos, err)
	}
	for range 2 {
		if res, err := MigrateIndex(ctx, dir, quiet()); err != nil || res.Done {
			t.Fatalf("migration of a pebble directory: %+v %v", res, err)
		}
	}
	if after, pos2, err := rt14Open(t, dir, 8); err != nil || !after || pos2 != pos {
		t.Fatalf("after migrations of a pebble directory: %v %d %v", after, pos2, err)
	}
}
