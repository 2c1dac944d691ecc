package ledgerclient

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/api/layout"

	"github.com/notarize/docker-notarize/notarize"
)

// followOps serves entry bundles of the fake log, with a hook to lie.
type followOps struct {
	*fakeOps
	bundleHook func(idx uint64, entries [][]byte) [][]byte
}

func (f *followOps) ReadEntryBundle(_ context.Context, idx uint64, p uint8) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := uint64(p)
	if n == 0 {
		n = layout.EntryBundleWidth
	}
	start := idx * layout.EntryBundleWidth
	if start+n > f.log.size() {
		return nil, fmt.Errorf("bundle %d.p/%d: %w", idx, p, os.ErrNotExist)
	}
	entries := f.log.leaves[start : start+n]
	if f.bundleHook != nil {
		entries = f.bundleHook(idx, append([][]byte(nil), entries...))
	}
	var b []byte
	for _, e := range entries {
		b = binary.BigEndian.AppendUint16(b, uint16(len(e)))
		b = append(b, e...)
	}
	return b, nil
}

// followLog returns a fake ledger of n entries: signed statements, with a
// leaf that is not an entry at index 3 and one whose signature does not
// verify at index 5, and a client of it.
func followLog(t *testing.T, n int) (*followOps, *Client) {
	t.Helper()
	return followLogOf(t, makeLeaves(t, 0, n))
}

func followLogOf(t *testing.T, leaves [][]byte) (*followOps, *Client) {
	t.Helper()
	s, vkey := newNoteKey(t, testOrigin)
	l := newFakeLog(s, vkey)
	l.add(leaves...)
	f := &followOps{fakeOps: newFakeOps(t, l)}
	c, err := newClient(t.Context(), Config{URL: "https://ledger.test", Home: t.TempDir(), VerifierKey: vkey}.withDefaults(), "https://ledger.test", f)
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

func appendEntries(t *testing.T, l *fakeLog, n int) {
	t.Helper()
	l.add(makeLeaves(t, l.size(), n)...)
}

// makeLeaves returns n log leaves for indexes start, start+1, …: signed
// statements about DigestOf("<index>"), except a leaf that is not an entry
// at index 3 and an entry whose signature does not verify at index 5.
func makeLeaves(t *testing.T, start uint64, n int) [][]byte {
	t.Helper()
	sv := newEntrySigner(t)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var leaves [][]byte
	for i := range n {
		idx := start + uint64(i)
		switch {
		case idx == 3:
			leaves = append(leaves, []byte("not an entry"))
		case idx == 5:
			e := signEntry(t, sv, notarize.DigestOf(fmt.Appendf(nil, "%d", idx)), notarize.StatusTrusted, at)
			other := signEntry(t, sv, digestB, notarize.StatusUntrusted, at)
			e.Envelope.Payload = other.Envelope.Payload
			leaves = append(leaves, marshal(t, e))
		default:
			leaves = append(leaves, marshal(t, signEntry(t, sv, notarize.DigestOf(fmt.Appendf(nil, "%d", idx)), notarize.StatusTrusted, at.Add(time.Duration(i)*time.Second))))
		}
	}
	return leaves
}

// catchUp follows until the batch is empty and returns all entries and the
// final state.
func catchUp(t *testing.T, fl *Follower, st FollowState) ([]FollowedEntry, FollowState) {
	t.Helper()
	var all []FollowedEntry
	for range 100 {
		b, err := fl.Next(t.Context(), st)
		if err != nil {
			t.Fatal(err)
		}
		if b.From != st.Size || b.State.Size != st.Size+uint64(len(b.Entries)) {
			t.Fatalf("batch from %d with %d entries to %d; state was %d", b.From, len(b.Entries), b.State.Size, st.Size)
		}
		all = append(all, b.Entries...)
		st = b.State
		if len(b.Entries) == 0 {
			return all, st
		}
	}
	t.Fatal("follower never caught up")
	return nil, st
}

func TestFollowProvesAndVerifiesEveryEntry(t *testing.T) {
	f, c := followLog(t, 600)
	fl := NewFollower(c, 256) // several batches: intermediate ones need consistency proofs
	entries, st := catchUp(t, fl, FollowState{})
	if len(entries) != 600 || st.Size != 600 {
		t.Fatalf("got %d entries, state size %d; want 600", len(entries), st.Size)
	}
	for i, e := range entries {
		if e.Index != uint64(i) {
			t.Fatalf("entry %d has index %d", i, e.Index)
		}
		switch i {
		case 3:
			if !errors.Is(e.Err, notarize.ErrBadEntry) {
				t.Fatalf("entry 3: err %v, want ErrBadEntry", e.Err)
			}
		case 5:
			if !errors.Is(e.Err, notarize.ErrBadSignature) {
				t.Fatalf("entry 5: err %v, want ErrBadSignature", e.Err)
			}
		default:
			if e.Err != nil || e.Record.Index != uint64(i) || e.Record.Statement.Digest() != notarize.DigestOf(fmt.Appendf(nil, "%d", i)) {
				t.Fatalf("entry %d: %+v", i, e)
			}
		}
	}
	// Resume from a partial bundle (600 = 2×256 + 88) after the log grows.
	f.mu.Lock()
	appendEntries(t, f.log, 300)
	f.mu.Unlock()
	more, st2 := catchUp(t, NewFollower(c, 0), st)
	if len(more) != 300 || more[0].Index != 600 || st2.Size != 900 {
		t.Fatalf("resume: %d entries from %d, size %d", len(more), more[0].Index, st2.Size)
	}
}

func TestFollowEmptyLog(t *testing.T) {
	f, c := followLog(t, 0)
	b, err := NewFollower(c, 0).Next(t.Context(), FollowState{})
	if err != nil || len(b.Entries) != 0 || b.State.Size != 0 {
		t.Fatalf("Next() on an empty log = %+v, %v", b, err)
	}
	f.grow(0)
	f.mu.Lock()
	appendEntries(t, f.log, 10)
	f.mu.Unlock()
	entries, st := catchUp(t, NewFollower(c, 0), b.State)
	if len(entries) != 10 || st.Size != 10 {
		t.Fatalf("after the first entries: %d entries, size %d", len(entries), st.Size)
	}
}

func TestFollowRefusesLyingBundles(t *testing.T) {
	leaves := makeLeaves(t, 0, 600)
	for _, tc := range []struct {
		name string
		hook func(idx uint64, e [][]byte) [][]byte
	}{
		{"bit flip", func(idx uint64, e [][]byte) [][]byte {
			if idx == 1 {
				e[7] = bytes.Clone(e[7])
				e[7][10] ^= 1
			}
			return e
		}},
		{"entry dropped", func(idx uint64, e [][]byte) [][]byte {
			if idx == 1 {
				return e[:len(e)-1]
			}
			return e
		}},
		{"entry added", func(idx uint64, e [][]byte) [][]byte { return append(e, e[0]) }},
		{"entries swapped", func(idx uint64, e [][]byte) [][]byte {
			if idx == 0 {
				e[10], e[11] = e[11], e[10]
			}
			return e
		}},
		{"entry replaced by a valid one", func(idx uint64, e [][]byte) [][]byte {
			if idx == 2 {
				e[0] = e[1]
			}
			return e
		}},
		{"not a bundle", func(idx uint64, e [][]byte) [][]byte { return [][]byte{make([]byte, 70000)[:65535], {1}} }},
	} {
		for _, batch := range []uint64{256, 0} {
			t.Run(fmt.Sprintf("%s/batch %d", tc.name, batch), func(t *testing.T) {
				f, c := followLogOf(t, leaves)
				f.bundleHook = tc.hook
				fl := NewFollower(c, batch)
				st := FollowState{}
				var err error
				for range 10 {
					var b *FollowBatch
					if b, err = fl.Next(t.Context(), st); err != nil {
						break
					}
					st = b.State
				}
				if !errors.Is(err, ErrBadProof) {
					t.Fatalf("Next() = %v, want ErrBadProof", err)
				}
				if st.Size >= 600 {
					t.Fatalf("state advanced to %d over a lying bundle", st.Size)
				}
			})
		}
	}
}

func TestFollowReplicaDiverged(t *testing.T) {
	fa, ca := followLog(t, 300)
	_, stA := catchUp(t, NewFollower(ca, 0), FollowState{})

	// Ledger B: same key, another history, larger. A fresh client of it
	// (no stored checkpoint) believes its checkpoint; the replica's state
	// from A must not be extended with it.
	lb := newFakeLog(fa.log.signer, fa.log.vkey)
	lb.add([]byte("another history"))
	appendEntries(t, lb, 400)
	fb := &followOps{fakeOps: newFakeOps(t, lb)}
	cb, err := newClient(t.Context(), Config{URL: "https://ledger.test", Home: t.TempDir(), VerifierKey: fa.log.vkey}.withDefaults(), "https://ledger.test", fb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewFollower(cb, 0).Next(t.Context(), stA); !errors.Is(err, ErrReplicaDiverged) {
		t.Fatalf("Next() on another history = %v, want ErrReplicaDiverged", err)
	}
	// Same size, other root.
	lc := newFakeLog(fa.log.signer, fa.log.vkey)
	lc.add([]byte("x"))
	appendEntries(t, lc, 299)
	fc := &followOps{fakeOps: newFakeOps(t, lc)}
	cc, err := newClient(t.Context(), Config{URL: "https://ledger.test", Home: t.TempDir(), VerifierKey: fa.log.vkey}.withDefaults(), "https://ledger.test", fc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewFollower(cc, 0).Next(t.Context(), stA); !errors.Is(err, ErrReplicaDiverged) {
		t.Fatalf("Next() at the same size = %v, want ErrReplicaDiverged", err)
	}
	// A replica ahead of the ledger.
	if _, err := NewFollower(ca, 0).Next(t.Context(), FollowState{Size: stA.Size + 1, Hashes: stA.Hashes}); err == nil {
		t.Fatal("Next() accepted a malformed state")
	}
}

func TestFollowReportsFork(t *testing.T) {
	f, c := followLog(t, 100)
	_, st := catchUp(t, NewFollower(c, 0), FollowState{})
	forked := newFakeLog(f.log.signer, f.log.vkey)
	appendEntries(t, forked, 50)
	forked.add([]byte("rewritten"))
	appendEntries(t, forked, 100)
	f.setLog(forked)
	_, err := NewFollower(c, 0).Next(t.Context(), st)
	var fe *ForkError
	if !errors.As(err, &fe) {
		t.Fatalf("Next() after a fork = %v, want *ForkError", err)
	}
}

// TestFollowFullBundleForPartial: a replica behind the ledger asks for a
// partial bundle that Tessera has since removed, the bundle being full, and
// is served the full one: its first entries are read, proven as any; a full
// bundle whose first entries differ is ErrBadProof.
func TestFollowFullBundleForPartial(t *testing.T) {
	for _, altered := range []bool{false, true} {
		f, c := followLog(t, 600)
		served := uint64(500) // bundle 1 is partial (244 entries) at this size
		f.serveSize = &served
		f.bundleHook = func(idx uint64, e [][]byte) [][]byte {
			if len(e) == layout.EntryBundleWidth {
				return e
			}
			full := append([][]byte(nil), f.log.leaves[idx*layout.EntryBundleWidth:(idx+1)*layout.EntryBundleWidth]...)
			if altered {
				full[0] = full[1]
			}
			return full
		}
		b, err := NewFollower(c, 0).Next(t.Context(), FollowState{})
		switch {
		case altered && !errors.Is(err, ErrBadProof):
			t.Fatalf("a full bundle with other first entries: %v, want ErrBadProof", err)
		case !altered && (err != nil || b.State.Size != served || len(b.Entries) != int(served)):
			t.Fatalf("a full bundle for the partial one: %v %+v", err, b)
		}
	}
}
