package ledger

import (
	"net/http"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// TestAnchorMySQLSharedRoot: on a map shared by two MySQL instances, the
// roots either commits carry their time, and the other instance's
// anchored answers prove against them without a tail, parsing each root
// at most once however many lookups it answers.
func TestAnchorMySQLSharedRoot(t *testing.T) {
	dsn := mysqlEnv.database(t)
	cfg := mysqlConfig(t, noteKey(t, "map.example/anchor"))
	cfg.MapCommitInterval = 20 * time.Millisecond
	a := startLedgerAt(t, mysqlAt(dsn), cfg)
	clock := &testClock{}
	cfg.clock = clock.now
	b := startLedgerAt(t, mysqlAt(dsn), cfg)
	alice, d := newTestSigner(t), randomDigest(t)
	rec := a.submit(t, alice.sign(t, d, notarize.StatusTrusted, time.Now()), http.StatusCreated)
	root := waitRootCovering(t, a, rec.Index+1)
	if root.time.IsZero() {
		t.Fatalf("root entry %d carries no time", root.Index)
	}
	waitShared(t, a, b)
	// No statement from here on, hence no root: b's lookups all prove
	// against the one now stored.
	st, err := b.vmap.m.MapState(t.Context())
	if err != nil || st.Root == nil {
		t.Fatalf("map state %+v %v", st, err)
	}
	if err := b.store.WaitProcessed(t.Context(), st.Root.Index+1); err != nil {
		t.Fatal(err)
	}
	stored, err := b.vmap.parsed(st.Root)
	if err != nil {
		t.Fatal(err)
	}
	clock.set(stored.time.Add(time.Second))
	parses := b.vmap.rootParses.Load()
	for range 5 {
		lr, _ := b.getLookup(t, lookupURL(b.url, d, api.PathCurrentSuffix, tailQuery(alice.keyID, api.TailAnchor)))
		if lr.Map == nil || lr.Map.RootIndex == nil || *lr.Map.RootIndex != stored.Index || lr.Map.Tail != nil || len(lr.Entries) != 1 {
			t.Fatalf("b's anchored answer: map %+v, %d entries; want a proof against root entry %d, alice's statement and no tail", lr.Map, len(lr.Entries), stored.Index)
		}
	}
	if n := b.vmap.rootParses.Load() - parses; n != 0 {
		t.Fatalf("b parsed the stored root %d more times for 5 lookups", n)
	}
}
