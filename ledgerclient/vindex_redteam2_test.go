package ledgerclient_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// currentAnswer fetches the ledger's current-statement answer for d by
// keyIDs (one key here) straight from the ledger at url.
func currentAnswer(t *testing.T, url string, d notarize.Digest, keyID string) api.LookupResponse {
	t.Helper()
	resp, err := http.Get(url + api.PathDigests + string(d) + api.PathCurrentSuffix + "?keyid=" + keyID)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lr api.LookupResponse
	if err := json.NewDecoder(resp.Body).Decode(&lr); err != nil {
		t.Fatal(err)
	}
	return lr
}

// TestRedteam2CurrentMapLies: lies about the verifiable index that the
// tests of issue 11 do not tell — duplicate key proofs, a genuine map proof
// for another digest under the same root, the root moved to another log
// index, a root entry (with its proof) from another ledger, a root without
// its index, malformed and oversized proofs, an entry by a key that was not
// asked — each with alice's untrust left out: every one is refused with
// ErrIncomplete or ErrBadProof, never verified, never a panic.
func TestRedteam2CurrentMapLies(t *testing.T) {
	srv := ledgertest.Start(t, ledgertest.WithConfig(fastMap))
	other := ledgertest.Start(t, ledgertest.WithConfig(fastMap), ledgertest.WithOrigin(srv.Origin))
	front := newLyingFront(t, srv.URL)
	direct := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	d, d2 := digest("redteam2-revoked"), digest("redteam2-other")
	alice, bob, mallory := notarizetest.NewSigner(t), notarizetest.NewSigner(t), notarizetest.NewSigner(t)
	ka, kb, km := notarizetest.KeyID(t, alice), notarizetest.KeyID(t, bob), notarizetest.KeyID(t, mallory)
	submit(t, direct, notarizetest.Entry(t, alice, d, notarize.StatusTrusted, t0))
	untrusted := submit(t, direct, notarizetest.Entry(t, alice, d, notarize.StatusUntrusted, t0.Add(time.Minute)))
	submit(t, direct, notarizetest.Entry(t, bob, d, notarize.StatusTrusted, t0))
	submit(t, direct, notarizetest.Entry(t, alice, d2, notarize.StatusTrusted, t0))
	mal := submit(t, direct, notarizetest.Entry(t, mallory, d, notarize.StatusTrusted, t0.Add(time.Hour)))
	waitMapRoot(t, srv.URL, d, ka, mal.Index+1)

	// The other ledger (same origin, its own key) holds alice's trust.
	od := newClient(t, other.URL, t.TempDir(), other.VerifierKey)
	oe := submit(t, od, notarizetest.Entry(t, alice, d, notarize.StatusTrusted, t0))
	waitMapRoot(t, other.URL, d, ka, oe.Index+1)

	check := func(t *testing.T, name string, rewrite func(*api.LookupResponse)) {
		t.Helper()
		front.rewrite.Store(&rewrite)
		defer front.rewrite.Store(nil)
		c := newClient(t, front.URL, t.TempDir(), srv.VerifierKey)
		var (
			res *ledgerclient.LookupResult
			err error
		)
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("BYPASS: %s: the client panicked: %v", name, p)
				}
			}()
			res, err = c.Current(t.Context(), d, ka, kb)
		}()
		switch {
		case err == nil:
			t.Fatalf("BYPASS: %s: the lie verified: %+v", name, res.Records)
		case !errors.Is(err, ledgerclient.ErrIncomplete) && !errors.Is(err, ledgerclient.ErrBadProof):
			t.Fatalf("%s: %v, want ErrIncomplete or ErrBadProof", name, err)
		}
	}
	omit := func(r *api.LookupResponse) { r.Entries = dropEntry(r.Entries, untrusted.Index) }
	keyProof := func(r *api.LookupResponse, k string) *api.KeyMapProof {
		for i := range r.Map.Keys {
			if r.Map.Keys[i].KeyID == k {
				return &r.Map.Keys[i]
			}
		}
		t.Fatalf("no map proof for %s", k)
		return nil
	}

	c := newClient(t, front.URL, t.TempDir(), srv.VerifierKey)
	if res, err := c.Current(t.Context(), d, ka, kb); err != nil || len(res.Records) != 2 {
		t.Fatalf("honest answer: %v", err)
	}

	check(t, "bob's proof twice, alice's left out", func(r *api.LookupResponse) {
		omit(r)
		p := *keyProof(r, kb)
		r.Map.Keys = []api.KeyMapProof{p, p}
	})
	check(t, "alice's proof twice as alice and bob", func(r *api.LookupResponse) {
		omit(r)
		p := *keyProof(r, ka)
		r.Map.Keys = append(r.Map.Keys, p)
	})
	check(t, "alice's map proof for another digest", func(r *api.LookupResponse) {
		omit(r)
		o := currentAnswer(t, srv.URL, d2, ka)
		if o.Map == nil || len(o.Map.Keys) != 1 || *o.Map.RootIndex != *r.Map.RootIndex {
			t.Fatalf("the other digest's answer is under another root: %+v", o.Map)
		}
		*keyProof(r, ka) = o.Map.Keys[0]
	})
	check(t, "the root entry moved one index back", func(r *api.LookupResponse) {
		omit(r)
		i := *r.Map.RootIndex - 1
		r.Map.RootIndex = &i
	})
	check(t, "another ledger's root entry and proof", func(r *api.LookupResponse) {
		omit(r)
		o := currentAnswer(t, other.URL, d, ka)
		r.Map.RootIndex, r.Map.RootEntry, r.Map.RootInclusionProof = o.Map.RootIndex, o.Map.RootEntry, o.Map.RootInclusionProof
		r.Map.Keys = []api.KeyMapProof{o.Map.Keys[0], *keyProof(r, kb)}
	})
	check(t, "the map without its root index", func(r *api.LookupResponse) {
		// Without a root the tail is the whole log, read by the client.
		omit(r)
		r.Map.RootIndex = nil
	})
	check(t, "mallory's trust given as alice's current", func(r *api.LookupResponse) {
		o := currentAnswer(t, srv.URL, d, km)
		omit(r)
		r.Entries = append(r.Entries, o.Entries...)
	})
	check(t, "a proof of 257 siblings", func(r *api.LookupResponse) {
		omit(r)
		p := keyProof(r, ka)
		p.Depth = 256
		p.Bitmap = make([]byte, 33)
		p.Siblings = make([][]byte, 257)
		for i := range p.Siblings {
			p.Siblings[i] = make([]byte, 32)
		}
	})
	check(t, "a proof of negative depth", func(r *api.LookupResponse) {
		omit(r)
		p := keyProof(r, ka)
		p.Depth, p.Bitmap, p.Siblings, p.Value = -8, nil, nil, nil
	})
	check(t, "a proof deeper than a key", func(r *api.LookupResponse) {
		omit(r)
		p := keyProof(r, ka)
		p.Depth, p.Bitmap = 1<<20, make([]byte, 1<<17)
	})
	check(t, "a leaf key of 31 bytes", func(r *api.LookupResponse) {
		omit(r)
		p := keyProof(r, ka)
		p.LeafKey = p.LeafKey[:len(p.LeafKey)-1]
	})
	check(t, "a sibling of 33 bytes", func(r *api.LookupResponse) {
		omit(r)
		p := keyProof(r, ka)
		if len(p.Siblings) == 0 {
			p.Siblings = [][]byte{make([]byte, 33)}
			return
		}
		p.Siblings[0] = append(p.Siblings[0], 0)
	})
	check(t, "alice's value with bob's proof path", func(r *api.LookupResponse) {
		omit(r)
		pa, pb := keyProof(r, ka), keyProof(r, kb)
		pa.Depth, pa.Bitmap, pa.Siblings, pa.LeafKey, pa.LeafValueHash = pb.Depth, pb.Bitmap, pb.Siblings, pb.LeafKey, pb.LeafValueHash
	})
}
