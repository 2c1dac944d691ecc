package ledger

import (
	"crypto/rand"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/witnesstest"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"
)

// witnessedConfig returns a config with a fresh note key for origin, so
// that witnesses can be told the ledger's key before its first checkpoint
// (which must already be witnessed), and the verifier key.
func witnessedConfig(t testing.TB, origin string) (Config, string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		Origin:             origin,
		NoteSignerKey:      skey,
		CheckpointInterval: 200 * time.Millisecond,
		WitnessTimeout:     2 * time.Second,
		ReceiptTimeout:     3 * time.Second,
	}, vkey
}

// checkCosigned fails unless raw carries a valid cosignature of each of
// want, and of none of the other witnesses of all.
func checkCosigned(t testing.TB, raw []byte, all []*witnesstest.Witness, want ...string) time.Time {
	t.Helper()
	got, newest, err := witnesstest.Cosigners(raw, all...)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Fatalf("checkpoint lacks %s's cosignature (cosigned by %v):\n%s", w, got, raw)
		}
	}
	return newest
}

// publishedCheckpoint returns the ledger's /checkpoint.
func (tl *testLedger) publishedCheckpoint(t testing.TB) []byte {
	t.Helper()
	status, _, b := do(t, http.MethodGet, tl.url+"/"+layout.CheckpointPath, nil)
	if status != http.StatusOK {
		t.Fatalf("GET checkpoint: status %d: %s", status, b)
	}
	return b
}

// TestWitnessQuorum runs a ledger with a 2-of-3 witness policy against
// three real omniwitness processes: receipts and /checkpoint carry at
// least two valid cosignatures; with one witness down the quorum is still
// met; with two down a submission is answered 503 with Retry-After within
// the receipt timeout, not left hanging; once one witness is back
// (restarted on its database) the statement is published and found, so
// nothing acknowledged is lost; and checkpoints are re-witnessed without
// new entries (freshness).
func TestWitnessQuorum(t *testing.T) {
	cfg, vkey := witnessedConfig(t, "example.com/witnessed-ledger")
	ws := witnesstest.StartN(t, 3, cfg.Origin, vkey)
	cfg.WitnessPolicy = witnesstest.Policy(2, ws...)
	cfg.CheckpointRepublishInterval = time.Second
	tl := startLedger(t, cfg)
	if !tl.Witnessed() {
		t.Fatal("Witnessed() is false with a 2-of-3 policy")
	}
	s := newTestSigner(t)

	t.Run("quorum met", func(t *testing.T) {
		e := s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())
		rec := tl.submit(t, e, http.StatusCreated)
		tl.checkReceipt(t, rec, mustMarshal(t, e))
		got, _, err := witnesstest.Cosigners([]byte(rec.Checkpoint), ws...)
		if err != nil || len(got) < 2 {
			t.Fatalf("receipt checkpoint cosigned by %v (%v), want at least 2 of 3:\n%s", got, err, rec.Checkpoint)
		}
		got, _, err = witnesstest.Cosigners(tl.publishedCheckpoint(t), ws...)
		if err != nil || len(got) < 2 {
			t.Fatalf("/checkpoint cosigned by %v (%v), want at least 2 of 3", got, err)
		}
	})

	t.Run("republished and re-witnessed without new entries", func(t *testing.T) {
		_, first, _ := witnesstest.Cosigners(tl.publishedCheckpoint(t), ws...)
		deadline := time.Now().Add(15 * time.Second)
		for {
			raw := tl.publishedCheckpoint(t)
			_, newest, err := witnesstest.Cosigners(raw, ws...)
			if err != nil {
				t.Fatal(err)
			}
			if newest.After(first) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the newest cosignature is still from %v: the checkpoint is not re-witnessed", first)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("one witness down", func(t *testing.T) {
		ws[2].Stop(t)
		e := s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())
		rec := tl.submit(t, e, http.StatusCreated)
		tl.checkReceipt(t, rec, mustMarshal(t, e))
		checkCosigned(t, []byte(rec.Checkpoint), ws, ws[0].Name, ws[1].Name)
	})

	t.Run("two witnesses down, then one back", func(t *testing.T) {
		ws[1].Stop(t)
		d := randomDigest(t)
		e := s.sign(t, d, notarize.StatusTrusted, time.Now())
		body := mustMarshal(t, e)
		start := time.Now()
		status, h, b := do(t, http.MethodPost, tl.url+api.PathEntries, body)
		took := time.Since(start)
		if status != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
			t.Fatalf("submit without a quorum: status %d, Retry-After %q, want 503 with Retry-After: %s", status, h.Get("Retry-After"), b)
		}
		if er := decodeError(t, b); er.Code != api.CodeUnavailable {
			t.Fatalf("code %q, want %q", er.Code, api.CodeUnavailable)
		}
		if bound := cfg.ReceiptTimeout + 10*time.Second; took > bound {
			t.Fatalf("the 503 took %v, beyond the receipt timeout (%v) and slack", took, cfg.ReceiptTimeout)
		}
		if got := tl.lookup(t, d); len(got.Entries) != 0 {
			t.Fatalf("an entry not yet witnessed is served: %+v", got.Entries)
		}
		ws[1].Start(t) // a restart on the same key and database
		rec := tl.submit(t, e, http.StatusOK)
		if !rec.Duplicate {
			t.Fatal("the statement sequenced while the quorum was down was appended again")
		}
		tl.checkReceipt(t, rec, body)
		checkCosigned(t, []byte(rec.Checkpoint), ws, ws[0].Name, ws[1].Name)
		if idx := tl.checkLookup(t, tl.lookup(t, d)); !slices.Equal(idx, []uint64{rec.Index}) {
			t.Fatalf("lookup after the quorum returned: %v, want [%d]", idx, rec.Index)
		}
	})

	t.Run("all witnesses restarted", func(t *testing.T) {
		for _, w := range ws {
			w.Stop(t)
			w.Start(t)
		}
		e := s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())
		rec := tl.submit(t, e, http.StatusCreated)
		got, _, err := witnesstest.Cosigners([]byte(rec.Checkpoint), ws...)
		if err != nil || len(got) < 2 {
			t.Fatalf("after restarts, cosigned by %v (%v), want at least 2", got, err)
		}
	})
}
