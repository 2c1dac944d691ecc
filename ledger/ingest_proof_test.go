package ledger

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/transparency-dev/tessera/client"
)

// submitMany submits n new statements at once through the Go API.
func submitMany(t *testing.T, l *Ledger, n int) {
	t.Helper()
	s := newTestSigner(t)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		e := s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())
		wg.Go(func() {
			if _, err := l.Submit(t.Context(), e); err != nil {
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

// TestProofNodesMatchTessera: the proofs built from remembered subtree
// hashes are Tessera's own (client.ProofBuilder) for every leaf of trees of
// many sizes, asked in an order that moves between sizes (partial tiles
// read at one size, complete ones at another, tile levels 0 and 1), with
// one proofNodes for all of them.
func TestProofNodesMatchTessera(t *testing.T) {
	t.Parallel()
	tl := startLedger(t, Config{})
	var sizes []uint64 // sizes the log had a checkpoint at: their partial tiles were written
	for _, n := range []int{1, 2, 200, 60, 300, 150} {
		submitMany(t, tl.Ledger, n)
		_, cp, err := tl.latestCheckpoint(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, cp.Size)
	}
	if last := sizes[len(sizes)-1]; last < 700 {
		t.Fatalf("log size %d, want at least 700", last)
	}
	// Between sizes, back and forth, levels 0 and 1 of the tiles, full
	// tiles (256, 512) and partial ones.
	sizes = append([]uint64{sizes[len(sizes)-1], 256, sizes[2]}, append(sizes, 512, sizes[3])...)
	pn := newProofNodes(tl.reader.ReadTile)
	for _, size := range sizes {
		pb, err := client.NewProofBuilder(t.Context(), size, tl.reader.ReadTile)
		if err != nil {
			t.Fatal(err)
		}
		for i := uint64(0); i < size; i++ {
			want, err := pb.InclusionProof(t.Context(), i)
			if err != nil {
				t.Fatalf("tessera proof of %d in %d: %v", i, size, err)
			}
			got, err := pn.inclusion(t.Context(), i, size)
			if err != nil {
				t.Fatalf("proof of %d in %d: %v", i, size, err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("proof of %d in %d:\n got %x\nwant %x", i, size, got, want)
			}
		}
	}
	if _, err := pn.inclusion(t.Context(), sizes[0], sizes[0]); err == nil {
		t.Fatal("a proof for a leaf outside the tree was built")
	}
}

// TestReceiptProofChecked: a receipt's inclusion proof is checked against
// its checkpoint before it is handed out. With every remembered subtree
// hash corrupted (a misread tile), Submit forgets them, builds the proof
// again from the tiles and answers with one that verifies, instead of a
// receipt whose proof does not.
func TestReceiptProofChecked(t *testing.T) {
	tl := startLedger(t, Config{})
	submitMany(t, tl.Ledger, 40)
	corruptProofNodes(t, tl)
	s := newTestSigner(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	rec, err := tl.Submit(ctx, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := verifyCheckpoint(tl.VerifierKey(), tl.Origin(), []byte(rec.Checkpoint))
	if err != nil {
		t.Fatal(err)
	}
	checkInclusion(t, cp, rec.Index, rec.Entry, rec.InclusionProof)
}

// TestLookupProofChecked: a lookup's inclusion proofs come from the same
// remembered subtree hashes as receipts' and are checked the same way:
// with every remembered node corrupted (a misread tile), a lookup still
// answers proofs that verify, instead of serving the bad node to every
// client until a receipt happens to touch it.
func TestLookupProofChecked(t *testing.T) {
	tl := startLedger(t, Config{})
	s := newTestSigner(t)
	d := randomDigest(t)
	tl.submit(t, s.sign(t, d, notarize.StatusTrusted, time.Now().Add(-time.Minute)), http.StatusCreated)
	submitMany(t, tl.Ledger, 40)
	corruptProofNodes(t, tl)
	resp, err := tl.Lookup(t.Context(), d, LookupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := verifyCheckpoint(tl.VerifierKey(), tl.Origin(), []byte(resp.Checkpoint))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Entries) != 1 {
		t.Fatalf("%d entries, want 1", len(resp.Entries))
	}
	checkInclusion(t, cp, resp.Entries[0].Index, resp.Entries[0].Entry, resp.Entries[0].InclusionProof)
}

// TestMapRootProofChecked: the map root's inclusion proof in a current
// lookup comes from the same remembered subtree hashes and is checked the
// same way.
func TestMapRootProofChecked(t *testing.T) {
	tl := startLedger(t, Config{MapCommitEntries: 1, MapCommitInterval: 50 * time.Millisecond})
	s := newTestSigner(t)
	d := randomDigest(t)
	tl.submit(t, s.sign(t, d, notarize.StatusTrusted, time.Now().Add(-time.Minute)), http.StatusCreated)
	submitMany(t, tl.Ledger, 40)
	waitMapCovers(t, tl, 41)
	waitRootIndexed(t, tl)
	corruptProofNodes(t, tl)
	// A key with no statement about d: the answer has no entry, so the
	// root's proof is the only one built (no entry's check resets first).
	resp, err := tl.Current(t.Context(), d, []string{newTestSigner(t).keyID})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := verifyCheckpoint(tl.VerifierKey(), tl.Origin(), []byte(resp.Checkpoint))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Entries) != 0 || resp.Map == nil || resp.Map.RootIndex == nil {
		t.Fatalf("no map root in the answer: %+v", resp.Map)
	}
	checkInclusion(t, cp, *resp.Map.RootIndex, resp.Map.RootEntry, resp.Map.RootInclusionProof)
}

// corruptProofNodes overwrites every subtree hash the ledger remembers, as
// a misread tile would, and fails if it remembers none.
func corruptProofNodes(t *testing.T, tl *testLedger) {
	t.Helper()
	tl.proofs.mu.Lock()
	defer tl.proofs.mu.Unlock()
	if len(tl.proofs.nodes) == 0 {
		t.Fatal("no subtree hashes remembered")
	}
	for id := range tl.proofs.nodes {
		tl.proofs.nodes[id] = bytes.Repeat([]byte{0xee}, 32)
	}
}

// TestKeyLookupProofChecked: a key lookup's inclusion proofs are checked
// the same way.
func TestKeyLookupProofChecked(t *testing.T) {
	tl := startLedger(t, Config{})
	s := newTestSigner(t)
	tl.submit(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now().Add(-time.Minute)), http.StatusCreated)
	submitMany(t, tl.Ledger, 40)
	corruptProofNodes(t, tl)
	resp, err := tl.KeyDigests(t.Context(), s.keyID, KeyDigestsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := verifyCheckpoint(tl.VerifierKey(), tl.Origin(), []byte(resp.Checkpoint))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Entries) != 1 {
		t.Fatalf("%d entries, want 1", len(resp.Entries))
	}
	checkInclusion(t, cp, resp.Entries[0].Index, resp.Entries[0].Entry, resp.Entries[0].InclusionProof)
}
