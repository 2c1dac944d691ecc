package ledger

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/transparency-dev/tessera"
)

// Red team: the cost of an owner's filtered and current lookups when
// strangers' entries share its entry bundle.

// countingReader counts the entry bundle bytes a lookup reads.
type countingReader struct {
	tessera.LogReader
	bundleBytes atomic.Int64
}

func (c *countingReader) ReadEntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error) {
	b, err := c.LogReader.ReadEntryBundle(ctx, index, p)
	c.bundleBytes.Add(int64(len(b)))
	return b, err
}

// TestRedTeamOwnerLookupCostIndependentOfStrangers: the owner's statement
// is the first entry of a bundle that a stranger then fills with 255 large
// statements (about other digests: the stranger's keys and digests are
// free). Lookups filtered by the owner's key, and its current statement,
// are documented to cost nothing for other keys' statements ("Entries by
// other keys are never read", "Its cost does not grow ... with other keys'
// statements"); each read the whole bundle, ~11 MiB, to answer with one
// ~1 KiB entry. With api.MaxCurrentKeyIDs keys, each the only
// statement of a key in its own stranger-filled bundle, one unauthenticated
// GET .../current held 64 such bundles in memory at once (~700 MiB), and
// lookups were not bounded. The index now keeps each entry's bytes: a
// lookup reads the entries it returns and no bundle, and at most
// maxConcurrentLookups lookups run at once.
func TestRedTeamOwnerLookupCostIndependentOfStrangers(t *testing.T) {
	ownerLookupCost(t, posixAt(t.TempDir()), Config{})
}

// TestRedTeamMySQLOwnerLookupCostIndependentOfStrangers: the same on MySQL
// storage, whose entry bytes live in notarize_entry_data.
func TestRedTeamMySQLOwnerLookupCostIndependentOfStrangers(t *testing.T) {
	ownerLookupCost(t, mysqlAt(mysqlEnv.database(t)), mysqlConfig(t, noteKey(t, "mysql.example/lookupcost")))
}

func ownerLookupCost(t *testing.T, at storageAt, cfg Config) {
	tl := startLedgerAt(t, at, cfg)
	owner, stranger := newTestSigner(t), newTestSigner(t)
	d := randomDigest(t)
	now := time.Now()
	rec := tl.submit(t, owner.sign(t, d, notarize.StatusTrusted, now.Add(-time.Hour)), http.StatusCreated)
	if rec.Index != 0 {
		t.Fatalf("owner's entry at %d, want 0", rec.Index)
	}
	// 32 large statements share the owner's bundle (~1.4 MiB of it, 22
	// times the budget); the attack's 255 (~11 MiB) cost 40 s under -race
	// and prove nothing more.
	flood := make([]*notarize.Entry, 32)
	for i := range flood {
		flood[i] = stranger.signLarge(t, randomDigest(t), notarize.StatusTrusted, now.Add(time.Duration(i)*time.Millisecond))
	}
	submitAll(t, tl.url, flood)
	ownerEntry := mustMarshal(t, owner.sign(t, d, notarize.StatusTrusted, now))

	cr := &countingReader{LogReader: tl.Ledger.reader}
	tl.Ledger.reader = cr
	budget := int64(64 * len(ownerEntry)) // generous: a few entries' worth

	resp, err := tl.Ledger.Current(t.Context(), d, []string{owner.keyID})
	if err != nil || len(resp.Entries) != 1 {
		t.Fatalf("current: %v %+v", err, resp)
	}
	if n := cr.bundleBytes.Swap(0); n > budget {
		t.Errorf("BYPASS (cost): the owner's current statement (one %d-byte entry) read %d bytes of entry bundles, filled by a stranger's statements", len(ownerEntry), n)
	}
	page, err := tl.Ledger.Lookup(t.Context(), d, LookupOptions{KeyIDs: []string{owner.keyID}})
	if err != nil || len(page.Entries) != 1 {
		t.Fatalf("lookup: %v %+v", err, page)
	}
	if n := cr.bundleBytes.Swap(0); n > budget {
		t.Errorf("BYPASS (cost): the owner's filtered lookup (one %d-byte entry) read %d bytes of entry bundles, filled by a stranger's statements", len(ownerEntry), n)
	}
}

// TestRedTeamLookupsBoundedAtOnce: lookups are unauthenticated, so at most
// maxConcurrentLookups read the index at once; one more is 503 with
// Retry-After (it holds nothing), and lookups work again once one ends.
func TestRedTeamLookupsBoundedAtOnce(t *testing.T) {
	tl := startLedger(t, Config{})
	owner := newTestSigner(t)
	d := randomDigest(t)
	tl.submit(t, owner.sign(t, d, notarize.StatusTrusted, time.Now()), http.StatusCreated)
	tl.Ledger.lookups.limits = lookupLimits{wait: time.Millisecond} // a full gate answers at once
	var leaves []func()
	for i := range maxConcurrentLookups {
		leave, err := tl.Ledger.enterLookup(t.Context(), lookupAPI)
		if err != nil {
			t.Fatalf("lookup %d of %d refused: %v", i+1, maxConcurrentLookups, err)
		}
		leaves = append(leaves, leave)
	}
	for _, path := range []string{"", api.PathCurrentSuffix} {
		resp, err := http.Get(lookupURL(tl.url, d, path, keyQuery(owner.keyID)))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("lookup %q beyond %d at once: %d (Retry-After %q), want 503 with Retry-After", path, maxConcurrentLookups, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	leaves[0]()
	defer func() {
		for _, leave := range leaves[1:] {
			leave()
		}
	}()
	if resp, _ := tl.getLookup(t, lookupURL(tl.url, d, api.PathCurrentSuffix, keyQuery(owner.keyID))); len(resp.Entries) != 1 {
		t.Fatalf("lookup once a place is free: %d entries, want 1", len(resp.Entries))
	}
}
