package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// Tests of lookups under a flood: statements by other keys about a digest,
// however many and large, must not change the cost or the outcome of a
// lookup filtered by key, of the current statement, or break pagination.

// signLarge returns an entry of about 44 KB (a statement holds at most
// notarize.MaxStatementSize bytes) saying d has status st at ts, padded
// with attributes.
func (s *testSigner) signLarge(t testing.TB, d notarize.Digest, st notarize.Status, ts time.Time) *notarize.Entry {
	t.Helper()
	attrs := map[string]string{}
	for i := range 29 {
		attrs[fmt.Sprintf("pad%02d", i)] = strings.Repeat("x", notarize.MaxAttributeVal)
	}
	stmt := notarize.NewStatement(d, "registry.example/app:1", notarize.Predicate{
		Status: st, Kind: notarize.KindImage, Attributes: attrs, Timestamp: ts.UTC(),
	})
	e, err := notarize.Sign(context.Background(), s.sv, stmt)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// signAt is sign with a timestamp kept to the nanosecond.
func (s *testSigner) signAt(t testing.TB, d notarize.Digest, st notarize.Status, ts time.Time) *notarize.Entry {
	t.Helper()
	e, err := notarize.Sign(context.Background(), s.sv, notarize.NewStatement(d, "registry.example/app:1",
		notarize.Predicate{Status: st, Kind: notarize.KindImage, Timestamp: ts.UTC()}))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// submitAll posts entries with a few concurrent clients and returns their
// receipts in the order of entries.
func submitAll(t testing.TB, base string, entries []*notarize.Entry) []api.Receipt {
	t.Helper()
	out := make([]api.Receipt, len(entries))
	var wg sync.WaitGroup
	next := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				status, rec, err := post(t.Context(), http.DefaultClient, base, mustMarshal(t, entries[i]))
				if err != nil || status != http.StatusCreated {
					t.Errorf("submit %d: %d %v", i, status, err)
				}
				out[i] = rec
			}
		})
	}
	for i := range entries {
		next <- i
	}
	close(next)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return out
}

// lookupURL is the URL of a digest lookup: path is "" or api.PathCurrentSuffix.
func lookupURL(base string, d notarize.Digest, path string, q url.Values) string {
	u := base + api.PathDigests + string(d) + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// getLookup fetches a lookup answer, failing t unless it is a 200 under
// api.MaxAnswerSize whose entries all verify; it returns the answer and
// its size.
func (tl *testLedger) getLookup(t testing.TB, u string) (api.LookupResponse, int) {
	t.Helper()
	status, _, b := do(t, http.MethodGet, u, nil)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", clipQuery(u), status, b)
	}
	if len(b) > api.MaxAnswerSize {
		t.Fatalf("GET %s: answer of %d bytes, over api.MaxAnswerSize", clipQuery(u), len(b))
	}
	var resp api.LookupResponse
	if err := json.Unmarshal(b, &resp); err != nil {
		t.Fatalf("GET %s: %v", clipQuery(u), err)
	}
	tl.checkLookup(t, resp)
	return resp, len(b)
}

// walk follows the pages of a lookup and returns every index, failing t if
// an index repeats or goes down.
func (tl *testLedger) walk(t testing.TB, d notarize.Digest, q url.Values) []uint64 {
	t.Helper()
	var all []uint64
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatal("pagination does not end")
		}
		resp, _ := tl.getLookup(t, lookupURL(tl.url, d, "", q))
		for _, e := range resp.Entries {
			if len(all) > 0 && e.Index <= all[len(all)-1] {
				t.Fatalf("index %d after %d", e.Index, all[len(all)-1])
			}
			all = append(all, e.Index)
		}
		if resp.Next == nil {
			return all
		}
		if len(resp.Entries) == 0 || *resp.Next != resp.Entries[len(resp.Entries)-1].Index {
			t.Fatalf("next %d does not follow the page's last entry", *resp.Next)
		}
		q = cloneValues(q)
		q.Set(api.QueryAfter, fmt.Sprint(*resp.Next))
	}
}

func cloneValues(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = slices.Clone(v)
	}
	return out
}

func keyQuery(keyIDs ...string) url.Values { return url.Values{api.QueryKeyID: keyIDs} }

// floodLookups is the flood scenario on a running ledger: a stranger posts
// large statements about the owner's digest; the owner's filtered lookup,
// current statement and the pages of every lookup stay small and right.
func floodLookups(t *testing.T, tl *testLedger, strangerEntries int) {
	owner, stranger := newTestSigner(t), newTestSigner(t)
	d := randomDigest(t)
	now := time.Now()
	trusted := tl.submit(t, owner.sign(t, d, notarize.StatusTrusted, now.Add(-time.Hour)), http.StatusCreated)

	flood := make([]*notarize.Entry, strangerEntries)
	for i := range flood {
		flood[i] = stranger.signLarge(t, d, notarize.StatusTrusted, now.Add(time.Duration(i)*time.Millisecond))
	}
	start := time.Now()
	submitAll(t, tl.url, flood)
	t.Logf("%d statements of %d bytes posted in %v", len(flood), len(mustMarshal(t, flood[0])), time.Since(start).Round(time.Millisecond))

	// The owner revokes after the flood, and can tell.
	untrusted := tl.submit(t, owner.sign(t, d, notarize.StatusUntrusted, now), http.StatusCreated)

	resp, size := tl.getLookup(t, lookupURL(tl.url, d, "", keyQuery(owner.keyID)))
	if got, want := indices(resp), []uint64{trusted.Index, untrusted.Index}; !slices.Equal(got, want) || resp.Next != nil {
		t.Fatalf("owner's lookup: %v next %v, want %v", got, resp.Next, want)
	}
	if size > 16<<10 {
		t.Errorf("owner's lookup is %d bytes: the stranger's statements cost it", size)
	}
	cur, size := tl.getLookup(t, lookupURL(tl.url, d, api.PathCurrentSuffix, keyQuery(owner.keyID)))
	if got := indices(cur); !slices.Equal(got, []uint64{untrusted.Index}) || cur.Next != nil {
		t.Fatalf("owner's current statement: %v, want [%d]", got, untrusted.Index)
	}
	if size > 8<<10 {
		t.Errorf("current answer is %d bytes", size)
	}
	// Both keys: the current statement of each.
	cur, _ = tl.getLookup(t, lookupURL(tl.url, d, api.PathCurrentSuffix, keyQuery(owner.keyID, stranger.keyID)))
	if got := indices(cur); len(got) != 2 || !slices.Contains(got, untrusted.Index) {
		t.Fatalf("current of both keys: %v", got)
	}
	// Unfiltered pages stay under the answer bound and hold every entry
	// once, even when the limit asked for would not.
	for _, limit := range []string{"", fmt.Sprint(api.MaxLookupLimit)} {
		q := url.Values{}
		if limit != "" {
			q.Set(api.QueryLimit, limit)
		}
		if all := tl.walk(t, d, q); len(all) != strangerEntries+2 {
			t.Fatalf("unfiltered walk (limit %q): %d entries, want %d", limit, len(all), strangerEntries+2)
		}
	}
	if strangerEntries >= 150 {
		// 150 entries of 40 KB do not fit in one answer: the page ends early.
		resp, _ := tl.getLookup(t, lookupURL(tl.url, d, "", url.Values{api.QueryLimit: {fmt.Sprint(api.MaxLookupLimit)}}))
		if resp.Next == nil || len(resp.Entries) >= strangerEntries {
			t.Fatalf("a page of %d large entries and next %v: not bounded by size", len(resp.Entries), resp.Next)
		}
	}
	if got := tl.walk(t, d, keyQuery(stranger.keyID)); len(got) != strangerEntries {
		t.Fatalf("stranger's walk: %d entries, want %d", len(got), strangerEntries)
	}
}

func indices(resp api.LookupResponse) []uint64 {
	var out []uint64
	for _, e := range resp.Entries {
		out = append(out, e.Index)
	}
	return out
}

func TestLookupFloodByStranger(t *testing.T) {
	t.Parallel()
	// 150 entries of 40 KB: Tessera writes the partial entry bundle again
	// (up to 6 MB) at each batch, which under the race detector on a loaded
	// machine took past the 30 s receipt wait with batches of 50 ms (42 s
	// to post); batches of up to 200 ms write it a few times less.
	floodLookups(t, startLedger(t, Config{BatchMaxAge: 200 * time.Millisecond}), 150)
}

func TestPaginationWalksEveryEntryOnce(t *testing.T) {
	tl := startLedger(t, Config{})
	keys := []*testSigner{newTestSigner(t), newTestSigner(t), newTestSigner(t)}
	d, other := randomDigest(t), randomDigest(t)
	now := time.Now()
	var entries []*notarize.Entry
	for i := range 300 { // more than one entry bundle (256)
		k := keys[i%3]
		dd := d
		if i%5 == 4 {
			dd = other
		}
		entries = append(entries, k.signAt(t, dd, notarize.StatusTrusted, now.Add(time.Duration(i)*time.Microsecond)))
	}
	recs := submitAll(t, tl.url, entries)
	want := map[string][]uint64{} // by key ID, "" for all, about d
	for i, r := range recs {
		if i%5 == 4 {
			continue
		}
		k := keys[i%3].keyID
		want[k] = append(want[k], r.Index)
		want[""] = append(want[""], r.Index)
	}
	for _, w := range want {
		slices.Sort(w)
	}
	for _, tc := range []struct {
		name  string
		keys  []string
		limit string
	}{
		{"all, default limit", nil, ""},
		{"all, pages of 7", nil, "7"},
		{"all, pages of 1", nil, "1"},
		{"one key, pages of 13", []string{keys[0].keyID}, "13"},
		{"two keys, pages of 10", []string{keys[0].keyID, keys[2].keyID}, "10"},
		{"two keys and a repeat, pages of 1000", []string{keys[1].keyID, keys[2].keyID, keys[1].keyID}, "1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := keyQuery(tc.keys...)
			if tc.limit != "" {
				q.Set(api.QueryLimit, tc.limit)
			}
			var exp []uint64
			if len(tc.keys) == 0 {
				exp = want[""]
			}
			for _, k := range tc.keys {
				if !slices.Contains(exp, want[k][0]) {
					exp = append(exp, want[k]...)
				}
			}
			slices.Sort(exp)
			if got := tl.walk(t, d, q); !slices.Equal(got, exp) {
				t.Fatalf("walk: %d entries %v\nwant %d %v", len(got), got, len(exp), exp)
			}
		})
	}
	t.Run("page boundaries", func(t *testing.T) {
		q := url.Values{api.QueryLimit: {"5"}, api.QueryAfter: {fmt.Sprint(want[""][9])}}
		resp, _ := tl.getLookup(t, lookupURL(tl.url, d, "", q))
		if got := indices(resp); !slices.Equal(got, want[""][10:15]) || resp.Next == nil || *resp.Next != want[""][14] {
			t.Fatalf("page after %d: %v next %v, want %v", want[""][9], got, resp.Next, want[""][10:15])
		}
		last := want[""][len(want[""])-1]
		resp, _ = tl.getLookup(t, lookupURL(tl.url, d, "", url.Values{api.QueryAfter: {fmt.Sprint(last)}}))
		if len(resp.Entries) != 0 || resp.Next != nil {
			t.Fatalf("page after the last entry: %v next %v", indices(resp), resp.Next)
		}
		// The last page of exactly limit entries carries no Next.
		n := len(want[""])
		resp, _ = tl.getLookup(t, lookupURL(tl.url, d, "", url.Values{api.QueryLimit: {"3"}, api.QueryAfter: {fmt.Sprint(want[""][n-4])}}))
		if !slices.Equal(indices(resp), want[""][n-3:]) || resp.Next != nil {
			t.Fatalf("last full page: %v next %v", indices(resp), resp.Next)
		}
	})
}

func TestCurrentStatement(t *testing.T) {
	tl := startLedger(t, Config{})
	a, b, silent := newTestSigner(t), newTestSigner(t), newTestSigner(t)
	d := randomDigest(t)
	t0 := time.Now().Add(-time.Hour)
	current := func(keys ...string) []uint64 {
		t.Helper()
		resp, _ := tl.getLookup(t, lookupURL(tl.url, d, api.PathCurrentSuffix, keyQuery(keys...)))
		if resp.Next != nil {
			t.Fatal("current lookup with next")
		}
		return indices(resp)
	}
	if got := current(a.keyID); len(got) != 0 {
		t.Fatalf("current of a digest nobody signed: %v", got)
	}
	trusted := tl.submit(t, a.signAt(t, d, notarize.StatusTrusted, t0.Add(time.Minute)), http.StatusCreated)
	revoked := tl.submit(t, a.signAt(t, d, notarize.StatusUntrusted, t0.Add(2*time.Minute)), http.StatusCreated)
	// An older statement appended later does not win: the signed time decides.
	tl.submit(t, a.signAt(t, d, notarize.StatusTrusted, t0), http.StatusCreated)
	if got := current(a.keyID); !slices.Equal(got, []uint64{revoked.Index}) {
		t.Fatalf("current after an older statement: %v, want [%d] (not %d)", got, revoked.Index, trusted.Index)
	}
	// The same time: the greater index wins.
	tie := tl.submit(t, a.signAt(t, d, notarize.StatusUnsupported, t0.Add(2*time.Minute)), http.StatusCreated)
	bs := tl.submit(t, b.signAt(t, d, notarize.StatusTrusted, t0), http.StatusCreated)
	if got := current(a.keyID, b.keyID, silent.keyID); !slices.Equal(got, []uint64{tie.Index, bs.Index}) {
		t.Fatalf("current of a, b and a silent key: %v, want [%d %d]", got, tie.Index, bs.Index)
	}
	// Nanoseconds count.
	later := tl.submit(t, a.signAt(t, d, notarize.StatusTrusted, t0.Add(2*time.Minute+time.Nanosecond)), http.StatusCreated)
	if got := current(a.keyID); !slices.Equal(got, []uint64{later.Index}) {
		t.Fatalf("current after a statement 1ns later: %v, want [%d]", got, later.Index)
	}
}

func TestLookupQueryErrors(t *testing.T) {
	tl := startLedger(t, Config{})
	d := randomDigest(t)
	k := newTestSigner(t).keyID
	many := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%064x", i)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		path string
		q    url.Values
	}{
		{"negative after", "", url.Values{api.QueryAfter: {"-1"}}},
		{"after not a number", "", url.Values{api.QueryAfter: {"abc"}}},
		{"after with a sign", "", url.Values{api.QueryAfter: {"+1"}}},
		{"after overflows", "", url.Values{api.QueryAfter: {"18446744073709551616"}}},
		{"after past every index", "", url.Values{api.QueryAfter: {"18446744073709551615"}}},
		{"after twice", "", url.Values{api.QueryAfter: {"1", "2"}}},
		{"limit zero", "", url.Values{api.QueryLimit: {"0"}}},
		{"limit over the maximum", "", url.Values{api.QueryLimit: {fmt.Sprint(api.MaxLookupLimit + 1)}}},
		{"limit empty", "", url.Values{api.QueryLimit: {""}}},
		{"limit twice", "", url.Values{api.QueryLimit: {"1", "1"}}},
		{"key ID in capitals", "", keyQuery(strings.ToUpper(k))},
		{"key ID too short", "", keyQuery(k[:63])},
		{"too many key IDs", "", keyQuery(many(api.MaxLookupKeyIDs + 1)...)},
		{"current without key ID", api.PathCurrentSuffix, nil},
		{"current with a bad key ID", api.PathCurrentSuffix, keyQuery("xyz")},
		{"current with too many key IDs", api.PathCurrentSuffix, keyQuery(many(api.MaxCurrentKeyIDs + 1)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, b := do(t, http.MethodGet, lookupURL(tl.url, d, tc.path, tc.q), nil)
			if er := decodeError(t, b); status != http.StatusBadRequest || er.Code != api.CodeBadRequest {
				t.Fatalf("%d %+v, want 400 %s", status, er, api.CodeBadRequest)
			}
		})
	}
	// The bounds themselves are accepted.
	for _, q := range []url.Values{
		{api.QueryLimit: {fmt.Sprint(api.MaxLookupLimit)}, api.QueryAfter: {"0"}},
		keyQuery(many(api.MaxLookupKeyIDs)...),
	} {
		tl.getLookup(t, lookupURL(tl.url, d, "", q))
	}
	tl.getLookup(t, lookupURL(tl.url, d, api.PathCurrentSuffix, keyQuery(many(api.MaxCurrentKeyIDs)...)))
}
