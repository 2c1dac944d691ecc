package ledger

import (
	"net/http"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/witnesstest"
	"github.com/notarize/docker-notarize/notarize"
)

// TestMySQLWitnessed: two instances sharing a MySQL database publish only
// checkpoints their 2-of-2 witness quorum cosigned (the ledger's own
// publisher and Tessera's both carry the witnesses); with a witness down a
// submission is a 503 within the receipt timeout, and once it is back the
// statement is published.
func TestMySQLWitnessed(t *testing.T) {
	t.Parallel()
	dsn := mysqlEnv.database(t)
	const origin = "example.com/witnessed-mysql"
	skey, vkey, err := NewSignerKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	ws := witnesstest.StartN(t, 2, origin, vkey)
	cfg := mysqlConfig(t, skey)
	cfg.WitnessPolicy = witnesstest.Policy(2, ws...)
	cfg.WitnessTimeout = 2 * time.Second
	cfg.ReceiptTimeout = 4 * time.Second
	cfg.RateLimits.Off = true
	a, b := startLedgerAt(t, mysqlAt(dsn), cfg), startLedgerAt(t, mysqlAt(dsn), cfg)
	s := newTestSigner(t)
	for _, tl := range []*testLedger{a, b, a} {
		e := s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())
		rec := tl.submit(t, e, http.StatusCreated)
		tl.checkReceipt(t, rec, mustMarshal(t, e))
		checkCosigned(t, []byte(rec.Checkpoint), ws, ws[0].Name, ws[1].Name)
		checkCosigned(t, tl.publishedCheckpoint(t), ws, ws[0].Name, ws[1].Name)
	}

	ws[1].Stop(t)
	d := randomDigest(t)
	e := s.sign(t, d, notarize.StatusTrusted, time.Now())
	start := time.Now()
	status, h, body := do(t, http.MethodPost, b.url+api.PathEntries, mustMarshal(t, e))
	if status != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Fatalf("submit without the quorum: %d, Retry-After %q, want 503: %s", status, h.Get("Retry-After"), body)
	}
	if took, bound := time.Since(start), cfg.ReceiptTimeout+15*time.Second; took > bound {
		t.Fatalf("the 503 took %v", took)
	}
	if raw := b.publishedCheckpoint(t); len(mustCosigners(t, raw, ws)) != 2 {
		t.Fatalf("a checkpoint without the 2-of-2 quorum was published:\n%s", raw)
	}
	ws[1].Start(t)
	rec := a.submit(t, e, http.StatusOK)
	checkCosigned(t, []byte(rec.Checkpoint), ws, ws[0].Name, ws[1].Name)
	if got := a.checkLookup(t, a.lookup(t, d)); len(got) != 1 || got[0] != rec.Index {
		t.Fatalf("lookup after the quorum returned: %v, want [%d]", got, rec.Index)
	}
}

func mustCosigners(t testing.TB, raw []byte, ws []*witnesstest.Witness) []string {
	t.Helper()
	got, _, err := witnesstest.Cosigners(raw, ws...)
	if err != nil {
		t.Fatal(err)
	}
	return got
}
