package ledger

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/storage/posix"
	"github.com/notarize/docker-notarize/notarize"
)

// envRT14Crash makes the test binary the child of
// TestRedteam14PebbleKilledMidIngest: a pebble ledger in the directory it
// names that submits statements and records each receipt until killed.
const envRT14Crash = "NOTARIZE_TEST_RT14_CRASH_DIR"

// TestRedteam14CrashChild is the child of TestRedteam14PebbleKilledMidIngest:
// it appends "index base64(body)" to DIR/receipts for every statement the
// ledger receipted (201), and keeps submitting until it is killed.
func TestRedteam14CrashChild(t *testing.T) {
	dir := os.Getenv(envRT14Crash)
	if dir == "" {
		t.Skip("the child process of TestRedteam14PebbleKilledMidIngest")
	}
	tl := startLedgerIn(t, filepath.Join(dir, "data"), Config{MapCommitInterval: 20 * time.Millisecond})
	f, err := os.OpenFile(filepath.Join(dir, "receipts"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	s := newTestSigner(t)
	shared := randomDigest(t)
	if err := os.WriteFile(filepath.Join(dir, "shared"), []byte(shared), 0o600); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	for i := 0; i < 5000; i++ {
		d := shared
		if i%3 == 0 {
			d = randomDigest(t)
		}
		body := mustMarshal(t, s.sign(t, d, notarize.StatusTrusted, t0.Add(time.Duration(i)*time.Second)))
		status, rec, err := post(t.Context(), http.DefaultClient, tl.url, body)
		if err != nil || status != http.StatusCreated {
			t.Fatalf("submission %d: %d %v", i, status, err)
		}
		if _, err := fmt.Fprintf(f, "%d %s\n", rec.Index, base64.StdEncoding.EncodeToString(body)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRedteam14PebbleKilledMidIngest: a pebble ledger killed (SIGKILL)
// in the middle of ingest, restarted on its directory, still knows every
// statement it receipted: each resubmission gets its receipt (200, the
// same index) instead of a second log entry, the shared digest's lookup
// lists every receipted entry, and the map catches up with the log with
// every committed root recomputing from the log (no fork).
func TestRedteam14PebbleKilledMidIngest(t *testing.T) {
	if os.Getenv(envRT14Crash) != "" {
		t.Skip("in the child")
	}
	t.Setenv(envTestEngine, posix.EnginePebble)
	for round := range 2 {
		t.Run(fmt.Sprint("kill", round), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run", "^TestRedteam14CrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), envRT14Crash+"="+dir)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			want := 40 + 25*round
			deadline := time.Now().Add(60 * time.Second)
			for {
				b, _ := os.ReadFile(filepath.Join(dir, "receipts"))
				if strings.Count(string(b), "\n") >= want {
					break
				}
				if time.Now().After(deadline) {
					_ = cmd.Process.Kill()
					_ = cmd.Wait()
					t.Fatalf("the child receipted %d statements in 60 s", strings.Count(string(b), "\n"))
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()

			f, err := os.Open(filepath.Join(dir, "receipts"))
			if err != nil {
				t.Fatal(err)
			}
			type receipted struct {
				index uint64
				body  []byte
			}
			var recs []receipted
			sc := bufio.NewScanner(f)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				var r receipted
				var b64 string
				if _, err := fmt.Sscanf(sc.Text(), "%d %s", &r.index, &b64); err != nil {
					continue // the line the kill cut short
				}
				if r.body, err = base64.StdEncoding.DecodeString(b64); err != nil {
					continue
				}
				recs = append(recs, r)
			}
			f.Close()

			tl := startLedgerIn(t, filepath.Join(dir, "data"), Config{MapCommitInterval: 20 * time.Millisecond})
			sb, err := os.ReadFile(filepath.Join(dir, "shared"))
			if err != nil {
				t.Fatal(err)
			}
			shared := notarize.Digest(sb)
			for i, r := range recs {
				status, rec, err := post(t.Context(), http.DefaultClient, tl.url, r.body)
				if err != nil || status != http.StatusOK || rec.Index != r.index {
					t.Fatalf("LOSS: resubmission %d after the kill: status %d index %d (%v), want 200 and its receipt at %d", i, status, rec.Index, err, r.index)
				}
			}
			got := tl.checkLookup(t, tl.lookup(t, shared))
			for i, r := range recs {
				if i%3 != 0 && !slices.Contains(got, r.index) {
					t.Fatalf("LOSS: the shared digest's lookup %v omits receipted entry %d", got, r.index)
				}
			}
			waitMapCovers(t, tl, tl.store.Processed())
			if roots := recomputeRoots(t, tl); roots == 0 {
				t.Fatal("no map root in the log")
			}
			t.Logf("%d receipted statements survived the kill", len(recs))
		})
	}
}

// TestRedteam14PebbleWALsLost: a pebble ledger's stores restored without
// their WAL files (*.log: what a backup that skips log files keeps) lose
// only their newest batches, position included, so the index and the map
// fall back to an older position and catch up from the log: every
// receipted statement still gets its receipt, the lookups are complete
// and every map root recomputes.
func TestRedteam14PebbleWALsLost(t *testing.T) {
	t.Setenv(envTestEngine, posix.EnginePebble)
	dir := t.TempDir()
	tl := startLedgerIn(t, dir, Config{MapCommitInterval: 30 * time.Millisecond})
	s := newTestSigner(t)
	d := randomDigest(t)
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	type sub struct {
		e     *notarize.Entry
		index uint64
	}
	var subs []sub
	submit := func(n int) {
		for range n {
			e := s.sign(t, d, notarize.StatusTrusted, t0.Add(time.Duration(len(subs))*time.Second))
			subs = append(subs, sub{e, tl.submit(t, e, http.StatusCreated).Index})
		}
		waitMapCovers(t, tl, tl.store.Processed())
	}
	submit(6)
	tl.restart(t)
	submit(6)
	tl.close(t)
	for _, store := range []string{posix.IndexDir, mapDirName} {
		logs, _ := filepath.Glob(filepath.Join(dir, store, "*.log"))
		if len(logs) == 0 {
			t.Fatalf("%s has no WAL: the test would lose nothing", store)
		}
		for _, l := range logs {
			if err := os.Remove(l); err != nil {
				t.Fatal(err)
			}
		}
	}
	tl.open(t)
	for i, sb := range subs {
		if status, rec, err := post(t.Context(), http.DefaultClient, tl.url, mustMarshal(t, sb.e)); err != nil || status != http.StatusOK || rec.Index != sb.index {
			t.Fatalf("LOSS: resubmission %d without the WALs: %d index %d (%v), want 200 at %d", i, status, rec.Index, err, sb.index)
		}
	}
	got := tl.checkLookup(t, tl.lookup(t, d))
	for _, sb := range subs {
		if !slices.Contains(got, sb.index) {
			t.Fatalf("LOSS: lookup %v omits %d", got, sb.index)
		}
	}
	tl.submit(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, t0), http.StatusCreated)
	waitMapCovers(t, tl, tl.store.Processed())
	time.Sleep(100 * time.Millisecond)
	recomputeRoots(t, tl)
}
