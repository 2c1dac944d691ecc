package ledger

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/api/layout"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// inlineTailLedger returns a ledger whose newest map root is followed by
// more than api.MaxInlineBundles entry bundles (raw entries, as a foreign
// log holds, and a statement by alice about d at the end), and alice.
func inlineTailLedger(t *testing.T) (*testLedger, *testSigner, notarize.Digest) {
	t.Helper()
	return inlineTailLedgerN(t, (api.MaxInlineBundles+1)*layout.EntryBundleWidth+40, 0)
}

// inlineTailLedgerN is inlineTailLedger with a tail of n raw entries of
// at least size bytes each.
func inlineTailLedgerN(t testing.TB, n, size int) (*testLedger, *testSigner, notarize.Digest) {
	t.Helper()
	tl := startLedger(t, Config{MapCommitInterval: 20 * time.Millisecond})
	alice, d := newTestSigner(t), randomDigest(t)
	t0 := time.Now().Add(-time.Hour).UTC()
	tl.submit(t, alice.sign(t, d, notarize.StatusTrusted, t0), http.StatusCreated)
	appendRaw(t, tl, rawEntries(300, "before")) // the root covers a bundle: the tail's left edge is a tile
	tl.submit(t, alice.sign(t, randomDigest(t), notarize.StatusTrusted, t0), http.StatusCreated)
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := tl.vmap.m.MapState(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if st.Root != nil {
			if mr, err := notarize.ParseMapRoot(st.Root.Entry, tl.id.Verifier); err == nil && mr.Size >= 301 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no map root")
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitRootIndexed(t, tl)
	// No root from here on: a long tail.
	tl.close(t)
	tl.cfg.MapCommitInterval, tl.cfg.MapCommitEntries = time.Hour, 1<<20
	tl.open(t)
	tail := rawEntries(n, "after")
	for i := range tail {
		if pad := size - len(tail[i]); pad > 0 {
			tail[i] = append(tail[i], bytes.Repeat([]byte{'.'}, pad)...)
		}
	}
	appendRaw(t, tl, tail)
	tl.submit(t, alice.sign(t, d, notarize.StatusUntrusted, t0.Add(time.Minute)), http.StatusCreated)
	return tl, alice, d
}

// rawEntries returns n log entries that are no statements.
func rawEntries(n int, prefix string) [][]byte {
	raw := make([][]byte, n)
	for i := range raw {
		raw[i] = fmt.Appendf(nil, "not an entry %s %d", prefix, i)
	}
	return raw
}

// getLookup GETs a lookup answer at path?query from tl.
func getLookup(t *testing.T, tl *testLedger, path string, q url.Values) api.LookupResponse {
	t.Helper()
	status, _, b := do(t, http.MethodGet, tl.url+path+"?"+q.Encode(), nil)
	if status != http.StatusOK {
		t.Fatalf("GET %s?%s: %d %s", path, q.Encode(), status, b)
	}
	if api.IsTailAnswer(b) {
		lr, err := api.UnmarshalTailAnswer(b)
		if err != nil {
			t.Fatal(err)
		}
		return *lr
	}
	var lr api.LookupResponse
	if err := json.Unmarshal(b, &lr); err != nil {
		t.Fatal(err)
	}
	return lr
}

// TestInlineTailServed: a lookup carries the log's tail after its map root
// only when asked (api.QueryTail), and a paginated one on its last page
// only; the tail is for the answer's own checkpoint (the bundles from the
// root's covered size's bundle, each at the width that checkpoint gives
// it, and the tiles api.TailTiles names), its bytes exactly those GET
// /tile/… serves, and at most api.MaxInlineBundles bundles: the first.
func TestInlineTailServed(t *testing.T) {
	tl, alice, d := inlineTailLedger(t)
	current := api.PathDigests + string(d) + api.PathCurrentSuffix
	ask := url.Values{api.QueryKeyID: {alice.keyID}}
	if lr := getLookup(t, tl, current, ask); lr.Map == nil || lr.Map.RootIndex == nil || lr.Map.Tail != nil {
		t.Fatalf("a current lookup not asking for the tail: map %+v", lr.Map)
	}
	ask.Set(api.QueryTail, api.TailInline)
	lr := getLookup(t, tl, current, ask)
	if lr.Map == nil || lr.Map.Tail == nil {
		t.Fatalf("a current lookup asking for the tail: map %+v", lr.Map)
	}
	cp := openCheckpoint(t, tl.VerifierKey(), tl.Origin(), []byte(lr.Checkpoint))
	mr, err := notarize.ParseMapRoot(lr.Map.RootEntry, tl.id.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	start := api.TailStart(mr.Size)
	tail := lr.Map.Tail
	if len(tail.Bundles) != api.MaxInlineBundles {
		t.Fatalf("%d inline bundles of a tail of %d entries, want the cap, %d", len(tail.Bundles), cp.Size-mr.Size, api.MaxInlineBundles)
	}
	for k, b := range tail.Bundles {
		idx := start/layout.EntryBundleWidth + uint64(k)
		if b.Index != idx || b.Width != layout.PartialTileSize(0, idx, cp.Size) {
			t.Fatalf("inline bundle %d is %d.p/%d, want %d.p/%d", k, b.Index, b.Width, idx, layout.PartialTileSize(0, idx, cp.Size))
		}
		_, _, served := do(t, http.MethodGet, tl.url+"/"+layout.EntriesPath(b.Index, b.Width), nil)
		if !bytes.Equal(served, b.Data) {
			t.Fatalf("inline bundle %d differs from what /%s serves", b.Index, layout.EntriesPath(b.Index, b.Width))
		}
	}
	want := api.TailTiles(start, cp.Size)
	if len(want) == 0 || len(tail.Tiles) != len(want) {
		t.Fatalf("inline tiles %d, want %d", len(tail.Tiles), len(want))
	}
	for k, tile := range tail.Tiles {
		if w := want[k]; tile.Level != w.Level || tile.Index != w.Index || tile.Width != w.Width {
			t.Fatalf("inline tile %d is %d/%d.p/%d, want %+v", k, tile.Level, tile.Index, tile.Width, w)
		}
		_, _, served := do(t, http.MethodGet, tl.url+"/"+layout.TilePath(tile.Level, tile.Index, tile.Width), nil)
		if !bytes.Equal(served, tile.Data) {
			t.Fatalf("inline tile %d/%d differs from what /tile/ serves", tile.Level, tile.Index)
		}
	}

	// Pages: the tail on the last page only, and never without key IDs.
	page := api.PathDigests + string(d)
	ask.Set(api.QueryLimit, "1")
	first := getLookup(t, tl, page, ask)
	if first.Next == nil || first.Map == nil || first.Map.Tail != nil {
		t.Fatalf("the first of two pages: next %v, map %+v; want a next page and no tail", first.Next, first.Map)
	}
	ask.Set(api.QueryAfter, strconv.FormatUint(*first.Next, 10))
	if last := getLookup(t, tl, page, ask); last.Next != nil || last.Map == nil || last.Map.Tail == nil {
		t.Fatalf("the last page: next %v, map %+v; want the tail", last.Next, last.Map)
	}
	if all := getLookup(t, tl, page, url.Values{api.QueryTail: {api.TailInline}}); all.Map != nil {
		t.Fatalf("a lookup without key IDs carries a map: %+v", all.Map)
	}
}

// TestInlineTailBudget: the inline tail keeps within the bytes it is given
// (what the answer leaves of its bound, at most api.MaxInlineTailBytes):
// every tile and the first bundles that fit, or nothing when the tiles do
// not fit with one bundle.
func TestInlineTailBudget(t *testing.T) {
	tl, _, _ := inlineTailLedger(t)
	st, err := tl.vmap.m.MapState(t.Context())
	if err != nil || st.Root == nil {
		t.Fatalf("map state %+v %v", st, err)
	}
	_, cp, err := tl.latestCheckpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	root, err := tl.vmap.parsed(st.Root)
	if err != nil {
		t.Fatal(err)
	}
	full, err := tl.inlineTail(t.Context(), root, cp, api.MaxInlineTailBytes)
	if err != nil || full == nil || len(full.Bundles) < 2 {
		t.Fatalf("the tail: %+v %v", full, err)
	}
	tiles := 0
	for _, tile := range full.Tiles {
		tiles += len(tile.Data)
	}
	budget := tiles + len(full.Bundles[0].Data) + len(full.Bundles[1].Data) - 1
	got, err := tl.inlineTail(t.Context(), root, cp, budget)
	if err != nil || got == nil || len(got.Bundles) != 1 || got.Bundles[0].Index != full.Bundles[0].Index || len(got.Tiles) != len(full.Tiles) {
		t.Fatalf("within %d bytes: %+v %v; want the tiles and the first bundle", budget, got, err)
	}
	if got, err := tl.inlineTail(t.Context(), root, cp, tiles+len(full.Bundles[0].Data)-1); err != nil || got != nil {
		t.Fatalf("within less than the tiles and one bundle: %+v %v; want nothing", got, err)
	}
}

// BenchmarkInlineTail: a current lookup over a tail of 1,000 entries of
// 1.5 KB after the map root, with the tail inline (one request, decoded
// as the client decodes it) and without (the answer, then each bundle and
// tile of the tail as the client fetches them).
func BenchmarkInlineTail(b *testing.B) {
	tl, alice, d := inlineTailLedgerN(b, 1000, 1500)
	current := tl.url + api.PathDigests + string(d) + api.PathCurrentSuffix + "?" + api.QueryKeyID + "=" + alice.keyID
	get := func(u string) []byte {
		resp, err := http.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %d %v", u, resp.StatusCode, err)
		}
		return body
	}
	b.Run("inline", func(b *testing.B) {
		for b.Loop() {
			lr, err := api.UnmarshalTailAnswer(get(current + "&" + api.QueryTail + "=" + api.TailInline))
			if err != nil || lr.Map.Tail == nil {
				b.Fatalf("%v %+v", err, lr)
			}
			b.ReportMetric(float64(len(lr.Map.Tail.Bundles)), "bundles")
		}
	})
	b.Run("fetched", func(b *testing.B) {
		for b.Loop() {
			var lr api.LookupResponse
			if err := json.Unmarshal(get(current), &lr); err != nil {
				b.Fatal(err)
			}
			cp := openCheckpoint(b, tl.VerifierKey(), tl.Origin(), []byte(lr.Checkpoint))
			mr, err := notarize.ParseMapRoot(lr.Map.RootEntry, tl.id.Verifier)
			if err != nil {
				b.Fatal(err)
			}
			start := api.TailStart(mr.Size)
			for idx := start / layout.EntryBundleWidth; idx <= (cp.Size-1)/layout.EntryBundleWidth; idx++ {
				get(tl.url + "/" + layout.EntriesPath(idx, layout.PartialTileSize(0, idx, cp.Size)))
			}
			for _, id := range api.TailTiles(start, cp.Size) {
				get(tl.url + "/" + layout.TilePath(id.Level, id.Index, id.Width))
			}
		}
	})
}
