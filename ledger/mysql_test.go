package ledger

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/internal/testutil"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/storage"
	mysqlstorage "github.com/notarize/docker-notarize/ledger/storage/mysql"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"

	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
)

// Tests of the ledger on MySQL storage, against a real MariaDB server (see
// mysql_env_test.go). Every test has a database of its own.

// mysqlConfig is the configuration of a ledger on MySQL storage
// (mysqlAt) signing with skey.
func mysqlConfig(t testing.TB, skey string) Config {
	return Config{NoteSignerKey: skey, Logger: testLogger(t)}
}

func noteKey(t testing.TB, origin string) string {
	t.Helper()
	skey, _, err := NewSignerKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	return skey
}

func openSQL(t testing.TB, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// newLedgerClient returns a verifying client of the ledger at url that pins vkey.
func newLedgerClient(t testing.TB, url, vkey, home string) *ledgerclient.Client {
	t.Helper()
	c, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: url, VerifierKey: vkey, Home: home, Timeout: 45 * time.Second})
	if err != nil {
		t.Fatalf("ledgerclient: %v", err)
	}
	return c
}

func TestMySQLRoundTripAndRestart(t *testing.T) {
	dsn := mysqlEnv.database(t)
	tl := startLedgerAt(t, mysqlAt(dsn), mysqlConfig(t, noteKey(t, "mysql.example/ledger")))
	s := newTestSigner(t)
	d := randomDigest(t)
	now := time.Now()
	trusted := s.sign(t, d, notarize.StatusTrusted, now.Add(-time.Minute))
	untrusted := s.sign(t, d, notarize.StatusUntrusted, now)
	start := time.Now()
	r1 := tl.submit(t, trusted, http.StatusCreated)
	t.Logf("time to receipt: %v", time.Since(start))
	tl.checkReceipt(t, r1, mustMarshal(t, trusted))
	r2 := tl.submit(t, untrusted, http.StatusCreated)
	tl.checkReceipt(t, r2, mustMarshal(t, untrusted))
	if dup := tl.submit(t, trusted, http.StatusOK); !dup.Duplicate || dup.Index != r1.Index {
		t.Fatalf("resubmission: index %d duplicate %v, want duplicate of %d", dup.Index, dup.Duplicate, r1.Index)
	}
	if got, want := tl.checkLookup(t, tl.lookup(t, d)), []uint64{r1.Index, r2.Index}; !slices.Equal(got, want) {
		t.Fatalf("lookup %v, want %v", got, want)
	}

	tl.restart(t)
	if got, want := tl.checkLookup(t, tl.lookup(t, d)), []uint64{r1.Index, r2.Index}; !slices.Equal(got, want) {
		t.Fatalf("lookup after restart %v, want %v", got, want)
	}
	if dup := tl.submit(t, untrusted, http.StatusOK); !dup.Duplicate || dup.Index != r2.Index {
		t.Fatalf("resubmission after restart: index %d duplicate %v, want duplicate of %d", dup.Index, dup.Duplicate, r2.Index)
	}
	third := s.sign(t, randomDigest(t), notarize.StatusTrusted, now)
	if r3 := tl.submit(t, third, http.StatusCreated); r3.Index != 2 {
		t.Fatalf("third entry at index %d, want 2", r3.Index)
	}
	db := openSQL(t, dsn)
	var version, next int
	if err := db.QueryRowContext(t.Context(), "SELECT `version` FROM `notarize_schema` WHERE `id` = 0").Scan(&version); err != nil || version != mysqlstorage.SchemaVersion {
		t.Errorf("schema version %d (%v), want %d", version, err, mysqlstorage.SchemaVersion)
	}
	if err := db.QueryRowContext(t.Context(), "SELECT `next` FROM `notarize_follow` WHERE `id` = 3").Scan(&next); err != nil || next != 3 {
		t.Errorf("index position %d (%v), want 3", next, err)
	}
}

func TestMySQLIdentity(t *testing.T) {
	const origin = "mysql.example/identity"
	skey := noteKey(t, origin)
	openLedger := func(t *testing.T, dsn string, cfg Config) (*Ledger, error) {
		st, err := mysqlstorage.New(t.Context(), mysqlstorage.Config{DSN: dsn, Logger: testLogger(t)})
		if err != nil {
			return nil, err
		}
		l, err := New(t.Context(), st, cfg)
		if err == nil {
			t.Cleanup(func() {
				if err := l.Close(context.Background()); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
		}
		return l, err
	}
	t.Run("mismatches", func(t *testing.T) {
		dsn := mysqlEnv.database(t)
		tl := startLedgerAt(t, mysqlAt(dsn), mysqlConfig(t, skey))
		tl.submit(t, newTestSigner(t).sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
		for name, cfg := range map[string]Config{
			"other key, same origin": mysqlConfig(t, noteKey(t, origin)),
			"other origin":           mysqlConfig(t, noteKey(t, "mysql.example/other")),
			"configured origin":      func() Config { c := mysqlConfig(t, skey); c.Origin = "mysql.example/other"; return c }(),
		} {
			t.Run(name, func(t *testing.T) {
				if _, err := openLedger(t, dsn, cfg); !errors.Is(err, ErrIdentityMismatch) {
					t.Fatalf("New: %v, want ErrIdentityMismatch", err)
				}
			})
		}
		if _, err := openLedger(t, dsn, mysqlConfig(t, "")); !errors.Is(err, mysqlstorage.ErrNoSignerKey) {
			t.Fatalf("New without a key: %v, want ErrNoSignerKey", err)
		}
		// A second instance with the right identity joins.
		other := startLedgerAt(t, mysqlAt(dsn), mysqlConfig(t, skey))
		if other.VerifierKey() != tl.VerifierKey() || other.Origin() != origin {
			t.Fatalf("second instance has another identity")
		}
	})
	t.Run("instances starting together", func(t *testing.T) {
		dsn := mysqlEnv.database(t)
		const n = 4
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { _, errs[i] = openLedger(t, dsn, mysqlConfig(t, skey)) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("concurrent starts: %v", err)
		}
	})
	t.Run("instances with different keys starting together", func(t *testing.T) {
		dsn := mysqlEnv.database(t)
		keys := []string{skey, noteKey(t, origin), noteKey(t, "mysql.example/third")}
		var wg sync.WaitGroup
		errs := make([]error, len(keys))
		for i, k := range keys {
			wg.Go(func() { _, errs[i] = openLedger(t, dsn, mysqlConfig(t, k)) })
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, ErrIdentityMismatch):
				t.Errorf("New: %v, want nil or ErrIdentityMismatch", err)
			}
		}
		if won != 1 {
			t.Fatalf("%d of %d instances with different keys started, want exactly 1: %v", won, len(keys), errs)
		}
	})
	t.Run("schema from the future", func(t *testing.T) {
		dsn := mysqlEnv.database(t)
		l, err := openLedger(t, dsn, mysqlConfig(t, skey))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := openSQL(t, dsn).ExecContext(t.Context(), "UPDATE `notarize_schema` SET `version` = 99"); err != nil {
			t.Fatal(err)
		}
		if _, err := openLedger(t, dsn, mysqlConfig(t, skey)); !errors.Is(err, mysqlstorage.ErrSchemaTooNew) {
			t.Fatalf("New on a newer schema: %v, want ErrSchemaTooNew", err)
		}
	})
	t.Run("unreachable database", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		start := time.Now()
		_, err = openLedger(t, "u:p@tcp("+addr+")/db?timeout=2s", mysqlConfig(t, skey))
		if !errors.Is(err, ErrUnavailable) || strings.Contains(err.Error(), "u:p@") {
			t.Fatalf("New on a closed port: %v, want ErrUnavailable without the password", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("New took %v to fail", d)
		}
	})
}

// TestMySQLSameAsPOSIX appends the same entries in the same order to a
// POSIX ledger and a MySQL ledger with the same key and origin: the
// checkpoints, every tile and entry bundle, and what a verifying client
// gets are byte for byte the same.
func TestMySQLSameAsPOSIX(t *testing.T) {
	t.Parallel()
	skey := noteKey(t, "same.example/ledger")
	px := startLedger(t, Config{NoteSignerKey: skey})
	my := startLedgerAt(t, mysqlAt(mysqlEnv.database(t)), mysqlConfig(t, skey))
	s := newTestSigner(t)
	now := time.Now()
	d := randomDigest(t)

	// A few through the API, one at a time.
	api := []*notarize.Entry{
		s.sign(t, d, notarize.StatusTrusted, now.Add(-time.Minute)),
		s.sign(t, randomDigest(t), notarize.StatusTrusted, now),
		s.sign(t, d, notarize.StatusUntrusted, now),
	}
	for i, e := range api {
		rp, rm := px.submit(t, e, http.StatusCreated), my.submit(t, e, http.StatusCreated)
		if rp.Index != uint64(i) || rm.Index != uint64(i) {
			t.Fatalf("entry %d: POSIX index %d, MySQL index %d", i, rp.Index, rm.Index)
		}
		my.checkReceipt(t, rm, mustMarshal(t, e))
	}
	// Many more, appended in order, to fill whole tiles.
	const bulk = 600
	var futures [2][]tessera.IndexFuture
	for range bulk {
		data := mustMarshal(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, now))
		for j, tl := range []*testLedger{px, my} {
			futures[j] = append(futures[j], tl.add(t.Context(), tessera.NewEntry(data)))
		}
	}
	for j := range futures {
		for i, f := range futures[j] {
			if idx, err := f(); err != nil || idx.Index != uint64(len(api)+i) {
				t.Fatalf("ledger %d entry %d: index %d, %v", j, i, idx.Index, err)
			}
		}
	}
	size := uint64(len(api) + bulk)

	// Both eventually publish the same checkpoint: Ed25519 signatures are
	// deterministic, so the notes are identical.
	var cps [2][]byte
	for j, tl := range []*testLedger{px, my} {
		deadline := time.Now().Add(15 * time.Second)
		for {
			status, b, err := get(t.Context(), tl.url+"/checkpoint")
			if err != nil || status != http.StatusOK {
				t.Fatalf("checkpoint: %d %v", status, err)
			}
			if cp := openCheckpoint(t, tl.VerifierKey(), tl.Origin(), b); cp.Size == size {
				cps[j] = b
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("ledger %d: no checkpoint of size %d", j, size)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !bytes.Equal(cps[0], cps[1]) {
		t.Fatalf("checkpoints differ:\nPOSIX %s\nMySQL %s", cps[0], cps[1])
	}
	t.Logf("same checkpoint at size %d:\n%s", size, cps[0])

	// Every tile and entry bundle of the tree.
	var paths []string
	for level, n := uint64(0), size; n > 0; level, n = level+1, n/layout.TileWidth {
		for i := uint64(0); i <= (n-1)/layout.TileWidth; i++ {
			paths = append(paths, layout.TilePath(level, i, layout.PartialTileSize(level, i, size)))
		}
		if n < layout.TileWidth {
			break
		}
	}
	for i := uint64(0); i <= (size-1)/layout.EntryBundleWidth; i++ {
		paths = append(paths, layout.EntriesPath(i, layout.PartialTileSize(0, i, size)))
	}
	for _, p := range paths {
		bp, hp, err := httpFetch(t.Context(), px.url+"/"+p)
		if err != nil {
			t.Fatal(err)
		}
		bm, hm, err := httpFetch(t.Context(), my.url+"/"+p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(bp, bm) {
			t.Errorf("%s differs: POSIX %d bytes, MySQL %d bytes", p, len(bp), len(bm))
		}
		if hp.Get("Cache-Control") != hm.Get("Cache-Control") {
			t.Errorf("%s: Cache-Control %q vs %q", p, hp.Get("Cache-Control"), hm.Get("Cache-Control"))
		}
	}
	t.Logf("compared %d tiles and bundles: %v", len(paths), paths)

	// Verifying clients get the same answers.
	var results [2]*ledgerclient.LookupResult
	for j, tl := range []*testLedger{px, my} {
		c := newLedgerClient(t, tl.url, tl.VerifierKey(), t.TempDir())
		r, err := c.Lookup(t.Context(), d)
		if err != nil {
			t.Fatalf("ledger %d: lookup: %v", j, err)
		}
		results[j] = r
	}
	if !bytes.Equal(results[0].Checkpoint.Raw, results[1].Checkpoint.Raw) {
		t.Errorf("lookup checkpoints differ")
	}
	if a, b := mustJSON(t, results[0].Records), mustJSON(t, results[1].Records); a != b || len(results[0].Records) != 2 {
		t.Errorf("lookup records differ or are not 2:\nPOSIX %s\nMySQL %s", a, b)
	}
}

// TestMySQLTwoInstances runs two ledger instances on one database, both
// taking writes and reads at once, through verifying clients.
func TestMySQLTwoInstances(t *testing.T) {
	const workers, rounds = 24, 3
	dsn := mysqlEnv.database(t)
	skey := noteKey(t, "mysql.example/two")
	a := startLedgerAt(t, mysqlAt(dsn), mysqlConfig(t, skey))
	b := startLedgerAt(t, mysqlAt(dsn), mysqlConfig(t, skey))
	ledgers := []*testLedger{a, b}
	clients := []*ledgerclient.Client{
		newLedgerClient(t, a.url, a.VerifierKey(), t.TempDir()),
		newLedgerClient(t, b.url, b.VerifierKey(), t.TempDir()),
	}
	s := newTestSigner(t)
	type acked struct {
		d   notarize.Digest
		idx uint64
	}
	var mu sync.Mutex
	var all []acked
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				i := (w + r) % 2
				d := randomDigest(t)
				e := s.sign(t, d, notarize.StatusTrusted, time.Now())
				res, err := clients[i].Submit(t.Context(), e)
				if err != nil || res.Duplicate {
					t.Errorf("submit to instance %d: %+v, %v", i, res, err)
					return
				}
				// Acknowledged by one instance: a duplicate for the other.
				dup, err := clients[1-i].Submit(t.Context(), e)
				if err != nil || !dup.Duplicate || dup.Index != res.Index {
					t.Errorf("resubmit to instance %d: %+v, %v; want duplicate of %d", 1-i, dup, err, res.Index)
					return
				}
				mu.Lock()
				all = append(all, acked{d, res.Index})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	t.Logf("%d entries through two instances with %d clients in %v", len(all), workers, time.Since(start))
	if t.Failed() {
		return
	}
	seen := map[uint64]bool{}
	for _, x := range all {
		if seen[x.idx] {
			t.Fatalf("index %d assigned twice", x.idx)
		}
		seen[x.idx] = true
	}
	// Lookups through either instance agree.
	for _, x := range all {
		var got [2][]uint64
		for i, c := range clients {
			r, err := c.Lookup(t.Context(), x.d)
			if err != nil {
				t.Fatalf("lookup through instance %d: %v", i, err)
			}
			for _, rec := range r.Records {
				got[i] = append(got[i], rec.Index)
			}
		}
		if !slices.Equal(got[0], []uint64{x.idx}) || !slices.Equal(got[1], got[0]) {
			t.Fatalf("lookup %s: instance a %v, b %v, want [%d]", x.d, got[0], got[1], x.idx)
		}
	}
	for i, tl := range ledgers {
		info, err := tl.Info(t.Context())
		if err != nil || info.Size != uint64(len(all)) {
			t.Errorf("instance %d: size %v (%v), want %d", i, info, err, len(all))
		}
	}
}

// ledgerProcess is notarize-ledger running as a child process.
type ledgerProcess struct {
	cmd    *exec.Cmd
	url    string
	stderr *testutil.SyncBuffer
	done   chan struct{}
}

// startLedgerProcess runs the built binary with args and waits until it serves.
func startLedgerProcess(t *testing.T, env []string, args ...string) *ledgerProcess {
	t.Helper()
	cmd := exec.Command(mysqlEnv.binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &ledgerProcess{cmd: cmd, stderr: &testutil.SyncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		_ = cmd.Wait()
	}()
	t.Cleanup(func() { p.kill(t) })
	urls := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`serving (http://\S+)`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case p.url = <-urls:
	case <-p.done:
		t.Fatalf("notarize-ledger exited: %v\n%s", cmd.ProcessState, p.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("notarize-ledger did not start:\n%s", p.stderr)
	}
	return p
}

// kill sends SIGKILL and waits for the process to go.
func (p *ledgerProcess) kill(t testing.TB) {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// TestMySQLKill9 kills a ledger process with SIGKILL while clients write
// to it, and starts it again: every acknowledged entry is there, at its
// index, and a client that verified checkpoints before sees a consistent log.
func TestMySQLKill9(t *testing.T) {
	t.Parallel()
	dsn := mysqlEnv.database(t)
	keyFile := filepath.Join(t.TempDir(), "ledger.key")
	if err := os.WriteFile(keyFile, []byte(noteKey(t, "mysql.example/kill9")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	env := []string{"NOTARIZE_LEDGER_MYSQL_DSN=" + dsn}
	args := []string{"--storage", "mysql", "--addr", addr, "--key-file", keyFile, "--log-level", "error"}
	p := startLedgerProcess(t, env, args...)

	home := t.TempDir()
	c := newLedgerClient(t, p.url, "", home) // trust on first use, then pinned in home
	s := newTestSigner(t)
	if _, err := c.Submit(t.Context(), s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())); err != nil {
		t.Fatal(err)
	}
	before, err := c.Latest(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	type acked struct {
		e   *notarize.Entry
		d   notarize.Digest
		idx uint64
	}
	var mu sync.Mutex
	var all []acked
	var failed atomic.Int64
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for ctx.Err() == nil {
				d := randomDigest(t)
				e := s.sign(t, d, notarize.StatusTrusted, time.Now())
				res, err := c.Submit(ctx, e)
				if err != nil {
					failed.Add(1)
					time.Sleep(50 * time.Millisecond)
					continue
				}
				mu.Lock()
				all = append(all, acked{e, d, res.Index})
				mu.Unlock()
			}
		})
	}
	// Kill mid-write: after some receipts, while 32 more are in flight.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		n := len(all)
		mu.Unlock()
		if n >= 64 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d receipts in 20 s:\n%s", n, p.stderr)
		}
	}
	p.kill(t)
	killedAt := time.Now()
	time.Sleep(300 * time.Millisecond) // let every in-flight request fail
	cancel()
	wg.Wait()
	t.Logf("killed with SIGKILL after %d receipts; %d submissions failed", len(all), failed.Load())

	p2 := startLedgerProcess(t, env, args...)
	t.Logf("restarted in %v", time.Since(killedAt).Round(time.Millisecond))
	after, err := c.Latest(t.Context()) // verifies consistency with the checkpoint stored before the kill
	if err != nil {
		t.Fatalf("checkpoint after restart: %v", err)
	}
	if after.Size < before.Size {
		t.Fatalf("log shrank from %d to %d", before.Size, after.Size)
	}
	var maxIdx uint64
	for _, x := range all {
		maxIdx = max(maxIdx, x.idx)
		r, err := c.Lookup(t.Context(), x.d)
		if err != nil {
			t.Fatalf("lookup %s: %v", x.d, err)
		}
		if len(r.Records) != 1 || r.Records[0].Index != x.idx {
			t.Fatalf("acknowledged entry %d lost or moved: %+v", x.idx, r.Records)
		}
	}
	if after.Size <= maxIdx {
		t.Fatalf("checkpoint size %d does not cover acknowledged index %d", after.Size, maxIdx)
	}
	// Resubmitting is a duplicate at the same index; new writes work.
	for _, x := range all[:8] {
		res, err := c.Submit(t.Context(), x.e)
		if err != nil || !res.Duplicate || res.Index != x.idx {
			t.Fatalf("resubmit after restart: %+v, %v; want duplicate of %d", res, err, x.idx)
		}
	}
	if _, err := c.Submit(t.Context(), s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())); err != nil {
		t.Fatalf("submit after restart: %v\n%s", err, p2.stderr)
	}
}

// TestMySQLDatabaseRestart restarts MariaDB while clients write: they get
// 503 UNAVAILABLE JSON errors within a bound (never a 500, a hang or a
// panic), then the same ledger recovers on its own.
func TestMySQLDatabaseRestart(t *testing.T) {
	srv := mysqlEnv.server(t)
	if !srv.Owned() {
		t.Skip("the MariaDB server named by $" + "NOTARIZE_MYSQL_DSN is not ours to restart")
	}
	dsn := srv.Database(t)
	tl := startLedgerAt(t, mysqlAt(dsn), mysqlConfig(t, noteKey(t, "mysql.example/dbrestart")))
	c := newLedgerClient(t, tl.url, tl.VerifierKey(), t.TempDir())
	s := newTestSigner(t)
	if _, err := c.Submit(t.Context(), s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Latest(t.Context()); err != nil {
		t.Fatal(err)
	}

	const bound = 35 * time.Second // receiptTimeout and then some
	type outcome struct {
		status int
		code   string
		took   time.Duration
		at     time.Time
	}
	var mu sync.Mutex
	var outcomes []outcome
	var acked []notarize.Digest
	var downAt, upAt atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	hc := &http.Client{Timeout: bound}
	// submit sends one submission and records its outcome; it reports
	// false when there was no answer at all.
	submit := func() (ok bool, failed bool) {
		d := randomDigest(t)
		body := mustMarshal(t, s.sign(t, d, notarize.StatusTrusted, time.Now()))
		t0 := time.Now()
		status, _, err := post(t.Context(), hc, tl.url, body)
		o := outcome{status: status, took: time.Since(t0), at: t0}
		if err != nil && status == 0 {
			t.Errorf("submit: no answer after %v: %v", o.took, err)
			return false, true
		}
		if err != nil {
			var er api.ErrorResponse
			msg := err.Error()
			if i := strings.Index(msg, "{"); i >= 0 && json.Unmarshal([]byte(msg[i:]), &er) == nil {
				o.code = er.Code
			}
		} else {
			mu.Lock()
			acked = append(acked, d)
			mu.Unlock()
		}
		mu.Lock()
		outcomes = append(outcomes, o)
		mu.Unlock()
		return true, err != nil
	}
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ok, failed := submit()
				if !ok {
					return
				}
				if failed {
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	downAt.Store(time.Now().UnixNano())
	if err := srv.Down(t.Context()); err != nil {
		t.Fatal(err)
	}
	// A submission sent while the database is down. The workers' own can
	// all be in flight for the whole outage, waiting for the checkpoint
	// that covers them, and then none starts during it (ci100: 88 answers,
	// all 201): this one does.
	wg.Go(func() {
		time.Sleep(200 * time.Millisecond)
		submit()
	})
	time.Sleep(2 * time.Second)
	if err := srv.Up(t.Context()); err != nil {
		t.Fatal(err)
	}
	upAt.Store(time.Now().UnixNano())
	t.Logf("MariaDB down for %v", time.Duration(upAt.Load()-downAt.Load()).Round(time.Millisecond))

	// Recovery: within a bound, every worker gets receipts again.
	recovered := time.Time{}
	for deadline := time.Now().Add(bound); recovered.IsZero() && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		mu.Lock()
		ok := 0
		for _, o := range outcomes {
			if o.at.UnixNano() > upAt.Load() && o.status == http.StatusCreated {
				ok++
			}
		}
		mu.Unlock()
		if ok >= 16 {
			recovered = time.Now()
		}
	}
	close(stop)
	wg.Wait()
	if recovered.IsZero() {
		t.Fatalf("no recovery within %v of the database's restart", bound)
	}
	t.Logf("recovered %v after the database came back", recovered.Sub(time.Unix(0, upAt.Load())).Round(time.Millisecond))
	counts := map[string]int{}
	var longest time.Duration
	for _, o := range outcomes {
		counts[fmt.Sprintf("%d %s", o.status, o.code)]++
		longest = max(longest, o.took)
		switch {
		case o.status == http.StatusCreated:
		case o.status == http.StatusServiceUnavailable && o.code == api.CodeUnavailable:
		default:
			t.Errorf("answer %d %q after %v, want 201 or 503 %s", o.status, o.code, o.took, api.CodeUnavailable)
		}
	}
	t.Logf("answers: %v; longest %v", counts, longest.Round(time.Millisecond))
	if counts["503 "+api.CodeUnavailable] == 0 {
		t.Errorf("no 503 while the database was down")
	}
	if longest > bound {
		t.Errorf("a submission took %v", longest)
	}
	// Nothing acknowledged is lost; the client's view stays consistent.
	if _, err := c.Latest(t.Context()); err != nil {
		t.Fatalf("checkpoint after the restart: %v", err)
	}
	for _, d := range acked {
		r, err := c.Lookup(t.Context(), d)
		if err != nil || len(r.Records) != 1 {
			t.Fatalf("lookup %s after the restart: %v, %v", d, r, err)
		}
	}
}

// TestMySQLEnrolledSigners checks that the enrolled signers live in the
// database: every instance enforces the set the last --signers stored.
func TestMySQLEnrolledSigners(t *testing.T) {
	t.Parallel()
	dsn := mysqlEnv.database(t)
	skey := noteKey(t, "mysql.example/signers")
	s1, s2 := newTestSigner(t), newTestSigner(t)
	withSigners := func(keys ...crypto.PublicKey) Config {
		c := mysqlConfig(t, skey)
		c.Signers = keys
		return c
	}
	a := startLedgerAt(t, mysqlAt(dsn), withSigners(s1.pub))
	b := startLedgerAt(t, mysqlAt(dsn), withSigners()) // no --signers: the database's set
	for _, tl := range []*testLedger{a, b} {
		if tl.OpenWrites() {
			t.Fatal("instance has open writes, want the enrolled set")
		}
	}
	b.submit(t, s1.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
	status, _, body := do(t, http.MethodPost, b.url+api.PathEntries, mustMarshal(t, s2.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())))
	if er := decodeError(t, body); status != http.StatusForbidden || er.Code != api.CodeNotEnrolled {
		t.Fatalf("unenrolled signer: %d %s", status, body)
	}
	// A third instance enrolls s2 only; the running ones follow.
	startLedgerAt(t, mysqlAt(dsn), withSigners(s2.pub))
	deadline := time.Now().Add(2*storage.SignersRefresh + time.Second)
	for _, tl := range []*testLedger{a, b} {
		for {
			set := tl.enrolled.Load()
			if set != nil && (*set)[s2.keyID] && !(*set)[s1.keyID] {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("instance still enforces %v", set)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	a.submit(t, s2.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
}
