package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/storage/posix"
	"github.com/notarize/docker-notarize/notarize"
)

// Red team 14 findings through a real ledger (they fail: build tag
// redteam14). Run: go test -tags redteam14 -run Redteam14 ./ledger/

// rt14DropMarker removes the MANIFEST marker of the pebble store at dir
// (a zero-byte file: what a backup that skips empty files loses).
func rt14DropMarker(t *testing.T, dir string) {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "marker.manifest.*"))
	if err != nil || len(m) != 1 {
		t.Fatalf("marker of %s: %v %v", dir, m, err)
	}
	if sst, _ := filepath.Glob(filepath.Join(dir, "*.sst")); len(sst) == 0 {
		t.Fatalf("%s has no sstable: nothing would be lost", dir)
	}
	if err := os.Remove(m[0]); err != nil {
		t.Fatal(err)
	}
}

// TestRedteam14PebbleMarkerDeletedLedger: LOSS. A pebble ledger (index
// and map) with statements A from a first run (flushed to sstables when
// the second run opened the stores) and B from a second run (in the WAL),
// restarted after the zero-byte MANIFEST marker of a store was removed,
// opens without an error, and:
//   - index.pebble: the index claims the whole log (its position is in
//     the WAL) but has lost A: A's resubmission is appended again (201, a
//     second log entry) instead of getting its receipt, and A's lookup
//     omits it;
//   - a key that revoked itself in the first run is no longer refused:
//     its new statement is logged (201, not 403 KEY_REVOKED);
//   - a verifying client's lookup by key (proven complete against the
//     intact map) refuses the answer: "not proven complete" (fail closed,
//     a DoS of that digest until the index is rebuilt by hand); its
//     lookup of every signer, not proven complete, accepts 0 of 5;
//   - vindex.pebble: see TestRedteam14PebbleMapMarkerDeletedForks.
//
// Fix (pebblefix, 8ff7fc2): an existing store is opened with
// pebble.Options.ErrorIfNotExists, so the damage is an error at start and
// the operator rebuilds (map-rebuild / delete the index); the test now
// asserts that the restart is refused (LOSS if it opens).
func TestRedteam14PebbleMarkerDeletedLedger(t *testing.T) {
	for _, store := range []string{posix.IndexDir} {
		t.Run(store, func(t *testing.T) {
			t.Setenv(envTestEngine, posix.EnginePebble)
			dir := t.TempDir()
			tl := startLedgerIn(t, dir, Config{MapCommitInterval: 30 * time.Millisecond})
			alice := newTestSigner(t)
			dA := randomDigest(t)
			t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
			for i := range 5 {
				tl.submit(t, alice.sign(t, dA, notarize.StatusTrusted, t0.Add(time.Duration(i)*time.Minute)), http.StatusCreated)
			}
			k := newTestSigner(t)
			tl.submit(t, k.revoke(t, k.keyID, "laptop stolen", t0), http.StatusCreated)
			waitMapCovers(t, tl, tl.store.Processed())
			tl.restart(t) // the second run's open flushes the first run's WAL to sstables
			for range 3 {
				tl.submit(t, alice.sign(t, randomDigest(t), notarize.StatusTrusted, t0), http.StatusCreated)
			}
			waitMapCovers(t, tl, tl.store.Processed())
			tl.close(t)
			rt14DropMarker(t, filepath.Join(dir, store))
			rt14OpenRefused(t, dir, tl.cfg)
		})
	}
}

// TestRedteam14PebbleMapMarkerDeletedForks: LOSS (a fork of the signed
// map). The map's store (vindex.pebble) with its MANIFEST marker removed,
// after a first run's nodes were flushed to sstables: the restarted
// ledger opens it without an error at the position of its WAL (58 of 59),
// with the first run's nodes gone, and folds the next statements onto
// that hollow tree (a missing node reads as an empty subtree): the map
// root it then commits and signs into the log is not the root of the map
// recomputed from the log (3 runs of 3). Clients check completeness
// proofs against those roots: a statement of the first run is then
// provably "absent", or every proof fails. Fix (pebblefix, 5d573d6):
// ErrorIfNotExists on an existing vindex.pebble (then map-rebuild); the
// test now asserts that the restart is refused (LOSS if it opens).
func TestRedteam14PebbleMapMarkerDeletedForks(t *testing.T) {
	t.Setenv(envTestEngine, posix.EnginePebble)
	dir := t.TempDir()
	tl := startLedgerIn(t, dir, Config{MapCommitInterval: 30 * time.Millisecond})
	alice, bob := newTestSigner(t), newTestSigner(t)
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	for range 32 {
		tl.submit(t, alice.sign(t, randomDigest(t), notarize.StatusTrusted, t0), http.StatusCreated)
	}
	waitMapCovers(t, tl, tl.store.Processed())
	tl.restart(t)
	for range 3 {
		tl.submit(t, bob.sign(t, randomDigest(t), notarize.StatusTrusted, t0), http.StatusCreated)
	}
	waitMapCovers(t, tl, tl.store.Processed())
	tl.close(t)
	rt14DropMarker(t, filepath.Join(dir, mapDirName))
	rt14OpenRefused(t, dir, tl.cfg)
}

// envRT14Corrupt makes the test binary the child of
// TestRedteam14PebbleCorruptBlockKillsLedger: a ledger on the damaged
// data directory it names, which looks up and submits until told to stop.
const envRT14Corrupt = "NOTARIZE_TEST_RT14_CORRUPT_DIR"

// TestRedteam14CorruptChild is the child of
// TestRedteam14PebbleCorruptBlockKillsLedger.
func TestRedteam14CorruptChild(t *testing.T) {
	dir := os.Getenv(envRT14Corrupt)
	if dir == "" {
		t.Skip("the child process of TestRedteam14PebbleCorruptBlockKillsLedger")
	}
	tl := startLedgerIn(t, dir, Config{MapCommitInterval: 30 * time.Millisecond})
	s := newTestSigner(t)
	digests, err := os.ReadFile(filepath.Join(dir, "digests"))
	if err != nil {
		t.Fatal(err)
	}
	statuses := map[int]int{}
	for _, d := range strings.Fields(string(digests)) {
		status, _, _ := do(t, http.MethodGet, tl.url+api.PathDigests+d, nil)
		statuses[status]++
		st, _, _ := post(t.Context(), http.DefaultClient, tl.url, mustMarshal(t, s.sign(t, notarize.Digest(d), notarize.StatusTrusted, time.Now())))
		statuses[st]++
	}
	time.Sleep(500 * time.Millisecond)
	fmt.Printf("child answered: %v\n", statuses)
	// Close waits (Tessera's shutdown) for the index to cover what was
	// logged, which a damaged index cannot: an error then, after at most
	// ctx, is a shutdown, not the crash this finding was about.
	tl.srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = tl.Ledger.Close(ctx)
	tl.Ledger = nil
	fmt.Printf("child closed the ledger: %v\n", err)
}

// TestRedteam14PebbleCorruptBlockKillsLedger: DoS. A pebble ledger whose
// index sstable has a damaged block (flipped bytes: a bad sector, a torn
// copy) does not answer the lookups that read that block with an error:
// the read reports DataCorruption, whose default handler calls the
// logger's Fatalf, which pebbleLogger makes a panic. The HTTP recovery
// turns each into a 500 ("panic: pebble: on-disk corruption", with a
// stack in the log), but the panic skipped the snapshot's and iterators'
// Close: the references leak (memory and files pinned), and the ledger's
// Close then panics ("element has outstanding references"): the process
// dies (exit 2) instead of shutting down. Observed: 30 of 50 lookups (88 of 150 in a larger run)
// answered 500 through a panic, then the exit. Fix as
// TestRedteam14PebbleCorruptBlockPanics: a DataCorruption listener that
// logs, so reads return pebble's corruption error (closing what they
// opened) and the ledger answers 503/500 without a panic.
func TestRedteam14PebbleCorruptBlockKillsLedger(t *testing.T) {
	if os.Getenv(envRT14Corrupt) != "" {
		t.Skip("in the child")
	}
	t.Setenv(envTestEngine, posix.EnginePebble)
	dir := t.TempDir()
	tl := startLedgerIn(t, dir, Config{MapCommitInterval: 30 * time.Millisecond})
	s := newTestSigner(t)
	var ds []string
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	for range 50 {
		d := randomDigest(t)
		ds = append(ds, string(d))
		tl.submit(t, s.sign(t, d, notarize.StatusTrusted, t0), http.StatusCreated)
	}
	waitMapCovers(t, tl, tl.store.Processed())
	tl.restart(t) // flushes the WAL into sstables
	tl.close(t)
	if err := os.WriteFile(filepath.Join(dir, "digests"), []byte(strings.Join(ds, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	ssts, _ := filepath.Glob(filepath.Join(dir, posix.IndexDir, "*.sst"))
	if len(ssts) == 0 {
		t.Fatal("no index sstable")
	}
	for _, p := range ssts {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for i := len(b) / 8; i < len(b)/2; i += 61 {
			b[i] ^= 0x5a
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run", "^TestRedteam14CorruptChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), envRT14Corrupt+"="+dir)
	out, err := cmd.CombinedOutput()
	t.Logf("child: %v; %d requests answered a panic; %s", err, strings.Count(string(out), "request failed"),
		grepLines(string(out), "child answered", "child closed", "\npanic: ", "goroutine ", "--- "))
	if bytes.Contains(out, []byte("\npanic: ")) || err != nil {
		t.Fatalf("DoS: the ledger on a pebble index with a damaged block died (%v) instead of answering errors", err)
	}
}

// grepLines returns the lines of s that contain any of subs, shortened.
func grepLines(s string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains("\n"+l, sub) && !strings.Contains(l, "request failed") {
				if len(l) > 200 {
					l = l[:200] + "…"
				}
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// rt14OpenRefused asserts that a ledger on dir (its storage, then the
// ledger with its map) refuses to open, as a store whose MANIFEST marker
// was lost must be: opened, it serves a partial index or folds onto a
// hollow map.
func rt14OpenRefused(t *testing.T, dir string, cfg Config) {
	t.Helper()
	st, err := posix.New(t.Context(), posix.Config{Dir: dir, Logger: cfg.Logger, NewEngine: testNewEngine()})
	if err != nil {
		if !errors.Is(err, posix.ErrPebbleDamaged) {
			t.Fatalf("open of the damaged index: %v, want ErrPebbleDamaged", err)
		}
		return
	}
	l, err := New(t.Context(), st, cfg) // closes st when it fails
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = l.Close(ctx)
		t.Fatal("LOSS: a ledger whose pebble store lost its MANIFEST marker opened (a partial index or a hollow map)")
	}
	if !errors.Is(err, ErrMapDamaged) {
		t.Fatalf("open of the damaged map: %v, want ErrMapDamaged", err)
	}
}
