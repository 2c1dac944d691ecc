package ledger

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/tessera"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// Red team 5 (issue 11): the index follower trusts the rows Submit
// verified (ingest_verified.go), the map folds from the index's rows
// (fold_rows.go) and folds ahead (fold_ahead.go), receipts' proofs come
// from a subtree-hash cache (ingest_proof.go). The attacks: the same
// statement in many spellings at once (re-signed, the high-S twin and
// every other re-encoding appended as a foreign writer would, exact
// replays of the bytes a submission is verifying, a forged signature of
// the same length), through one instance or two sharing MySQL, while maps
// commit and fold ahead. The map must fold exactly what a fold from the
// log's bytes folds (else the proxy's auditor flags the ledger's root: a
// ledger DoS, or worse a statement that does not verify in the map), and
// every receipt, before and after a restart, must prove its entry.

// redteam5Round submits, through HTTP (the path that hands verified rows
// to the follower), a statement twice in two signatures at once, while
// its exact bytes, its re-encodings and a forged twin are appended
// straight to the log of another instance; then a later UNTRUSTED
// statement by the same key. It returns the receipts of the HTTP
// submissions with the bytes they carry.
func redteam5Round(t *testing.T, submitTo, appendTo *testLedger, at time.Time) (recs []api.Receipt, want [][]byte) {
	t.Helper()
	s := newTestSigner(t)
	d := randomDigest(t)
	genuine := s.signAt(t, d, notarize.StatusTrusted, at)
	resigned := s.signAt(t, d, notarize.StatusTrusted, at) // same statement, other signature bytes
	good, again := mustMarshal(t, genuine), mustMarshal(t, resigned)
	var raw [][]byte
	for _, re := range notarizetest.ReEncodings(t, genuine) {
		raw = append(raw, re.Body)
	}
	raw = append(raw, good, forgedSignature(t, genuine), good)

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	bodies := [][]byte{good, again, good}
	recs = make([]api.Receipt, len(bodies))
	errs := make([]error, len(bodies))
	for i, b := range bodies {
		wg.Go(func() {
			_, recs[i], errs[i] = post(ctx, http.DefaultClient, submitTo.url, b)
		})
	}
	futures := make([]tessera.IndexFuture, len(raw))
	for i, b := range raw {
		futures[i] = appendTo.add(ctx, tessera.NewEntry(b))
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("submission %d: %v", i, err)
		}
	}
	for i, f := range futures {
		if _, err := f(); err != nil {
			t.Fatalf("raw append %d: %v", i, err)
		}
	}
	for i := range recs {
		want = append(want, recs[i].Entry) // the entry as logged (a duplicate's may be the other signature)
		if string(recs[i].Entry) != string(good) && string(recs[i].Entry) != string(again) {
			t.Fatalf("submission %d: a receipt for other bytes: %s", i, recs[i].Entry)
		}
	}
	st, rec, err := post(ctx, http.DefaultClient, submitTo.url, mustMarshal(t, s.signAt(t, d, notarize.StatusUntrusted, at.Add(time.Second))))
	if err != nil || st != http.StatusCreated && st != http.StatusOK {
		t.Fatalf("the UNTRUSTED statement: %d %v", st, err)
	}
	return append(recs, rec), append(want, rec.Entry)
}

// redteam5Settle waits until every instance indexed the whole log and the
// map covers it with a root.
func redteam5Settle(t *testing.T, tls ...*testLedger) {
	t.Helper()
	var top uint64
	for _, tl := range tls {
		n, err := tl.reader.NextIndex(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		top = max(top, n)
	}
	for _, tl := range tls {
		if err := tl.store.WaitProcessed(t.Context(), top); err != nil {
			t.Fatal(err)
		}
	}
	waitMapCovers(t, tls[0], top)
	waitRootIndexed(t, tls[0])
}

// redteam5CheckReceipts checks every receipt's inclusion proof against its
// checkpoint.
func redteam5CheckReceipts(t *testing.T, tl *testLedger, recs []api.Receipt, want [][]byte) {
	t.Helper()
	for i, r := range recs {
		cp := openCheckpoint(t, tl.VerifierKey(), tl.Origin(), []byte(r.Checkpoint))
		if err := verifyInclusion(cp, r.Index, want[i], r.InclusionProof); err != nil {
			t.Fatalf("BYPASS: receipt %d (entry %d in %d): its proof does not verify: %v", i, r.Index, cp.Size, err)
		}
	}
}

// TestRedteam5FoldSpellingsPOSIX: one instance; rounds of redteam5Round
// while maps commit and fold ahead, then a restart (every cache gone:
// verified rows, the row tap, the fold ahead, the subtree hashes) and
// replays of every earlier statement (duplicate receipts proven from a
// cold cache), then more rounds. Every committed root recomputes from the
// log's bytes, every receipt verifies.
func TestRedteam5FoldSpellingsPOSIX(t *testing.T) {
	tl := startLedger(t, Config{MapCommitInterval: 20 * time.Millisecond})
	at := time.Now().Add(-time.Hour).UTC()
	var recs []api.Receipt
	var want [][]byte
	for round := range 4 {
		r, w := redteam5Round(t, tl, tl, at.Add(time.Duration(round)*time.Minute))
		recs, want = append(recs, r...), append(want, w...)
	}
	redteam5Settle(t, tl)
	redteam5CheckReceipts(t, tl, recs, want)
	if n := recomputeRoots(t, tl); n < 1 {
		t.Fatal("no map root to check")
	}

	tl.restart(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var replays []api.Receipt
	var replayed [][]byte
	for i := range want {
		_, rec, err := post(ctx, http.DefaultClient, tl.url, want[i])
		if err != nil {
			t.Fatalf("replay %d after the restart: %v", i, err)
		}
		// The raw appends race the submissions: the statement's first
		// entry (its identity's index) may be a raw one, before the
		// receipt's; it must be the same statement.
		if !rec.Duplicate || rec.Index > recs[i].Index || redteam5Identity(t, rec.Entry) != redteam5Identity(t, want[i]) {
			t.Fatalf("BYPASS: replay %d after the restart: duplicate %v at %d, want the statement of the entry at %d", i, rec.Duplicate, rec.Index, recs[i].Index)
		}
		replays, replayed = append(replays, rec), append(replayed, rec.Entry)
	}
	redteam5CheckReceipts(t, tl, replays, replayed)
	for round := range 2 {
		r, w := redteam5Round(t, tl, tl, at.Add(time.Duration(10+round)*time.Minute))
		recs, want = append(recs, r...), append(want, w...)
	}
	redteam5Settle(t, tl)
	redteam5CheckReceipts(t, tl, recs, want)
	if n := recomputeRoots(t, tl); n < 2 {
		t.Fatalf("%d map roots to check, want at least 2", n)
	}
}

// TestRedteam5MySQLFoldSpellingsTwoInstances: two instances sharing one
// MySQL database; each round submits to one and appends the re-encodings
// to the other, so each instance's follower sees entries whose rows the
// other verified, and both race to index and to fold. Every root
// recomputes, every receipt verifies.
func TestRedteam5MySQLFoldSpellingsTwoInstances(t *testing.T) {
	dsn := mysqlEnv.database(t)
	skey := noteKey(t, "redteam5.example/ledger")
	cfg := func() Config {
		c := mysqlConfig(t, skey)
		c.MapCommitInterval = 30 * time.Millisecond
		return c
	}
	a := startLedgerAt(t, mysqlAt(dsn), cfg())
	b := startLedgerAt(t, mysqlAt(dsn), cfg())
	at := time.Now().Add(-time.Hour).UTC()
	var recs []api.Receipt
	var want [][]byte
	for round := range 4 {
		from, to := a, b
		if round%2 == 1 {
			from, to = b, a
		}
		r, w := redteam5Round(t, from, to, at.Add(time.Duration(round)*time.Minute))
		recs, want = append(recs, r...), append(want, w...)
	}
	redteam5Settle(t, a, b)
	redteam5CheckReceipts(t, a, recs, want)
	if n := recomputeRoots(t, a); n < 1 {
		t.Fatal("no map root to check")
	}
	if n := recomputeRoots(t, b); n < 1 {
		t.Fatal("no map root to check on the second instance")
	}
}

// redteam5Identity is the statement identity of a logged entry.
func redteam5Identity(t *testing.T, data []byte) [32]byte {
	t.Helper()
	e, err := notarize.ParseEntry(data)
	if err != nil {
		t.Fatal(err)
	}
	v, err := e.VerifyLogged()
	if err != nil {
		t.Fatal(err)
	}
	return v.Identity()
}

// TestRedteam5MySQLFoldUnderLoad: two instances sharing MySQL, each
// folding ahead while its roots wait and between updates, under a few
// seconds of concurrent rounds (HTTP submissions to one instance, raw
// re-encodings to the other, both ways at once): every root either
// instance committed recomputes from the log's bytes, in log order.
func TestRedteam5MySQLFoldUnderLoad(t *testing.T) {
	dsn := mysqlEnv.database(t)
	skey := noteKey(t, "redteam5-load.example/ledger")
	cfg := func() Config {
		c := mysqlConfig(t, skey)
		c.MapCommitInterval = 10 * time.Millisecond
		c.MapCommitEntries = 16
		return c
	}
	a := startLedgerAt(t, mysqlAt(dsn), cfg())
	b := startLedgerAt(t, mysqlAt(dsn), cfg())
	at := time.Now().Add(-time.Hour).UTC()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for round := range 3 {
				from, to := a, b
				if (w+round)%2 == 1 {
					from, to = b, a
				}
				redteam5Round(t, from, to, at.Add(time.Duration(w*10+round)*time.Minute))
			}
		})
	}
	wg.Wait()
	redteam5Settle(t, a, b)
	if n := recomputeRoots(t, a); n < 2 {
		t.Fatalf("%d map roots to check, want at least 2", n)
	}
	if n := a.vmap.aheadUsed.Load() + b.vmap.aheadUsed.Load() + a.vmap.preFolds.Load() + b.vmap.preFolds.Load(); n == 0 {
		t.Log("no update continued a fold ahead under this load (the roots still recompute)")
	}
}
