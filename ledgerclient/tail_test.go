package ledgerclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/api/layout"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// tailLog is a fake log of n filler leaves (no statements) and a client
// of it.
func tailLog(t *testing.T, n int) (*fakeOps, *Client) {
	t.Helper()
	s, vkey := newNoteKey(t, testOrigin)
	f := newFakeOps(t, newFakeLog(s, vkey))
	f.grow(n)
	return f, testClient(t, f, t.TempDir(), vkey)
}

// cpAt is the fake log's checkpoint at size (only its size and root).
func cpAt(f *fakeOps, size uint64) Checkpoint {
	return Checkpoint{Origin: testOrigin, Size: size, Hash: f.log.tree.HashAt(size)}
}

// TestReadTailFromTiles: the tail [from, size) is proven with the compact
// range of [0, start) read from the hash tiles above level 0 (one per
// tile level, each fetched once) and the bundles' own leaf hashes, for a
// tail that starts mid-bundle or on a bundle's first entry, in a tree with
// full and partial tiles at levels 1 and 2.
func TestReadTailFromTiles(t *testing.T) {
	f, c := tailLog(t, 70000)
	for _, tc := range []struct{ size, from uint64 }{
		{70000, 69999}, {70000, 69950}, {70000, 69888}, {70000, 68000},
		{69888, 66000}, {65536, 65535}, {65536, 65280}, {65537, 65536},
		{1000, 0}, {1000, 999}, {256, 1}, {257, 256}, {70000, 0xff00},
	} {
		f.mu.Lock()
		f.tileCalls = 0
		f.mu.Unlock()
		c := testClient(t, f, t.TempDir(), c.VerifierKey()) // an empty fetch cache
		if _, err := c.readTail(t.Context(), cpAt(f, tc.size), tc.from, tailAsk{d: digestA, asked: func(string) bool { return true }}, nil); err != nil {
			t.Fatalf("size %d from %d: %v", tc.size, tc.from, err)
		}
		start := tc.from / layout.EntryBundleWidth * layout.EntryBundleWidth
		if want := len(leftTiles(start, tc.size)); f.tileCalls != want {
			t.Errorf("size %d from %d: %d tiles fetched, want %d (one per level above 0)", tc.size, tc.from, f.tileCalls, want)
		}
	}
}

// TestReadTailLies: a ledger (or a front) that serves a bundle for another
// index, twice, short, padded or with its entries reordered, or a tile that
// lies or is short, fails the tail's read with ErrBadProof, whatever order
// the answers arrive in; a full bundle or tile standing for a partial one
// that is gone (Tessera collects them) is read as its first entries.
func TestReadTailLies(t *testing.T) {
	// The tail: bundles 267 (from mid-bundle) to 273 (partial); tiles 1/1
	// and 2/0 (partial; the log holds the full 1/1 too).
	const logSize, size, from = 2 << 16, 69950, 68500
	f, c := tailLog(t, logSize)
	cp := cpAt(f, size)
	first, last := uint64(from/layout.EntryBundleWidth), uint64((size-1)/layout.EntryBundleWidth)
	bundle := func(index uint64, p uint8) []byte {
		b, err := f.entryBundle(index, p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	entries := func(b []byte) [][]byte { // split a bundle back into its entries
		var es [][]byte
		for len(b) >= 2 {
			n := int(b[0])<<8 | int(b[1])
			es = append(es, b[2:2+n])
			b = b[2+n:]
		}
		return es
	}
	join := func(es [][]byte) []byte {
		var b []byte
		for _, e := range es {
			b = append(b, byte(len(e)>>8), byte(len(e)))
			b = append(b, e...)
		}
		return b
	}
	type bundleLie = func(index uint64, p uint8, b []byte) []byte
	type tileLie = func(level, index uint64, p uint8, b []byte) []byte
	for _, tc := range []struct {
		name   string
		bundle bundleLie
		tile   tileLie
		ok     bool
	}{
		{name: "honest", ok: true},
		{name: "a full bundle for the partial one", ok: true, bundle: func(index uint64, p uint8, b []byte) []byte {
			if p != 0 {
				return bundle(index, 0)
			}
			return b
		}},
		{name: "a full tile for a partial one", ok: true, tile: func(level, index uint64, p uint8, b []byte) []byte {
			if full, err := f.log.tile(level, index, 0); err == nil {
				return full
			}
			return b
		}},
		{name: "bundles swapped", bundle: func(index uint64, p uint8, b []byte) []byte {
			switch index {
			case first + 1:
				return bundle(first+2, 0)
			case first + 2:
				return bundle(first+1, 0)
			}
			return b
		}},
		{name: "a bundle served twice", bundle: func(index uint64, p uint8, b []byte) []byte {
			if index == first+3 {
				return bundle(first+2, 0)
			}
			return b
		}},
		{name: "the first bundle for another", bundle: func(index uint64, p uint8, b []byte) []byte {
			if index == first {
				return bundle(first-1, 0)
			}
			return b
		}},
		{name: "a short partial bundle", bundle: func(index uint64, p uint8, b []byte) []byte {
			if index == last {
				es := entries(b)
				return join(es[:len(es)-1])
			}
			return b
		}},
		{name: "a padded partial bundle", bundle: func(index uint64, p uint8, b []byte) []byte {
			if index == last {
				return join(append(entries(b), []byte("more")))
			}
			return b
		}},
		{name: "a full bundle whose first entries differ", bundle: func(index uint64, p uint8, b []byte) []byte {
			if p != 0 {
				es := entries(bundle(index-1, 0))
				return join(es)
			}
			return b
		}},
		{name: "entries reordered in a bundle", bundle: func(index uint64, p uint8, b []byte) []byte {
			if index == first+1 {
				es := entries(b)
				es[3], es[4] = es[4], es[3]
				return join(es)
			}
			return b
		}},
		{name: "an entry before from altered", bundle: func(index uint64, p uint8, b []byte) []byte {
			if index == first {
				es := entries(b)
				es[0] = []byte("another")
				return join(es)
			}
			return b
		}},
		{name: "a tile hash altered", tile: func(level, index uint64, p uint8, b []byte) []byte {
			b = bytes.Clone(b)
			b[0] ^= 1
			return b
		}},
		{name: "a short tile", tile: func(level, index uint64, p uint8, b []byte) []byte {
			return b[:len(b)-32]
		}},
		{name: "a tile of another index", tile: func(level, index uint64, p uint8, b []byte) []byte {
			if level == 1 && index > 0 {
				other, err := f.log.tile(level, index-1, 0)
				if err != nil {
					t.Fatal(err)
				}
				return other[:len(b)]
			}
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testClient(t, f, t.TempDir(), c.VerifierKey()) // an empty fetch cache
			f.tileHook, f.bundleHook = nil, nil
			if tc.tile != nil {
				f.tileHook = tc.tile
			}
			// Bundles arrive in reverse order, each checked as it comes.
			f.bundleHook = func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error) {
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(time.Duration(last-index) * 5 * time.Millisecond):
				}
				if err == nil && tc.bundle != nil {
					b = tc.bundle(index, p, b)
				}
				return b, err
			}
			_, err := c.readTail(t.Context(), cp, from, tailAsk{d: digestA, asked: func(string) bool { return true }}, nil)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("honest tail: %v", err)
			case !tc.ok && !errors.Is(err, ErrBadProof):
				t.Fatalf("the lie: %v, want ErrBadProof", err)
			}
		})
	}
}

// TestReadTailFetchesAtOnce: every bundle of a tail of several bundles is
// asked for before any is answered (a front that answers only once all
// are asked for still completes the read), so a busy ledger's latency is
// paid once, not once per few bundles.
func TestReadTailFetchesAtOnce(t *testing.T) {
	const size, from = 3000, 3000 - 1400 // six bundles, the last partial
	f, c := tailLog(t, size)
	want := int((size-1)/layout.EntryBundleWidth - from/layout.EntryBundleWidth + 1)
	var mu sync.Mutex
	asked := 0
	all := make(chan struct{})
	f.bundleHook = func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error) {
		mu.Lock()
		if asked++; asked == want {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
			return b, err
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Second):
			return nil, fmt.Errorf("bundle %d: the other bundles were not asked for meanwhile", index)
		}
	}
	if _, err := c.readTail(t.Context(), cpAt(f, size), from, tailAsk{d: digestA, asked: func(string) bool { return true }}, nil); err != nil {
		t.Fatal(err)
	}
}

// TestCurrentTailOutOfOrder: the tail's statements count in log order
// whatever order their bundles arrive in. Two statements by one key dated
// alike, in two bundles, the later in the log is current (ties broken by log
// index): with the later bundle arriving first, the honest answer still
// verifies, and a front giving the earlier one as current is ErrIncomplete.
func TestCurrentTailOutOfOrder(t *testing.T) {
	f, c, _ := pinnedClient(t, 3)
	alice := newEntrySigner(t)
	ka := notarizetest.KeyID(t, alice)
	at := t0.Add(time.Hour)
	appendStatements(t, f, alice, digestA, notarize.StatusTrusted, t0, 1)
	f.grow(300)
	early := appendStatements(t, f, alice, digestA, notarize.StatusUntrusted, at, 1)[0]
	f.grow(300)
	late := appendStatements(t, f, alice, digestA, notarize.StatusTrusted, at, 1)[0]
	f.grow(10)
	if early/layout.EntryBundleWidth == late/layout.EntryBundleWidth {
		t.Fatal("the two statements share a bundle")
	}
	lastBundle := (f.log.size() - 1) / layout.EntryBundleWidth
	f.bundleHook = func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error) {
		select { // the later bundles first
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Duration(lastBundle-index) * 30 * time.Millisecond):
		}
		return b, err
	}
	res, err := c.Current(t.Context(), digestA, ka)
	if err != nil || len(res.Records) != 1 || res.Records[0].Index != late {
		t.Fatalf("honest answer: %v %+v, want entry %d", err, res, late)
	}
	f.currentHook = func(r *api.LookupResponse) { r.Entries = []api.LookupEntry{f.proven(early)} }
	if res, err := c.Current(t.Context(), digestA, ka); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("the earlier of two statements dated alike given as current: %v %+v", err, res)
	}
}

// TestCurrentForkDespiteAGoodAnswer: the consistency proof from the stored
// checkpoint runs beside the answer's proofs and the tail's read, and the
// answer counts only once it holds: a ledger that forked its log after the
// client stored a checkpoint, and answers honestly from the forked log
// (entries, proofs, bundles and tiles all of it), is a *ForkError with no
// result.
func TestCurrentForkDespiteAGoodAnswer(t *testing.T) {
	f, c, _ := pinnedClient(t, 3)
	alice := newEntrySigner(t)
	ka := notarizetest.KeyID(t, alice)
	appendStatements(t, f, alice, digestA, notarize.StatusTrusted, t0, 1)
	f.grow(10)
	if _, err := c.Current(t.Context(), digestA, ka); err != nil {
		t.Fatal(err)
	}
	fork := newFakeLog(f.log.signer, f.log.vkey)
	fork.add([]byte("leaf 0"), []byte("another leaf 1"))
	f.setLog(fork)
	appendStatements(t, f, alice, digestA, notarize.StatusTrusted, t0, 1)
	f.grow(300)
	res, err := c.Current(t.Context(), digestA, ka)
	var fe *ForkError
	if !errors.As(err, &fe) || res != nil {
		t.Fatalf("an honest answer from a forked log: %v %+v, want a *ForkError and no result", err, res)
	}
}
