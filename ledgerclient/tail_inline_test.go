package ledgerclient_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// inlineFront is a front before a real ledger that counts the tlog-tiles
// requests it passes and lets a test rewrite every lookup answer (current
// and pages), its inline tail included.
type inlineFront struct {
	*httptest.Server
	tiles, bundles atomic.Int64 // /tile/… and /tile/entries/… requests
	tails          atomic.Int64 // lookup answers that carried an inline tail
	// rewrite, when set, rewrites the decoded answer of a lookup request.
	rewrite atomic.Pointer[func(*http.Request, *api.LookupResponse)]
	// inline, when set, asks the ledger for the inline tail on every
	// lookup, whatever the client asked (tail=anchor among others).
	inline atomic.Bool
}

func newInlineFront(t *testing.T, upstream string) *inlineFront {
	f := &inlineFront{}
	u, _ := url.Parse(upstream)
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/tile/entries/"):
			f.bundles.Add(1)
		case strings.HasPrefix(r.URL.Path, "/tile/"):
			f.tiles.Add(1)
		}
		uri := r.URL.RequestURI()
		if f.inline.Load() && strings.HasPrefix(r.URL.Path, api.PathDigests) {
			q := r.URL.Query()
			q.Set(api.QueryTail, api.TailInline)
			q.Del(api.QueryAnchor)
			uri = r.URL.Path + "?" + q.Encode()
		}
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, u.String()+uri, r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK && strings.HasPrefix(r.URL.Path, api.PathDigests) {
			lr := decodeAnswer(t, body)
			if lr.Map != nil && lr.Map.Tail != nil {
				f.tails.Add(1)
			}
			if rw := f.rewrite.Load(); rw != nil {
				(*rw)(r, lr)
				body = encodeAnswer(t, lr)
			}
		}
		for k, v := range resp.Header {
			if k != "Content-Length" {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(body)
	}))
	t.Cleanup(f.Close)
	return f
}

// decodeAnswer decodes a lookup answer, JSON or framed.
func decodeAnswer(t *testing.T, body []byte) *api.LookupResponse {
	lr, err := api.UnmarshalLookupAnswer(body)
	if err != nil {
		t.Error(err)
		return &api.LookupResponse{}
	}
	return lr
}

// encodeAnswer encodes a lookup answer as the ledger does: framed when it
// carries an inline tail.
func encodeAnswer(t *testing.T, lr *api.LookupResponse) []byte {
	b, err := api.MarshalLookupAnswer(lr)
	if err != nil {
		t.Error(err)
	}
	return b
}

// set installs rw (nil: pass answers through) and resets the counts.
func (f *inlineFront) set(rw func(*http.Request, *api.LookupResponse)) {
	if rw == nil {
		f.rewrite.Store(nil)
	} else {
		f.rewrite.Store(&rw)
	}
	f.tiles.Store(0)
	f.bundles.Store(0)
	f.tails.Store(0)
}

// inlineFix is a real ledger whose newest map root is followed by a few
// hundred entries (two entry bundles of tail, one tile of left edge):
// alice trusted d and d2 before the root and untrusted d in the tail.
type inlineFix struct {
	srv            *ledgertest.Server
	front          *inlineFront
	d, d2          notarize.Digest
	ka             string
	trust, untrust uint64
	alice, filler  signature.SignerVerifier
	// trustEntry is alice's trust as a page answers it, with its proof
	// under the fixture's final checkpoint: what a front puts in a current
	// answer in place of the untrust.
	trustEntry api.LookupEntry
}

func newInlineFix(t *testing.T) *inlineFix {
	t.Helper()
	srv := ledgertest.Start(t) // a map root every 1,024 entries, none after an idle moment
	fx := &inlineFix{srv: srv, front: newInlineFront(t, srv.URL), d: digest("inline-tail"), d2: digest("inline-tail-2")}
	direct := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	alice := notarizetest.NewSigner(t)
	fx.alice, fx.filler = alice, notarizetest.NewSigner(t)
	fx.ka = notarizetest.KeyID(t, alice)
	fx.trust = submit(t, direct, notarizetest.Entry(t, alice, fx.d, notarize.StatusTrusted, t0)).Index
	submit(t, direct, notarizetest.Entry(t, alice, fx.d2, notarize.StatusTrusted, t0))
	fx.fill(t, 1022, "before")
	waitMapRoot(t, srv.URL, fx.d, fx.ka, 1024)
	fx.fill(t, 150, "tail-a")
	fx.untrust = submit(t, direct, notarizetest.Entry(t, alice, fx.d, notarize.StatusUntrusted, t0.Add(time.Minute))).Index
	fx.fill(t, 150, "tail-b")
	resp, err := http.Get(srv.URL + api.PathDigests + string(fx.d) + "?" + api.QueryKeyID + "=" + fx.ka)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, e := range decodeAnswer(t, body).Entries {
		if e.Index == fx.trust {
			fx.trustEntry = e
		}
	}
	return fx
}

// fill appends n statements by the filler key about other digests.
func (fx *inlineFix) fill(t *testing.T, n int, prefix string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 128)
	for i := range n {
		e := notarizetest.Entry(t, fx.filler, digest(fmt.Sprint(prefix, i)), notarize.StatusTrusted, t0)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := fx.srv.Ledger().Submit(t.Context(), e); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// client is a fresh client through the front.
func (fx *inlineFix) client(t *testing.T) *ledgerclient.Client {
	return newClient(t, fx.front.URL, t.TempDir(), fx.srv.VerifierKey)
}

// bundleHolding returns the position in lr's inline tail of the bundle
// holding log index i.
func bundleHolding(t *testing.T, lr *api.LookupResponse, i uint64) int {
	t.Helper()
	for k, b := range lr.Map.Tail.Bundles {
		if b.Index == i/256 {
			return k
		}
	}
	t.Fatalf("no inline bundle holds entry %d", i)
	return -1
}

// bundleEntryBytes splits a tlog-tiles entry bundle into its entries.
func bundleEntryBytes(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		n := int(binary.BigEndian.Uint16(b))
		out = append(out, b[2:2+n])
		b = b[2+n:]
	}
	return out
}

// joinBundle encodes entries as a tlog-tiles entry bundle.
func joinBundle(entries [][]byte) []byte {
	var out []byte
	for _, e := range entries {
		out = binary.BigEndian.AppendUint16(out, uint16(len(e)))
		out = append(out, e...)
	}
	return out
}

// TestInlineTailNoTileRequests: under ingest (a map root followed by ~300
// entries), a current lookup and a paginated lookup by key each verify,
// the revocation in the tail counted, with no /tile/ request at all: the
// answer carried the tail. Without the inline tail the same lookups read
// the tail's bundles and tiles.
func TestInlineTailNoTileRequests(t *testing.T) {
	t.Parallel()
	fx := newInlineFix(t)
	fx.front.set(nil)
	res, err := fx.client(t).Current(t.Context(), fx.d, fx.ka)
	if err != nil || len(res.Records) != 1 || res.Records[0].Index != fx.untrust {
		t.Fatalf("current lookup: %v %+v, want the untrust at %d", err, res, fx.untrust)
	}
	if n, b, tails := fx.front.tiles.Load(), fx.front.bundles.Load(), fx.front.tails.Load(); n+b != 0 || tails != 1 {
		t.Fatalf("current lookup with the tail inline: %d tile and %d bundle requests (answers with a tail: %d), want none", n, b, tails)
	}
	fx.front.set(nil)
	lres, err := fx.client(t).Lookup(t.Context(), fx.d, fx.ka)
	if err != nil || len(lres.Records) != 2 || lres.Records[1].Index != fx.untrust {
		t.Fatalf("paginated lookup: %v %+v", err, lres)
	}
	if n, b := fx.front.tiles.Load(), fx.front.bundles.Load(); n+b != 0 {
		t.Fatalf("paginated lookup with the tail inline: %d tile and %d bundle requests, want none", n, b)
	}
	// The fixture has a tail to read: stripped of it, the lookup fetches it.
	fx.front.set(func(_ *http.Request, lr *api.LookupResponse) { lr.Map.Tail = nil })
	if _, err := fx.client(t).Current(t.Context(), fx.d, fx.ka); err != nil {
		t.Fatal(err)
	}
	if n, b := fx.front.tiles.Load(), fx.front.bundles.Load(); n == 0 || b < 2 {
		t.Fatalf("without the inline tail: %d tile and %d bundle requests, want the tail's", n, b)
	}
}

// TestInlineTailLies: a front that rewrites the inline tail of current and
// paginated lookups. Bytes that are not the log's (an altered bundle or
// tile, bundles swapped between indices, a short bundle, a bundle that
// hides the untrust statement) fail the lookup with ErrBadProof or
// ErrIncomplete, never a verdict; a bundle left out, reordered, or
// labelled with a width the read does not need is fetched from the log,
// and the lookup verifies with the untrust counted; an inline tail over
// the bounds (too many items, too many bytes, an item twice) is refused
// with an error naming the bound.
func TestInlineTailLies(t *testing.T) {
	t.Parallel()
	fx := newInlineFix(t)
	flip := func(b []byte) []byte { b = bytes.Clone(b); b[len(b)-1] ^= 1; return b }
	flipFirst := func(b []byte) []byte { b = bytes.Clone(b); b[0] ^= 1; return b }
	// omit hides the untrust: alice's trust is her current statement
	// (in a current answer, it takes the untrust's place).
	omit := func(lr *api.LookupResponse) {
		lr.Entries = dropEntry(lr.Entries, fx.untrust)
		if !slices.ContainsFunc(lr.Entries, func(e api.LookupEntry) bool { return e.Index == fx.trust }) {
			lr.Entries = append(lr.Entries, fx.trustEntry)
		}
	}
	junk := func(n int) []byte { return bytes.Repeat([]byte{0x55}, n) }
	cases := []struct {
		name string
		// lie rewrites an answer carrying an inline tail.
		lie func(t *testing.T, lr *api.LookupResponse)
		// ok: the lookup verifies, the untrust counted; else it fails
		// with ErrBadProof or ErrIncomplete (or, with msg, an error
		// holding msg).
		ok      bool
		fetched bool   // ok, and the tail's missing part was fetched
		msg     string // the failure names this (or one of these, |-separated)
	}{
		{name: "a byte of the bundle holding the untrust", lie: func(t *testing.T, lr *api.LookupResponse) {
			k := bundleHolding(t, lr, fx.untrust)
			lr.Map.Tail.Bundles[k].Data = flip(lr.Map.Tail.Bundles[k].Data)
		}},
		{name: "a byte of a tile", lie: func(t *testing.T, lr *api.LookupResponse) {
			if len(lr.Map.Tail.Tiles) == 0 {
				t.Fatal("no inline tile")
			}
			lr.Map.Tail.Tiles[0].Data = flipFirst(lr.Map.Tail.Tiles[0].Data) // a hash the proof uses
		}},
		{name: "the bundles' data swapped between their indices", lie: func(t *testing.T, lr *api.LookupResponse) {
			bs := lr.Map.Tail.Bundles
			if len(bs) < 2 {
				t.Fatal("fewer than two inline bundles")
			}
			bs[0].Index, bs[1].Index = bs[1].Index, bs[0].Index
			bs[0].Width, bs[1].Width = bs[1].Width, bs[0].Width
		}},
		{name: "the last bundle one entry short", lie: func(t *testing.T, lr *api.LookupResponse) {
			b := &lr.Map.Tail.Bundles[len(lr.Map.Tail.Bundles)-1]
			es := bundleEntryBytes(t, b.Data)
			b.Data = joinBundle(es[:len(es)-1])
		}},
		{name: "the untrust hidden: its entry in the bundle replaced by a filler's", lie: func(t *testing.T, lr *api.LookupResponse) {
			omit(lr)
			k := bundleHolding(t, lr, fx.untrust)
			b := &lr.Map.Tail.Bundles[k]
			es := bundleEntryBytes(t, b.Data)
			j := fx.untrust % 256
			es[j] = es[(j+1)%uint64(len(es))]
			b.Data = joinBundle(es)
		}},
		{name: "the untrust hidden: its entry dropped from the bundle", lie: func(t *testing.T, lr *api.LookupResponse) {
			omit(lr)
			k := bundleHolding(t, lr, fx.untrust)
			b := &lr.Map.Tail.Bundles[k]
			es := bundleEntryBytes(t, b.Data)
			b.Data = joinBundle(slices.Delete(es, int(fx.untrust%256), int(fx.untrust%256)+1))
		}},
		{name: "the untrust hidden: its bundle left out of the tail", lie: func(t *testing.T, lr *api.LookupResponse) {
			omit(lr)
			k := bundleHolding(t, lr, fx.untrust)
			lr.Map.Tail.Bundles = slices.Delete(lr.Map.Tail.Bundles, k, k+1)
		}},
		{name: "the bundle holding the untrust left out", ok: true, fetched: true, lie: func(t *testing.T, lr *api.LookupResponse) {
			k := bundleHolding(t, lr, fx.untrust)
			lr.Map.Tail.Bundles = slices.Delete(lr.Map.Tail.Bundles, k, k+1)
		}},
		{name: "every bundle and tile left out", ok: true, fetched: true, lie: func(t *testing.T, lr *api.LookupResponse) {
			lr.Map.Tail = &api.InlineTail{}
		}},
		{name: "the bundles reordered", ok: true, lie: func(t *testing.T, lr *api.LookupResponse) {
			slices.Reverse(lr.Map.Tail.Bundles)
		}},
		{name: "the partial bundle labelled full", ok: true, fetched: true, lie: func(t *testing.T, lr *api.LookupResponse) {
			lr.Map.Tail.Bundles[len(lr.Map.Tail.Bundles)-1].Width = 0
		}},
		{name: "a bundle given twice", msg: "given twice", lie: func(t *testing.T, lr *api.LookupResponse) {
			lr.Map.Tail.Bundles = append(lr.Map.Tail.Bundles, lr.Map.Tail.Bundles[0])
		}},
		{name: "17 bundles", msg: "at most|more than", lie: func(t *testing.T, lr *api.LookupResponse) {
			for i := range api.MaxInlineBundles + 1 - len(lr.Map.Tail.Bundles) {
				lr.Map.Tail.Bundles = append(lr.Map.Tail.Bundles, api.InlineBundle{Index: 1000 + uint64(i), Data: []byte{0, 1, 'x'}})
			}
		}},
		{name: "9 tiles", msg: "at most|more than", lie: func(t *testing.T, lr *api.LookupResponse) {
			for i := range api.MaxInlineTiles + 1 - len(lr.Map.Tail.Tiles) {
				lr.Map.Tail.Tiles = append(lr.Map.Tail.Tiles, api.InlineTile{Level: 5, Index: 1000 + uint64(i), Data: junk(32)})
			}
		}},
		{name: "a tile larger than a tile", msg: "at most", lie: func(t *testing.T, lr *api.LookupResponse) {
			lr.Map.Tail.Tiles = append(lr.Map.Tail.Tiles, api.InlineTile{Level: 5, Index: 1000, Data: junk(256*32 + 32)})
		}},
		{name: "over 4 MiB of unneeded bundles", msg: "bytes|answer too large", lie: func(t *testing.T, lr *api.LookupResponse) {
			for i := range 4 {
				lr.Map.Tail.Bundles = append(lr.Map.Tail.Bundles, api.InlineBundle{Index: 1000 + uint64(i), Data: junk(1 << 20)})
			}
		}},
	}
	lookups := []struct {
		name string
		run  func(*ledgerclient.Client) (*ledgerclient.LookupResult, error)
	}{
		{"current", func(c *ledgerclient.Client) (*ledgerclient.LookupResult, error) {
			return c.Current(t.Context(), fx.d, fx.ka)
		}},
		{"pages", func(c *ledgerclient.Client) (*ledgerclient.LookupResult, error) {
			return c.Lookup(t.Context(), fx.d, fx.ka)
		}},
	}
	for _, lk := range lookups {
		for _, tc := range cases {
			t.Run(lk.name+"/"+tc.name, func(t *testing.T) {
				var lied atomic.Bool
				fx.front.set(func(_ *http.Request, lr *api.LookupResponse) {
					if lr.Map == nil || lr.Map.Tail == nil {
						return
					}
					tc.lie(t, lr)
					lied.Store(true)
				})
				defer fx.front.set(nil)
				res, err := lk.run(fx.client(t))
				if !lied.Load() {
					t.Fatal("no answer carried an inline tail to lie in")
				}
				if tc.ok {
					if err != nil || res.Records[len(res.Records)-1].Index != fx.untrust {
						t.Fatalf("%v %+v, want the untrust at %d counted", err, res, fx.untrust)
					}
					if b := fx.front.bundles.Load(); tc.fetched != (b > 0) {
						t.Fatalf("%d bundle requests, want fetched %v", b, tc.fetched)
					}
					return
				}
				switch {
				case err == nil:
					t.Fatalf("BYPASS: the lie verified: %+v", res.Records)
				case tc.msg != "" && !slices.ContainsFunc(strings.Split(tc.msg, "|"), func(m string) bool { return strings.Contains(err.Error(), m) }):
					t.Fatalf("%v, want an error naming %q", err, tc.msg)
				case tc.msg == "" && !errors.Is(err, ledgerclient.ErrBadProof) && !errors.Is(err, ledgerclient.ErrIncomplete):
					t.Fatalf("%v, want ErrBadProof or ErrIncomplete", err)
				}
			})
		}
	}
}

// TestInlineTailScoped: an answer's inline bytes stay with the lookup that
// received them. A lookup whose inline tail lies fails, and a later lookup
// of the same Client, whose answer carries no tail, reads the log's own
// bundles and verifies; one run beside it verifies too. A lookup that
// succeeds ignoring an unneeded, lying item (the partial bundle at a
// width the log reaches later) leaves nothing for the lookup that needs
// that width once the log grew.
func TestInlineTailScoped(t *testing.T) {
	t.Parallel()
	fx := newInlineFix(t)
	poisonD := func(r *http.Request, lr *api.LookupResponse) {
		if lr.Map == nil || lr.Map.Tail == nil {
			return
		}
		if !strings.Contains(r.URL.Path, string(fx.d)) {
			lr.Map.Tail = nil // B's answers: no inline tail, the client fetches
			return
		}
		for k := range lr.Map.Tail.Bundles {
			b := &lr.Map.Tail.Bundles[k]
			b.Data = bytes.Clone(b.Data)
			b.Data[len(b.Data)-1] ^= 1
		}
	}
	fx.front.set(poisonD)
	c := fx.client(t)
	if _, err := c.Current(t.Context(), fx.d, fx.ka); !errors.Is(err, ledgerclient.ErrBadProof) {
		t.Fatalf("A, a lying inline tail: %v, want ErrBadProof", err)
	}
	if res, err := c.Current(t.Context(), fx.d2, fx.ka); err != nil || len(res.Records) != 1 {
		t.Fatalf("B after A, same client: %v %+v", err, res)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			// Past the client's share of the ledger's tail budget (four
			// full tails, ledger/tail_budget.go) an answer comes without
			// its inline tail, so unpoisoned, and the client reads the
			// true tail: the untrust. Either way, no lie is believed.
			res, err := c.Current(t.Context(), fx.d, fx.ka)
			if errors.Is(err, ledgerclient.ErrBadProof) {
				return
			}
			if err != nil || len(res.Records) != 1 || res.Records[0].Index != fx.untrust {
				t.Errorf("A: %v %+v, want ErrBadProof, or the untrust read from the true tail", err, res)
			}
		})
		wg.Go(func() {
			if res, err := c.Current(t.Context(), fx.d2, fx.ka); err != nil || len(res.Records) != 1 {
				t.Errorf("B beside A, same client: %v %+v", err, res)
			}
		})
	}
	wg.Wait()

	// A verifies, ignoring a lying copy of the partial bundle at the width
	// it will have once 5 more entries are logged; B then needs that width.
	const more = 5
	var planted atomic.Bool
	fx.front.set(func(r *http.Request, lr *api.LookupResponse) {
		if lr.Map == nil || lr.Map.Tail == nil {
			return
		}
		if !strings.Contains(r.URL.Path, string(fx.d)) {
			lr.Map.Tail = nil
			return
		}
		last := lr.Map.Tail.Bundles[len(lr.Map.Tail.Bundles)-1]
		if last.Width == 0 || int(last.Width)+more > 255 {
			t.Errorf("the tail's last bundle has width %d: the fixture cannot grow it by %d", last.Width, more)
			return
		}
		es := bundleEntryBytes(t, last.Data)
		for range more {
			es = append(es, es[0])
		}
		lr.Map.Tail.Bundles = append(lr.Map.Tail.Bundles, api.InlineBundle{Index: last.Index, Width: last.Width + more, Data: joinBundle(es)})
		planted.Store(true)
	})
	c = fx.client(t)
	if res, err := c.Current(t.Context(), fx.d, fx.ka); err != nil || len(res.Records) != 1 || res.Records[0].Index != fx.untrust || !planted.Load() {
		t.Fatalf("A with an unneeded lying item: %v %+v (planted %v)", err, res, planted.Load())
	}
	fx.fill(t, more, "grown")
	if res, err := c.Current(t.Context(), fx.d2, fx.ka); err != nil || len(res.Records) != 1 {
		t.Fatalf("B, needing the width A's answer lied about: %v %+v", err, res)
	}
}
