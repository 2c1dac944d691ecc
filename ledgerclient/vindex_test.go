package ledgerclient_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// fastMap makes a test ledger commit its map root 100 ms after new entries.
func fastMap(c *ledger.Config) { c.MapCommitInterval = 100 * time.Millisecond }

// lyingFront is a front before a real ledger that passes everything through
// but lets a test rewrite current-statement answers.
type lyingFront struct {
	*httptest.Server
	// rewrite, when set, rewrites the decoded answer of a current lookup.
	rewrite atomic.Pointer[func(*api.LookupResponse)]
	// hideCurrent makes the current endpoint 404 NOT_FOUND, as a ledger of
	// an earlier version, so the client falls back to paginated lookups.
	hideCurrent atomic.Bool
	// dropIndex, when not negative, removes the entry of this log index
	// from paginated lookups.
	dropIndex atomic.Int64
	// flipBundles alters the last byte of every entry bundle served.
	flipBundles atomic.Bool
	// dripBundles serves entry bundles one byte a second: a front that
	// never quite stops answering.
	dripBundles atomic.Bool
}

func newLyingFront(t *testing.T, upstream string) *lyingFront {
	f := &lyingFront{}
	f.dropIndex.Store(-1)
	u, _ := url.Parse(upstream)
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		current := strings.HasPrefix(r.URL.Path, api.PathDigests) && strings.HasSuffix(r.URL.Path, api.PathCurrentSuffix)
		if current && f.hideCurrent.Load() {
			w.Header().Set("Content-Type", api.MediaTypeJSON)
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(api.ErrorResponse{Code: api.CodeNotFound, Message: "not found"})
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, u.String()+r.URL.RequestURI(), r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		page := strings.HasPrefix(r.URL.Path, api.PathDigests) && !current
		if resp.StatusCode == http.StatusOK && (current && f.rewrite.Load() != nil || page && f.dropIndex.Load() >= 0) {
			lr := decodeAnswer(t, body) // JSON, or framed with an inline tail
			if current {
				(*f.rewrite.Load())(lr)
			} else {
				lr.Entries = dropEntry(lr.Entries, uint64(f.dropIndex.Load()))
			}
			body = encodeAnswer(t, lr)
		}
		if f.flipBundles.Load() && strings.HasPrefix(r.URL.Path, "/tile/entries/") && len(body) > 0 {
			body = bytes.Clone(body)
			body[len(body)-1] ^= 1
		}
		for k, v := range resp.Header {
			if k != "Content-Length" {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(resp.StatusCode)
		if f.dripBundles.Load() && strings.HasPrefix(r.URL.Path, "/tile/entries/") {
			for _, b := range body {
				if _, err := w.Write([]byte{b}); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(time.Second):
				}
			}
			return
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(f.Close)
	return f
}

func dropEntry(es []api.LookupEntry, idx uint64) []api.LookupEntry {
	out := []api.LookupEntry{}
	for _, e := range es {
		if e.Index != idx {
			out = append(out, e)
		}
	}
	return out
}

// waitMapRoot waits until the ledger's current answers for d carry a map
// root covering at least size entries.
func waitMapRoot(t *testing.T, url string, d notarize.Digest, keyID string, size uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + api.PathDigests + string(d) + api.PathCurrentSuffix + "?keyid=" + keyID)
		if err == nil {
			var lr api.LookupResponse
			err = json.NewDecoder(resp.Body).Decode(&lr)
			resp.Body.Close()
			if err == nil && lr.Map != nil && lr.Map.RootIndex != nil && rootSize(lr.Map.RootEntry) >= size {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no map root covering %d entries", size)
}

// rootSize reads the size line of a map-root entry without checking it.
func rootSize(entry []byte) uint64 {
	lines := strings.Split(string(entry), "\n")
	if len(lines) < 3 {
		return 0
	}
	var n uint64
	for _, c := range lines[2] {
		if c < '0' || c > '9' {
			return 0
		}
		n = 10*n + uint64(c-'0')
	}
	return n
}

// TestCurrentProvenComplete: against a real ledger with a committed map
// root and statements both under the root and in the log's tail after it,
// a front that omits, substitutes or reorders current statements, forges a
// map proof, strips the map, or hides the current endpoint and drops a
// page entry, is caught (ErrIncomplete or ErrBadProof); the honest answer
// passes. Without the map (and the tail scan) every one of these lies
// verified: each entry the front returns is genuine and proven included.
func TestCurrentProvenComplete(t *testing.T) {
	srv := ledgertest.Start(t, ledgertest.WithConfig(fastMap))
	front := newLyingFront(t, srv.URL)
	direct := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	d := digest("revoked-image")
	alice, bob := notarizetest.NewSigner(t), notarizetest.NewSigner(t)
	ka, kb := notarizetest.KeyID(t, alice), notarizetest.KeyID(t, bob)
	trusted := submit(t, direct, notarizetest.Entry(t, alice, d, notarize.StatusTrusted, t0))
	untrusted := submit(t, direct, notarizetest.Entry(t, alice, d, notarize.StatusUntrusted, t0.Add(time.Minute)))
	submit(t, direct, notarizetest.Entry(t, bob, d, notarize.StatusTrusted, t0))
	waitMapRoot(t, srv.URL, d, ka, untrusted.Index+1)

	check := func(t *testing.T, name string, wantErr bool, rewrite func(*api.LookupResponse)) {
		t.Helper()
		if rewrite != nil {
			front.rewrite.Store(&rewrite)
			defer front.rewrite.Store(nil)
		}
		c := newClient(t, front.URL, t.TempDir(), srv.VerifierKey)
		res, err := c.Current(t.Context(), d, ka, kb)
		switch {
		case wantErr && err == nil:
			t.Fatalf("%s: the lie verified: %+v", name, res.Records)
		case wantErr && !errors.Is(err, ledgerclient.ErrIncomplete) && !errors.Is(err, ledgerclient.ErrBadProof):
			t.Fatalf("%s: %v, want ErrIncomplete or ErrBadProof", name, err)
		case !wantErr && err != nil:
			t.Fatalf("%s: %v", name, err)
		}
	}
	check(t, "honest, under the root", false, nil)

	// A front has every genuine entry with its proof: take alice's older
	// "trusted" from a paginated lookup.
	page, err := direct.Lookup(t.Context(), d, ka)
	if err != nil || len(page.Records) != 2 {
		t.Fatalf("lookup: %v %d", err, len(page.Records))
	}
	older := lookupEntry(t, srv.URL, d, ka, trusted.Index)

	check(t, "omit alice's untrust", true, func(r *api.LookupResponse) {
		r.Entries = dropEntry(r.Entries, untrusted.Index)
	})
	check(t, "substitute alice's older trust", true, func(r *api.LookupResponse) {
		r.Entries = append(dropEntry(r.Entries, untrusted.Index), older)
	})
	check(t, "omit every statement", true, func(r *api.LookupResponse) { r.Entries = nil })
	check(t, "strip the map and omit", true, func(r *api.LookupResponse) {
		r.Map = nil
		r.Entries = dropEntry(r.Entries, untrusted.Index)
	})
	check(t, "swap the keys' map proofs", true, func(r *api.LookupResponse) {
		r.Map.Keys[0], r.Map.Keys[1] = r.Map.Keys[1], r.Map.Keys[0]
		r.Map.Keys[0].KeyID, r.Map.Keys[1].KeyID = r.Map.Keys[1].KeyID, r.Map.Keys[0].KeyID
	})
	check(t, "a forged absence proof", true, func(r *api.LookupResponse) {
		for i := range r.Map.Keys {
			if r.Map.Keys[i].KeyID == ka {
				r.Map.Keys[i] = api.KeyMapProof{KeyID: ka}
			}
		}
		r.Entries = dropEntry(r.Entries, untrusted.Index)
	})
	check(t, "a changed map value", true, func(r *api.LookupResponse) {
		for i := range r.Map.Keys {
			if v := r.Map.Keys[i].Value; v != nil {
				v[len(v)-1] ^= 1
			}
		}
	})
	check(t, "a map root entry from elsewhere", true, func(r *api.LookupResponse) {
		r.Map.RootEntry = bytes.Replace(r.Map.RootEntry, []byte("map root v1\n"), []byte("map root v1\nx"), 1)
	})
	// Without the map the client reads the whole log: honest bundles pass,
	// an altered one does not hash to the checkpoint.
	check(t, "strip the map", false, func(r *api.LookupResponse) { r.Map = nil })
	front.flipBundles.Store(true)
	check(t, "strip the map and alter a bundle", true, func(r *api.LookupResponse) { r.Map = nil })
	front.flipBundles.Store(false)
	check(t, "reordered entries", false, func(r *api.LookupResponse) {
		// Order alone changes nothing the client believes: it sorts.
		for i, j := 0, len(r.Entries)-1; i < j; i, j = i+1, j-1 {
			r.Entries[i], r.Entries[j] = r.Entries[j], r.Entries[i]
		}
	})

	// A statement in the tail, after the newest root: bob revokes.
	bobUntrust := submit(t, direct, notarizetest.Entry(t, bob, d, notarize.StatusUntrusted, t0.Add(time.Hour)))
	check(t, "honest, in the tail", false, nil)
	check(t, "omit bob's untrust in the tail", true, func(r *api.LookupResponse) {
		r.Entries = dropEntry(r.Entries, bobUntrust.Index)
	})

	// A front that hides the current endpoint (as an older ledger) and
	// drops the untrust from the paginated lookup.
	front.hideCurrent.Store(true)
	front.dropIndex.Store(int64(untrusted.Index))
	c := newClient(t, front.URL, t.TempDir(), srv.VerifierKey)
	if res, err := c.Current(t.Context(), d, ka); !errors.Is(err, ledgerclient.ErrIncomplete) {
		t.Fatalf("pages without the untrust: %v %+v", err, res)
	}
	front.dropIndex.Store(-1)
	res, err := c.Current(t.Context(), d, ka)
	if err != nil || len(res.Records) != 1 || res.Records[0].Index != untrusted.Index {
		t.Fatalf("honest pages: %v %+v", err, res)
	}
}

// lookupEntry fetches entry idx (by keyID, about d) with its inclusion
// proof from a paginated lookup of the ledger at url.
func lookupEntry(t *testing.T, url string, d notarize.Digest, keyID string, idx uint64) api.LookupEntry {
	t.Helper()
	resp, err := http.Get(url + api.PathDigests + string(d) + "?keyid=" + keyID)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lr api.LookupResponse
	if err := json.NewDecoder(resp.Body).Decode(&lr); err != nil {
		t.Fatal(err)
	}
	for _, e := range lr.Entries {
		if e.Index == idx {
			return e
		}
	}
	t.Fatalf("entry %d not in the lookup", idx)
	return api.LookupEntry{}
}

// TestLookupProvenComplete: a paginated lookup by key IDs (what inspect
// shows) is proven complete too: a front that drops any of the key's
// statements, before the map root (the chain and count differ) or after it
// (the tail differs), is caught; the honest walk passes.
func TestLookupProvenComplete(t *testing.T) {
	srv := ledgertest.Start(t, ledgertest.WithConfig(fastMap))
	front := newLyingFront(t, srv.URL)
	direct := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	d := digest("history")
	alice := notarizetest.NewSigner(t)
	ka := notarizetest.KeyID(t, alice)
	first := submit(t, direct, notarizetest.Entry(t, alice, d, notarize.StatusTrusted, t0))
	second := submit(t, direct, notarizetest.Entry(t, alice, d, notarize.StatusUntrusted, t0.Add(time.Minute)))
	waitMapRoot(t, srv.URL, d, ka, second.Index+1)
	third := submit(t, direct, notarizetest.Entry(t, alice, d, notarize.StatusTrusted, t0.Add(2*time.Minute)))

	c := newClient(t, front.URL, t.TempDir(), srv.VerifierKey)
	res, err := c.Lookup(t.Context(), d, ka)
	if err != nil || len(res.Records) != 3 {
		t.Fatalf("honest walk: %v %+v", err, res)
	}
	for _, idx := range []uint64{first.Index, second.Index, third.Index} {
		front.dropIndex.Store(int64(idx))
		if _, err := c.Lookup(t.Context(), d, ka); !errors.Is(err, ledgerclient.ErrIncomplete) {
			t.Fatalf("entry %d dropped from the pages: %v", idx, err)
		}
	}
}

// TestCurrentLongTail: a tail of several entry bundles is read, every entry
// proven, and a revocation in its last bundle still counts: a front that
// omits it is caught, the honest answer returns it.
func TestCurrentLongTail(t *testing.T) {
	srv := ledgertest.Start(t, ledgertest.WithConfig(func(c *ledger.Config) { c.MapCommitEntries = 1 << 20 }))
	front := newLyingFront(t, srv.URL)
	direct := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	d := digest("long-tail")
	alice, other := notarizetest.NewSigner(t), notarizetest.NewSigner(t)
	ka := notarizetest.KeyID(t, alice)
	submit(t, direct, notarizetest.Entry(t, alice, d, notarize.StatusTrusted, t0))
	var wg sync.WaitGroup
	errs := make(chan error, 1300)
	sem := make(chan struct{}, 128) // batched by the ledger: ~one integration per batch
	for i := range 1300 {
		e := notarizetest.Entry(t, other, digest(fmt.Sprint("filler-", i)), notarize.StatusTrusted, t0)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := srv.Ledger().Submit(t.Context(), e); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	revoked := submit(t, direct, notarizetest.Entry(t, alice, d, notarize.StatusUntrusted, t0.Add(time.Minute)))
	c := newClient(t, front.URL, t.TempDir(), srv.VerifierKey)
	res, err := c.Current(t.Context(), d, ka)
	if err != nil || len(res.Records) != 1 || res.Records[0].Index != revoked.Index {
		t.Fatalf("honest answer over a %d-entry tail: %v %+v", revoked.Index, err, res)
	}
	omit := func(r *api.LookupResponse) { r.Entries = dropEntry(r.Entries, revoked.Index) }
	front.rewrite.Store(&omit)
	defer front.rewrite.Store(nil)
	c = newClient(t, front.URL, t.TempDir(), srv.VerifierKey)
	if res, err := c.Current(t.Context(), d, ka); !errors.Is(err, ledgerclient.ErrIncomplete) {
		t.Fatalf("a revocation omitted in the tail's last bundle: %v %+v", err, res)
	}
}

// TestLookupTailDripBounded: a front that drips the tail's entry bundles a
// byte at a time cannot hang a key-filtered lookup whose context has no
// deadline: the completeness step (reading the tail after the map root)
// runs under the client's timeout like the pages before it.
func TestLookupTailDripBounded(t *testing.T) {
	srv := ledgertest.Start(t, ledgertest.WithConfig(func(c *ledger.Config) { c.MapCommitEntries = 1 << 20 }))
	front := newLyingFront(t, srv.URL)
	direct := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	d := digest("drip")
	alice := notarizetest.NewSigner(t)
	submit(t, direct, notarizetest.Entry(t, alice, d, notarize.StatusTrusted, t0))
	c, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: front.URL, Home: t.TempDir(), VerifierKey: srv.VerifierKey, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	front.dripBundles.Store(true)
	done := make(chan error, 1)
	// No deadline (the case under test); cancelled only when the test
	// ends, before the front closes, so a failure does not hang it.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		_, err := c.Lookup(ctx, d, notarizetest.KeyID(t, alice))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a lookup whose tail was never served completed")
		}
	case <-time.After(45 * time.Second):
		t.Fatal("a front dripping the tail's bundles held a lookup past the client's 2 s timeout for 45 s")
	}
}
