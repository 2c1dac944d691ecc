package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/storage"
	mysqlstorage "github.com/notarize/docker-notarize/ledger/storage/mysql"
	"github.com/notarize/docker-notarize/ledger/storage/posix"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/transparency-dev/tessera"
	bolt "go.etcd.io/bbolt"
)

// Tests of the key lookup (GET /api/v1/keys/{keyid}/digests).

// keyURL is the URL of a key lookup.
func keyURL(base, keyID string, q url.Values) string {
	u := base + api.PathKeys + keyID + api.PathKeyDigestsSuffix
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// keyListing is one listed digest: its current statement's index and status.
type keyListing struct {
	digest notarize.Digest
	index  uint64
	status notarize.Status
}

// getKeyPage fetches one page, failing t unless it is a 200 under
// api.MaxAnswerSize whose entries are all proven under its checkpoint,
// signed by keyID, in strictly increasing digest order after the cursor.
func (tl *testLedger) getKeyPage(t testing.TB, keyID string, q url.Values) (api.KeyDigestsResponse, []keyListing) {
	t.Helper()
	u := keyURL(tl.url, keyID, q)
	status, _, b := do(t, http.MethodGet, u, nil)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", clipQuery(u), status, b)
	}
	if len(b) > api.MaxAnswerSize {
		t.Fatalf("GET %s: answer of %d bytes, over api.MaxAnswerSize", clipQuery(u), len(b))
	}
	var resp api.KeyDigestsResponse
	if err := json.Unmarshal(b, &resp); err != nil {
		t.Fatalf("GET %s: %v", clipQuery(u), err)
	}
	if resp.KeyID != keyID {
		t.Fatalf("answer for key %q, want %q", resp.KeyID, keyID)
	}
	cp := openCheckpoint(t, tl.VerifierKey(), tl.Origin(), []byte(resp.Checkpoint))
	last := notarize.Digest(q.Get(api.QueryCursor))
	var out []keyListing
	for _, e := range resp.Entries {
		checkInclusion(t, cp, e.Index, e.Entry, e.InclusionProof)
		ent, err := notarize.ParseEntry(e.Entry)
		if err != nil {
			t.Fatal(err)
		}
		v, err := ent.VerifyLogged()
		if err != nil {
			t.Fatal(err)
		}
		d := v.Statement.Digest()
		if v.KeyID != keyID {
			t.Fatalf("entry %d is signed by %s, not the key asked for", e.Index, v.KeyID)
		}
		if last != "" && d <= last {
			t.Fatalf("digest %s listed after %s", d, last)
		}
		last = d
		out = append(out, keyListing{digest: d, index: e.Index, status: v.Statement.Predicate.Status})
	}
	if resp.Next != "" && last != "" && notarize.Digest(resp.Next) < last {
		t.Fatalf("next %s before the page's last digest %s", resp.Next, last)
	}
	return resp, out
}

// walkKey follows every page of a key lookup and returns the listings and
// the number of pages.
func (tl *testLedger) walkKey(t testing.TB, keyID string, q url.Values) ([]keyListing, int) {
	t.Helper()
	var all []keyListing
	for pages := 1; ; pages++ {
		if pages > 100000 {
			t.Fatal("pagination does not end")
		}
		resp, page := tl.getKeyPage(t, keyID, q)
		all = append(all, page...)
		if resp.Next == "" {
			return all, pages
		}
		if q.Get(api.QueryCursor) != "" && resp.Next <= q.Get(api.QueryCursor) {
			t.Fatalf("next %s does not move past the cursor %s", resp.Next, q.Get(api.QueryCursor))
		}
		q = cloneValues(q)
		q.Set(api.QueryCursor, resp.Next)
	}
}

// appendAll appends entries straight to the log (no HTTP, no receipt per
// entry), then waits until a published checkpoint covers them and the index
// does: a fast way to fill a ledger with many statements.
func appendAll(t testing.TB, tl *testLedger, entries []*notarize.Entry) {
	t.Helper()
	ctx := t.Context()
	datas := make([][]byte, len(entries))
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < len(entries); i += 8 {
				datas[i] = mustMarshal(t, entries[i])
			}
		})
	}
	wg.Wait()
	futures := make([]tessera.IndexFuture, len(datas))
	for i, data := range datas {
		futures[i] = tl.add(ctx, tessera.NewEntry(data))
	}
	var top uint64
	for i, f := range futures {
		idx, err := f()
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		top = max(top, idx.Index)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		_, cp, err := tl.latestCheckpoint(ctx)
		if err == nil && cp.Size > top {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint covers index %d: %v", top, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := tl.store.WaitProcessed(ctx, top+1); err != nil {
		t.Fatal(err)
	}
}

// TestKeyLookupPagesTenThousandDigests: a key with 10,000 digests pages
// through all of them, once each, in digest order, every entry proven and
// signed by the key, every answer under api.MaxAnswerSize and every page
// at most the limit; a stranger's statements about the same digests are
// never listed. Under the race detector, 3,000 digests (still four pages
// at the largest limit): signing and checking 11,000 entries took 61 s of
// the package's run there.
func TestKeyLookupPagesTenThousandDigests(t *testing.T) {
	t.Parallel()
	n := 10000
	if raceEnabled {
		n = 3000
	}
	keyLookupPages(t, startLedger(t, Config{}), n)
}

// TestMySQLKeyLookupPages: the same on MySQL storage (notarize_key_current).
func TestMySQLKeyLookupPages(t *testing.T) {
	t.Parallel()
	keyLookupPages(t, startLedgerAt(t, mysqlAt(mysqlEnv.database(t)), mysqlConfig(t, noteKey(t, "mysql.example/keys"))), 2500)
}

func keyLookupPages(t *testing.T, tl *testLedger, n int) {
	owner, stranger := newTestSigner(t), newTestSigner(t)
	now := time.Now().Add(-time.Hour)
	start := time.Now()
	var entries []*notarize.Entry
	want := make([]notarize.Digest, n)
	for i := range n {
		want[i] = randomDigest(t)
		entries = append(entries, owner.signAt(t, want[i], notarize.StatusTrusted, now))
		if i%10 == 0 { // the stranger says otherwise, later, about some of them
			entries = append(entries, stranger.signAt(t, want[i], notarize.StatusUntrusted, now.Add(time.Minute)))
		}
	}
	appendAll(t, tl, entries)
	t.Logf("signed and appended %d statements in %v", len(entries), time.Since(start))
	slices.Sort(want)

	got, pages := tl.walkKey(t, owner.keyID, url.Values{api.QueryLimit: {fmt.Sprint(api.MaxLookupLimit)}})
	if len(got) != n {
		t.Fatalf("%d digests listed, want %d", len(got), n)
	}
	for i, g := range got {
		if g.digest != want[i] || g.status != notarize.StatusTrusted {
			t.Fatalf("listing %d is %s %s, want %s trusted", i, g.digest, g.status, want[i])
		}
	}
	if minPages := (n + api.MaxLookupLimit - 1) / api.MaxLookupLimit; pages < minPages || pages > minPages+1 {
		t.Fatalf("%d pages of %d for %d digests", pages, api.MaxLookupLimit, n)
	}
	// The default limit, for the first pages.
	q := url.Values{}
	for p := range 3 {
		resp, page := tl.getKeyPage(t, owner.keyID, q)
		if len(page) != api.DefaultLookupLimit || page[0].digest != want[p*api.DefaultLookupLimit] || resp.Next != string(page[len(page)-1].digest) {
			t.Fatalf("default page %d: %d entries from %s, next %q", p, len(page), page[0].digest, resp.Next)
		}
		q.Set(api.QueryCursor, resp.Next)
	}
	resp, page := tl.getKeyPage(t, owner.keyID, url.Values{api.QueryLimit: {"7"}})
	if len(page) != 7 || resp.Next != string(page[6].digest) {
		t.Fatalf("a page of 7: %d entries, next %q", len(page), resp.Next)
	}
	got, _ = tl.walkKey(t, stranger.keyID, url.Values{api.QueryStatus: {"untrusted"}, api.QueryLimit: {"1000"}})
	if len(got) != (n+9)/10 {
		t.Fatalf("the stranger's untrusted digests: %d, want %d", len(got), (n+9)/10)
	}
}

// TestKeyLookupAnswerBounded: a key whose statements are large is listed
// over several pages, each under api.MaxAnswerSize, even at the largest
// limit: without the bound one page would be about 9 MiB.
func TestKeyLookupAnswerBounded(t *testing.T) {
	t.Parallel()
	tl, _ := keyPageLedger(t) // one key's 160 large statements
	got, pages := tl.walkKey(t, keyPageTemplate.keyID, url.Values{api.QueryLimit: {fmt.Sprint(api.MaxLookupLimit)}})
	if len(got) != keyPageStatements || pages < 2 {
		t.Fatalf("%d digests over %d pages, want %d over at least 2", len(got), pages, keyPageStatements)
	}
}

// TestKeyLookupStatusFilters: a status change moves a digest from one
// filter to the other; a replay of an older statement, appended later,
// does not move it back (the current statement is the newest signed one).
func TestKeyLookupStatusFilters(t *testing.T) {
	keyLookupStatusFilters(t, startLedger(t, Config{}))
}

// TestMySQLKeyLookupStatusFilters: the same on MySQL storage.
func TestMySQLKeyLookupStatusFilters(t *testing.T) {
	keyLookupStatusFilters(t, startLedgerAt(t, mysqlAt(mysqlEnv.database(t)), mysqlConfig(t, noteKey(t, "mysql.example/keyfilter"))))
}

func keyLookupStatusFilters(t *testing.T, tl *testLedger) {
	owner, other := newTestSigner(t), newTestSigner(t)
	now := time.Now().Add(-time.Hour)
	d1, d2, d3 := randomDigest(t), randomDigest(t), randomDigest(t)
	oldTrust := owner.signAt(t, d1, notarize.StatusTrusted, now)
	tl.submit(t, oldTrust, http.StatusCreated)
	tl.submit(t, owner.signAt(t, d2, notarize.StatusTrusted, now), http.StatusCreated)
	tl.submit(t, owner.signAt(t, d3, notarize.StatusUnsupported, now), http.StatusCreated)
	tl.submit(t, other.signAt(t, d2, notarize.StatusUntrusted, now.Add(time.Minute)), http.StatusCreated)

	filter := func(status string) map[notarize.Digest]uint64 {
		t.Helper()
		q := url.Values{}
		if status != "" {
			q.Set(api.QueryStatus, status)
		}
		got, _ := tl.walkKey(t, owner.keyID, q)
		out := map[notarize.Digest]uint64{}
		for _, g := range got {
			if status != "" && string(g.status) != status {
				t.Fatalf("status=%s lists %s with status %s", status, g.digest, g.status)
			}
			out[g.digest] = g.index
		}
		return out
	}
	keys := func(m map[notarize.Digest]uint64) []notarize.Digest {
		out := make([]notarize.Digest, 0, len(m))
		for d := range m {
			out = append(out, d)
		}
		sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
		return out
	}
	sorted := func(ds ...notarize.Digest) []notarize.Digest { slices.Sort(ds); return ds }
	if got := keys(filter("trusted")); !slices.Equal(got, sorted(d1, d2)) {
		t.Fatalf("trusted before the revocation: %v", got)
	}
	if got := keys(filter("untrusted")); len(got) != 0 {
		t.Fatalf("untrusted before the revocation: %v (another key's statement counted?)", got)
	}
	revoke := tl.submit(t, owner.signAt(t, d1, notarize.StatusUntrusted, now.Add(time.Second)), http.StatusCreated)
	// A replay of the "trusted" is a duplicate; a new "trusted" dated
	// before the revocation is appended after it, and changes nothing.
	v, err := oldTrust.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if rec := tl.submit(t, owner.resign(t, v.Statement, 1)[0], http.StatusOK); !rec.Duplicate {
		t.Fatalf("replay of an older statement appended: %+v", rec)
	}
	tl.submit(t, owner.signAt(t, d1, notarize.StatusTrusted, now.Add(time.Second/2)), http.StatusCreated)
	if got := keys(filter("trusted")); !slices.Equal(got, []notarize.Digest{d2}) {
		t.Fatalf("trusted after the revocation: %v, want only %s", got, d2)
	}
	untrusted := filter("untrusted")
	if got := keys(untrusted); !slices.Equal(got, []notarize.Digest{d1}) || untrusted[d1] != revoke.Index {
		t.Fatalf("untrusted after the revocation: %v, want %s at %d", untrusted, d1, revoke.Index)
	}
	if got := keys(filter("unsupported")); !slices.Equal(got, []notarize.Digest{d3}) {
		t.Fatalf("unsupported: %v", got)
	}
	if got := keys(filter("")); !slices.Equal(got, sorted(d1, d2, d3)) {
		t.Fatalf("unfiltered: %v", got)
	}
}

// recordingIndex records which keys and entries the ledger reads.
type recordingIndex struct {
	storage.Index
	mu      sync.Mutex
	keys    [][]byte // key IDs of KeyDigests, Current and Latest calls
	entries []uint64 // entries read
	pages   int      // Page calls
}

func (r *recordingIndex) KeyDigests(ctx context.Context, keyID, after []byte, n int) ([]storage.KeyRow, error) {
	r.mu.Lock()
	r.keys = append(r.keys, keyID)
	r.mu.Unlock()
	return r.Index.KeyDigests(ctx, keyID, after, n)
}

func (r *recordingIndex) Current(ctx context.Context, digest []byte, keyIDs [][]byte, below uint64) ([]uint64, error) {
	r.mu.Lock()
	r.keys = append(r.keys, keyIDs...)
	r.mu.Unlock()
	return r.Index.Current(ctx, digest, keyIDs, below)
}

func (r *recordingIndex) Page(ctx context.Context, digest []byte, keyIDs [][]byte, from, below uint64, n int) ([]uint64, error) {
	r.mu.Lock()
	r.pages++
	r.mu.Unlock()
	return r.Index.Page(ctx, digest, keyIDs, from, below, n)
}

func (r *recordingIndex) Entries(ctx context.Context, indices []uint64, take func(uint64, []byte) bool) error {
	r.mu.Lock()
	r.entries = append(r.entries, indices...)
	r.mu.Unlock()
	return r.Index.Entries(ctx, indices, take)
}

func (r *recordingIndex) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys, r.entries, r.pages = nil, nil, 0
}

// TestKeyLookupReadsOnlyTheKeysRows: a stranger with many statements about
// the owner's digests, and about others: the owner's key lookup reads the
// key index of the owner's key alone, and only the owner's entries.
func TestKeyLookupReadsOnlyTheKeysRows(t *testing.T) {
	var rec *recordingIndex
	dir := t.TempDir()
	tl := startLedgerAt(t, func(t testing.TB) Storage {
		st := posixAt(dir)(t)
		rec = &recordingIndex{Index: st.Index()}
		return indexedStorage{Storage: st, idx: rec}
	}, Config{})
	owner, stranger := newTestSigner(t), newTestSigner(t)
	now := time.Now().Add(-time.Hour)
	var entries []*notarize.Entry
	var ownerDigests []notarize.Digest
	for i := range 50 {
		d := randomDigest(t)
		ownerDigests = append(ownerDigests, d)
		entries = append(entries, owner.signAt(t, d, notarize.StatusTrusted, now))
		for j := range 10 {
			entries = append(entries, stranger.signAt(t, d, notarize.StatusUntrusted, now.Add(time.Duration(i*10+j)*time.Second)))
			entries = append(entries, stranger.signAt(t, randomDigest(t), notarize.StatusTrusted, now))
		}
	}
	appendAll(t, tl, entries)
	ownerIndex := map[uint64]bool{}
	for _, d := range ownerDigests {
		resp, _ := tl.getLookup(t, lookupURL(tl.url, d, "", keyQuery(owner.keyID)))
		for _, e := range resp.Entries {
			ownerIndex[e.Index] = true
		}
	}
	rec.reset()
	got, _ := tl.walkKey(t, owner.keyID, url.Values{api.QueryLimit: {"20"}})
	if len(got) != len(ownerDigests) {
		t.Fatalf("%d digests listed, want %d", len(got), len(ownerDigests))
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, k := range rec.keys {
		if fmt.Sprintf("%x", k) != owner.keyID {
			t.Fatalf("the key lookup read rows of key %x", k)
		}
	}
	for _, i := range rec.entries {
		if !ownerIndex[i] {
			t.Fatalf("the key lookup read entry %d, not the owner's", i)
		}
	}
	if rec.pages != 0 || len(rec.entries) != len(ownerDigests) {
		t.Fatalf("the key lookup made %d digest page reads and read %d entries for %d digests", rec.pages, len(rec.entries), len(ownerDigests))
	}
}

// TestKeyLookupCurrentBelowCheckpoint: rows indexed past the checkpoint a
// page proves against are looked up again below it, so a page lists the
// statement current under its checkpoint, with its status, and a digest
// whose first statement is past it not at all.
func TestKeyLookupCurrentBelowCheckpoint(t *testing.T) {
	st, err := openTestIndex(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	owner, other := newTestSigner(t), newTestSigner(t)
	d, late := randomDigest(t), randomDigest(t)
	now := time.Now().Add(-time.Hour)
	lg := &fakeLog{}
	lg.append(
		mustMarshal(t, owner.signAt(t, d, notarize.StatusTrusted, now)),                     // 0
		mustMarshal(t, other.signAt(t, d, notarize.StatusUntrusted, now.Add(time.Hour))),    // 1
		mustMarshal(t, owner.signAt(t, d, notarize.StatusUntrusted, now.Add(time.Minute))),  // 2
		mustMarshal(t, owner.signAt(t, d, notarize.StatusUnsupported, now.Add(-time.Hour))), // 3: older, logged later
		mustMarshal(t, owner.signAt(t, late, notarize.StatusTrusted, now)),                  // 4
	)
	stop := follow(t, st, lg)
	defer stop()
	waitProcessed(t, st, 5)
	key := rawKey(t, owner.keyID)
	for _, tc := range []struct {
		below  uint64
		status notarize.Status
		want   []uint64
	}{
		{1, "", []uint64{0}},
		{1, notarize.StatusTrusted, []uint64{0}},
		{1, notarize.StatusUntrusted, nil},
		{3, notarize.StatusUntrusted, []uint64{2}},
		{4, "", []uint64{2}}, // 3 is older than 2
		{4, notarize.StatusUnsupported, nil},
		{5, "", nil}, // both digests, checked below
	} {
		picks, next, err := st.keyDigests(t.Context(), key, storage.StatusCode(tc.status), nil, tc.below, 10)
		if err != nil || next != nil {
			t.Fatalf("below %d %s: %v, next %x", tc.below, tc.status, err, next)
		}
		var got []uint64
		for _, p := range picks {
			if p.index < 4 {
				got = append(got, p.index)
			}
		}
		if tc.below == 5 {
			if len(picks) != 2 {
				t.Fatalf("below 5: %d digests, want 2", len(picks))
			}
			continue
		}
		if !slices.Equal(got, tc.want) || len(picks) != len(tc.want) {
			t.Fatalf("below %d %s: %v, want %v", tc.below, tc.status, picks, tc.want)
		}
	}
}

func rawKey(t testing.TB, keyID string) []byte {
	t.Helper()
	_, keys, err := rawDigestAndKeys(notarize.DigestOf(nil), []string{keyID})
	if err != nil {
		t.Fatal(err)
	}
	return keys[0]
}

// TestKeyLookupBadInput: a bad key ID, status, cursor or limit is 400
// BAD_REQUEST; an unknown key is an empty last page.
func TestKeyLookupBadInput(t *testing.T) {
	tl := startLedger(t, Config{})
	s := newTestSigner(t)
	tl.submit(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
	good := s.keyID
	for _, tc := range []struct {
		name, keyID, query string
	}{
		{"upper-case key ID", strings.ToUpper(good), ""},
		{"short key ID", good[:63], ""},
		{"non-hex key ID", "z" + good[1:], ""},
		{"long key ID", good + "00", ""},
		{"unknown status", good, "status=revoked"},
		{"upper-case status", good, "status=TRUSTED"},
		{"empty status", good, "status="},
		{"status twice", good, "status=trusted&status=untrusted"},
		{"cursor not a digest", good, "cursor=abc"},
		{"cursor of another algorithm", good, "cursor=sha512:" + strings.Repeat("0", 128)},
		{"cursor too short", good, "cursor=sha256:" + strings.Repeat("0", 63)},
		{"cursor in upper case", good, "cursor=sha256:" + strings.Repeat("A", 64)},
		{"empty cursor", good, "cursor="},
		{"cursor twice", good, "cursor=" + string(notarize.DigestOf(nil)) + "&cursor=" + string(notarize.DigestOf(nil))},
		{"limit zero", good, "limit=0"},
		{"limit too large", good, fmt.Sprintf("limit=%d", api.MaxLookupLimit+1)},
		{"limit not a number", good, "limit=ten"},
		{"negative limit", good, "limit=-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := tl.url + api.PathKeys + url.PathEscape(tc.keyID) + api.PathKeyDigestsSuffix + "?" + tc.query
			status, _, b := do(t, http.MethodGet, u, nil)
			if er := decodeError(t, b); status != http.StatusBadRequest || er.Code != api.CodeBadRequest {
				t.Fatalf("GET %s: %d %s, want 400 BAD_REQUEST", u, status, b)
			}
		})
	}
	resp, got := tl.getKeyPage(t, newTestSigner(t).keyID, nil)
	if len(got) != 0 || resp.Next != "" {
		t.Fatalf("unknown key: %d entries, next %q", len(got), resp.Next)
	}
	if status, _, _ := do(t, http.MethodPost, keyURL(tl.url, good, nil), nil); status != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d, want 405", status)
	}
}

// keyLookupUpgradeLedger fills tl with a key's statements (one revoked)
// and returns the key and what its lookup lists.
func keyLookupUpgradeLedger(t *testing.T, tl *testLedger) (*testSigner, []keyListing) {
	owner, other := newTestSigner(t), newTestSigner(t)
	now := time.Now().Add(-time.Hour)
	d := randomDigest(t)
	tl.submit(t, owner.signAt(t, d, notarize.StatusTrusted, now), http.StatusCreated)
	tl.submit(t, other.signAt(t, d, notarize.StatusTrusted, now), http.StatusCreated)
	tl.submit(t, owner.signAt(t, d, notarize.StatusUntrusted, now.Add(time.Second)), http.StatusCreated)
	for range 3 {
		tl.submit(t, owner.signAt(t, randomDigest(t), notarize.StatusTrusted, now), http.StatusCreated)
	}
	want, _ := tl.walkKey(t, owner.keyID, nil)
	if len(want) != 4 {
		t.Fatalf("before the upgrade: %d digests, want 4", len(want))
	}
	return owner, want
}

// TestBoltIndexFormat3GetsKeyIndex: an index.db of format 3 (no keys
// bucket) is rebuilt on start, so the key lookup lists the statements
// logged before the upgrade.
func TestBoltIndexFormat3GetsKeyIndex(t *testing.T) {
	t.Setenv(envTestEngine, posix.EngineBbolt) // a bbolt file of an old format
	dir := t.TempDir()
	tl := startLedgerIn(t, dir, Config{})
	owner, want := keyLookupUpgradeLedger(t, tl)
	tl.close(t)

	db, err := bolt.Open(filepath.Join(dir, posix.IndexFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket([]byte("keys")); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Put([]byte("format"), be64(3))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	tl.open(t)
	if got, _ := tl.walkKey(t, owner.keyID, nil); !slices.Equal(got, want) {
		t.Fatalf("after the upgrade: %v, want %v", got, want)
	}
}

// TestMySQLMigrationV4FillsKeyIndex: a database at schema version 3 (no
// notarize_key_current, no position row 3) is migrated on start and the
// key index filled from the log.
func TestMySQLMigrationV4FillsKeyIndex(t *testing.T) {
	dsn := mysqlEnv.database(t)
	tl := startLedgerAt(t, mysqlAt(dsn), mysqlConfig(t, noteKey(t, "mysql.example/migrate4")))
	owner, want := keyLookupUpgradeLedger(t, tl)
	tl.close(t)

	db := openSQL(t, dsn)
	for _, stmt := range []string{
		"DROP TABLE `notarize_key_current`",
		"DELETE FROM `notarize_follow` WHERE `id` >= 3",
		"UPDATE `notarize_schema` SET `version` = 3",
	} {
		if _, err := db.ExecContext(t.Context(), stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	tl.open(t)
	if got, _ := tl.walkKey(t, owner.keyID, nil); !slices.Equal(got, want) {
		t.Fatalf("after the migration: %v, want %v", got, want)
	}
	var version int
	if err := db.QueryRowContext(t.Context(), "SELECT `version` FROM `notarize_schema` WHERE `id` = 0").Scan(&version); err != nil || version != mysqlstorage.SchemaVersion {
		t.Fatalf("schema version %d (%v), want %d", version, err, mysqlstorage.SchemaVersion)
	}
}
