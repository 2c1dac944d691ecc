package replica_test

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
	"github.com/notarize/docker-notarize/proxy/replica"
)

// TestRecordsByIgnoresStrangersFlood: strangers who flood a digest with
// statements by their own keys, past the bound of a lookup, make the
// digest's whole lookup (Records) fail, but not the lookup by the keys a
// decision accepts: RecordsBy reads only those keys' records, in log
// order, and still bounds each key's.
func TestRecordsByIgnoresStrangersFlood(t *testing.T) {
	defer replica.SetMaxRecordsPerDigest(20)()
	srv := ledgertest.Start(t)
	lc, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: srv.URL, Home: t.TempDir(), VerifierKey: srv.VerifierKey})
	if err != nil {
		t.Fatal(err)
	}
	alice, bob := newSigner(t), newSigner(t)
	ka, kb := notarizetest.KeyID(t, alice), notarizetest.KeyID(t, bob)
	d := notarize.DigestOf([]byte("flooded"))
	at := time.Now().UTC().Add(-time.Hour)
	submitAll := func(es ...*notarize.Entry) {
		t.Helper()
		for _, e := range es {
			if _, err := lc.Submit(t.Context(), e); err != nil {
				t.Fatal(err)
			}
		}
	}
	submitAll(entry(t, alice, d, notarize.StatusTrusted, at))
	var wg sync.WaitGroup
	for i := range 30 { // strangers, each with a key of its own
		wg.Go(func() {
			e := entry(t, newSigner(t), d, notarize.StatusUntrusted, at.Add(time.Duration(i)*time.Second))
			if _, err := srv.Ledger().Submit(t.Context(), e); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	submitAll(entry(t, alice, d, notarize.StatusUntrusted, at.Add(time.Hour)), entry(t, bob, d, notarize.StatusTrusted, at))

	r, err := replica.Open(replica.Config{Path: filepath.Join(t.TempDir(), "replica.db"), Source: ledgerclient.NewFollower(lc, 0), MaxStaleness: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Records(t.Context(), d); err == nil {
		t.Fatal("the flood did not reach the whole lookup's bound: the test proves nothing")
	}
	recs, err := r.RecordsBy(t.Context(), d, []string{ka})
	if err != nil {
		t.Fatalf("alice's records about a flooded digest: %v", err)
	}
	if len(recs) != 2 || recs[0].KeyID != ka || recs[1].KeyID != ka || recs[0].Index >= recs[1].Index ||
		recs[1].Status() != notarize.StatusUntrusted {
		t.Fatalf("alice's records: %+v", recs)
	}
	recs, err = r.RecordsBy(t.Context(), d, []string{kb, ka, kb})
	if err != nil || len(recs) != 3 || recs[0].Index > recs[1].Index || recs[1].Index > recs[2].Index {
		t.Fatalf("alice's and bob's records, in log order: %v %+v", err, recs)
	}
	if recs, err := r.RecordsBy(t.Context(), d, nil); err != nil || len(recs) != 0 {
		t.Fatalf("no keys: %v %+v", err, recs)
	}
	if _, err := r.RecordsBy(t.Context(), d, []string{"not-a-key-id"}); err == nil {
		t.Fatal("a malformed key ID was looked up")
	}
	// One key's own records are bounded too.
	for i := range 20 {
		submitAll(entry(t, bob, d, notarize.StatusTrusted, at.Add(time.Duration(i+1)*time.Second)))
	}
	if _, err := r.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.RecordsBy(t.Context(), d, []string{kb}); err == nil {
		t.Fatal("more than the bound of one key's records were returned")
	}
}
