package ledger

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/storage/posix"
	"github.com/notarize/docker-notarize/notarize"
)

// rt14Migrate runs what notarize-ledger migrate-index does on dir: the
// map, then the index.
func rt14Migrate(t *testing.T, dir string) {
	t.Helper()
	file, mdir, prefixes := MapMigration()
	if _, err := posix.MigrateBolt(t.Context(), filepath.Join(dir, file), filepath.Join(dir, mdir), prefixes, nil, nil, testLogger(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := posix.MigrateIndex(t.Context(), dir, testLogger(t)); err != nil {
		t.Fatal(err)
	}
	if e, err := posix.DirEngine(dir); e != posix.EnginePebble || err != nil {
		t.Fatalf("engine after the migration: %q %v", e, err)
	}
}

// rt14SelfRevokedLedger starts a bbolt ledger in dir where key k logged a
// statement, then revoked itself; it returns the statement, its index and
// the revocation's index.
func rt14SelfRevokedLedger(t *testing.T, dir string) (*testLedger, *testSigner, *notarize.Entry, uint64, uint64) {
	t.Helper()
	t.Setenv(envTestEngine, posix.EngineBbolt)
	tl := startLedgerIn(t, dir, Config{MapCommitInterval: 30 * time.Millisecond})
	k := newTestSigner(t)
	now := time.Now().Add(-time.Hour)
	before := k.sign(t, randomDigest(t), notarize.StatusTrusted, now)
	first := tl.submit(t, before, http.StatusCreated)
	rev := tl.submit(t, k.revoke(t, k.keyID, "laptop stolen", now.Add(time.Minute)), http.StatusCreated)
	waitMapSettled(t, tl)
	return tl, k, before, first.Index, rev.Index
}

// waitMapSettled waits until the map covers the whole log and stays so
// for several commit intervals: a map root it logs is an entry the map
// then covers, so a test that compares map states before and after
// something must not take the first before the map's own roots are in.
func waitMapSettled(t *testing.T, tl *testLedger) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for settled := 0; settled < 5; {
		if time.Now().After(deadline) {
			t.Fatalf("the map did not settle: log %d entries", tl.store.Processed())
		}
		n := tl.store.Processed()
		waitMapCovers(t, tl, n)
		st, err := tl.vmap.m.MapState(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if st.Position == n && tl.store.Processed() == n {
			settled++
		} else {
			settled = 0
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRedteam14MigrationKeepsSelfRevocationRefusal: a bbolt ledger whose
// key revoked itself, migrated to pebble, refuses the key's new
// statements at once after the migration (403 KEY_REVOKED, from the
// migrated index: nothing is rebuilt first), and still answers a replay
// of its earlier statement with its receipt; the map root is the same.
func TestRedteam14MigrationKeepsSelfRevocationRefusal(t *testing.T) {
	dir := t.TempDir()
	tl, k, before, first, rev := rt14SelfRevokedLedger(t, dir)
	want, err := tl.vmap.m.MapState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	tl.close(t)
	rt14Migrate(t, dir)
	// Twice more: nothing to do, nothing changes.
	rt14Migrate(t, dir)
	tl.open(t)
	tl.submitRefused(t, k.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), k.keyID, rev)
	if r := tl.submit(t, before, http.StatusOK); r.Index != first {
		t.Fatalf("replay after the migration: index %d, want %d", r.Index, first)
	}
	got, err := tl.vmap.m.MapState(t.Context())
	if err != nil || got.Position != want.Position || got.Root == nil || got.Root.Index != want.Root.Index {
		t.Fatalf("map after the migration: %+v %v, want %+v", got, err, want)
	}
}

// TestRedteam14MigrationSymlinkedDir: a data directory reached through a
// symlink migrates in place (the stores land beside the bbolt files in
// the real directory) and the ledger opened through the link serves the
// migrated index.
func TestRedteam14MigrationSymlinkedDir(t *testing.T) {
	real := t.TempDir()
	tl, k, before, first, rev := rt14SelfRevokedLedger(t, real)
	tl.close(t)
	link := filepath.Join(t.TempDir(), "data")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	rt14Migrate(t, link)
	for _, name := range []string{posix.IndexDir, mapDirName, posix.IndexFile + posix.OldSuffix} {
		if _, err := os.Stat(filepath.Join(real, name)); err != nil {
			t.Fatalf("after migrating through a symlink: %v", err)
		}
	}
	tl2 := startLedgerIn(t, link, Config{MapCommitInterval: 30 * time.Millisecond})
	tl2.submitRefused(t, k.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), k.keyID, rev)
	if r := tl2.submit(t, before, http.StatusOK); r.Index != first {
		t.Fatalf("replay after the migration: index %d, want %d", r.Index, first)
	}
}

// TestRedteam14MigrationOntoEmptyStore: a migration that finds an empty
// index.pebble (a directory created by hand or by a tool, no store in
// it) beside index.db takes it for a finished copy and moves the bbolt
// index aside (observed: Done, 0 rows, no error: a weakness, the full
// rebuild it forces is slow on a large ledger); the ledger then starts on
// an empty index at position 0 and rebuilds it from the log. Checked here: right after the start, the self-revoked
// key's new statement is still refused and the replay of its earlier
// statement still gets its receipt (nothing is admitted or appended
// twice while the index is rebuilt).
func TestRedteam14MigrationOntoEmptyStore(t *testing.T) {
	dir := t.TempDir()
	tl, k, before, first, rev := rt14SelfRevokedLedger(t, dir)
	tl.close(t)
	if err := os.Mkdir(filepath.Join(dir, posix.IndexDir), 0o700); err != nil {
		t.Fatal(err)
	}
	res, err := posix.MigrateIndex(t.Context(), dir, testLogger(t))
	t.Logf("migration onto an empty index.pebble: %+v %v", res, err)
	if err != nil {
		return // refused: the defence held
	}
	tl.open(t)
	status, _, b := do(t, http.MethodPost, tl.url+api.PathEntries, mustMarshal(t, k.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())))
	if status != http.StatusForbidden {
		t.Fatalf("BYPASS: after a migration onto an empty store, the self-revoked key's new statement got %d: %s", status, b)
	}
	tl.submitRefused(t, k.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), k.keyID, rev)
	if r := tl.submit(t, before, http.StatusOK); r.Index != first {
		t.Fatalf("LOSS: replay after a migration onto an empty store: index %d, want %d", r.Index, first)
	}
}
