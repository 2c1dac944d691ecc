package ledgerclient

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// appendStatements appends n statements by s about d, dated a second apart
// from at, straight into the fake log, and returns their indexes.
func appendStatements(t testing.TB, f *fakeOps, s signature.Signer, d notarize.Digest, st notarize.Status, at time.Time, n int) []uint64 {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var idx []uint64
	for i := range n {
		idx = append(idx, f.log.size())
		f.log.add(marshal(t, signEntry(t, s, d, st, at.Add(time.Duration(i)*time.Second))))
	}
	return idx
}

// floodedLog is a fake ledger where alice made a few statements about
// digestA and mallory, a stranger, made many more around them.
type floodedLog struct {
	f              *fakeOps
	c              *Client
	alice, mallory signature.SignerVerifier
	aliceIdx       []uint64
}

func newFloodedLog(t *testing.T, strangers int) *floodedLog {
	t.Helper()
	f, c, _ := pinnedClient(t, 3)
	fl := &floodedLog{f: f, c: c, alice: newEntrySigner(t), mallory: newEntrySigner(t)}
	fl.aliceIdx = append(fl.aliceIdx, appendStatements(t, f, fl.alice, digestA, notarize.StatusTrusted, t0, 1)...)
	appendStatements(t, f, fl.mallory, digestA, notarize.StatusUntrusted, t0, strangers/2)
	appendStatements(t, f, fl.alice, digestB, notarize.StatusTrusted, t0, 1)
	fl.aliceIdx = append(fl.aliceIdx, appendStatements(t, f, fl.alice, digestA, notarize.StatusUntrusted, t0.Add(time.Hour), 1)...)
	appendStatements(t, f, fl.mallory, digestA, notarize.StatusTrusted, t0.Add(2*time.Hour), strangers-strangers/2)
	return fl
}

// TestLookupWalksPages: a lookup reads every page, each asked after the
// last, and returns all records in log order; a filtered one only the
// asked key's.
func TestLookupWalksPages(t *testing.T) {
	fl := newFloodedLog(t, 2*PageLimit+10)
	res, err := fl.c.Lookup(t.Context(), digestA)
	if err != nil {
		t.Fatal(err)
	}
	if want := 2*PageLimit + 10 + 2; len(res.Records) != want {
		t.Fatalf("%d records, want %d", len(res.Records), want)
	}
	for i := 1; i < len(res.Records); i++ {
		if res.Records[i].Index <= res.Records[i-1].Index {
			t.Fatalf("records out of order at %d", i)
		}
	}
	if res.Checkpoint.Size != fl.f.log.size() {
		t.Fatalf("checkpoint size %d, want %d", res.Checkpoint.Size, fl.f.log.size())
	}
	if len(fl.f.queries) != 3 || fl.f.queries[0].after != nil || *fl.f.queries[1].after != res.Records[PageLimit-1].Index {
		t.Fatalf("pages asked: %+v", fl.f.queries)
	}
	for _, q := range fl.f.queries {
		if q.limit != PageLimit {
			t.Fatalf("page asked with limit %d, want %d", q.limit, PageLimit)
		}
	}

	fl.f.queries = nil
	mine, err := fl.c.Lookup(t.Context(), digestA, notarizetest.KeyID(t, fl.alice))
	if err != nil {
		t.Fatal(err)
	}
	if len(mine.Records) != 2 || mine.Records[0].Index != fl.aliceIdx[0] || mine.Records[1].Index != fl.aliceIdx[1] || len(fl.f.queries) != 1 {
		t.Fatalf("alice's lookup: %d records, %d pages", len(mine.Records), len(fl.f.queries))
	}

	var pages int
	for p, err := range fl.c.LookupPages(t.Context(), digestA) {
		if err != nil {
			t.Fatal(err)
		}
		if pages++; pages == 2 {
			break // a caller may stop early
		}
		if p.Next == nil {
			t.Fatal("first page without next")
		}
	}
	if pages != 2 {
		t.Fatalf("%d pages read before stopping", pages)
	}
}

// TestLookupPageLies: a ledger that lies in any page fails the lookup, and
// one that never stops announcing pages is cut off.
func TestLookupPageLies(t *testing.T) {
	t.Parallel()
	second := func(q lookupQuery) bool { return q.after != nil }
	for _, tc := range []struct {
		name string
		keys bool // filtered by alice's key
		lie  func(t *testing.T, fl *floodedLog, q lookupQuery, r *api.LookupResponse)
		want error
	}{
		{"second page repeats the first", false, func(t *testing.T, fl *floodedLog, q lookupQuery, r *api.LookupResponse) {
			if second(q) {
				_, all := fl.f.matching(digestA, q.keyIDs) // hooks run under f.mu
				r.Entries = nil
				for _, i := range all[:q.limit] {
					r.Entries = append(r.Entries, fl.f.proven(i))
				}
			}
		}, ErrBadProof},
		{"an entry repeated within a page", false, func(t *testing.T, fl *floodedLog, q lookupQuery, r *api.LookupResponse) {
			r.Entries[3] = r.Entries[2]
		}, ErrBadProof},
		{"entries out of order", false, func(t *testing.T, fl *floodedLog, q lookupQuery, r *api.LookupResponse) {
			r.Entries[2], r.Entries[3] = r.Entries[3], r.Entries[2]
		}, ErrBadProof},
		{"a page larger than asked", false, func(t *testing.T, fl *floodedLog, q lookupQuery, r *api.LookupResponse) {
			if !second(q) {
				_, all := fl.f.matching(digestA, q.keyIDs)
				r.Entries = append(r.Entries, fl.f.proven(all[q.limit]))
			}
		}, ErrBadProof},
		{"next does not advance", false, func(t *testing.T, fl *floodedLog, q lookupQuery, r *api.LookupResponse) {
			if second(q) {
				r.Next = q.after
			}
		}, ErrBadProof},
		{"an empty page announcing another", false, func(t *testing.T, fl *floodedLog, q lookupQuery, r *api.LookupResponse) {
			if second(q) {
				r.Entries = nil
			}
		}, ErrBadProof},
		{"next behind the page's last entry", false, func(t *testing.T, fl *floodedLog, q lookupQuery, r *api.LookupResponse) {
			if r.Next != nil {
				*r.Next = r.Entries[len(r.Entries)-1].Index - 1
			}
		}, ErrBadProof},
		{"next beyond the checkpoint", false, func(t *testing.T, fl *floodedLog, q lookupQuery, r *api.LookupResponse) {
			n := fl.f.log.size()
			r.Next = &n
		}, ErrBadProof},
		{"entry by another key on a later page", true, func(t *testing.T, fl *floodedLog, q lookupQuery, r *api.LookupResponse) {
			if !second(q) {
				n := fl.aliceIdx[0]
				r.Next = &n
				r.Entries = r.Entries[:1]
				return
			}
			r.Entries = append([]api.LookupEntry{fl.f.proven(fl.aliceIdx[0] + 1)}, r.Entries...)
		}, ErrBadProof},
		{"later page about another digest", false, func(t *testing.T, fl *floodedLog, q lookupQuery, r *api.LookupResponse) {
			if second(q) {
				r.Digest = digestB.String()
			}
		}, ErrBadProof},
		{"later page with a rolled-back checkpoint", false, func(t *testing.T, fl *floodedLog, q lookupQuery, r *api.LookupResponse) {
			if second(q) {
				r.Checkpoint = string(fl.f.log.checkpointAt(t, fl.f.log.size()-1))
			}
		}, &ForkError{}},
		{"later page from another history", false, func(t *testing.T, fl *floodedLog, q lookupQuery, r *api.LookupResponse) {
			if second(q) {
				l := newFakeLog(fl.f.log.signer, fl.f.log.vkey)
				l.add([]byte("rewritten"))
				l.add(fl.f.log.leaves[1:]...) // same size, another root
				r.Checkpoint = string(l.checkpointAt(t, l.size()))
			}
		}, &ForkError{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fl := newFloodedLog(t, 2*PageLimit+10)
			var keys []string
			if tc.keys {
				keys = []string{notarizetest.KeyID(t, fl.alice)}
			}
			fl.f.pageHook = func(q lookupQuery, r *api.LookupResponse) { tc.lie(t, fl, q, r) }
			res, err := fl.c.Lookup(t.Context(), digestA, keys...)
			var fe *ForkError
			if errors.As(tc.want, &fe) {
				if !errors.As(err, &fe) {
					t.Fatalf("err = %v, want a fork", err)
				}
			} else if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if res != nil {
				t.Fatalf("a result with an error: %d records", len(res.Records))
			}
		})
	}
}

// TestLookupEndlessPages: a ledger that answers every page with one entry
// and announces another is cut off after MaxLookupPages requests.
func TestLookupEndlessPages(t *testing.T) {
	t.Parallel()
	f, c, _ := pinnedClient(t, 1)
	appendStatements(t, f, newEntrySigner(t), digestA, notarize.StatusTrusted, t0, MaxLookupPages+5)
	f.pageHook = func(q lookupQuery, r *api.LookupResponse) {
		r.Entries = r.Entries[:1]
		next := r.Entries[0].Index
		r.Next = &next
	}
	if _, err := c.Lookup(t.Context(), digestA); !errors.Is(err, ErrTooMany) {
		t.Fatalf("err = %v, want ErrTooMany", err)
	}
	if f.lookupCalls != MaxLookupPages {
		t.Fatalf("%d pages asked, want %d", f.lookupCalls, MaxLookupPages)
	}
}

// TestLookupTooManyRecords: Lookup holds at most MaxLookupRecords records.
func TestLookupTooManyRecords(t *testing.T) {
	f, c, _ := pinnedClient(t, 1)
	s := newEntrySigner(t)
	appendStatements(t, f, s, digestA, notarize.StatusTrusted, t0, MaxLookupRecords+1)
	if _, err := c.Lookup(t.Context(), digestA); !errors.Is(err, ErrTooMany) {
		t.Fatalf("err = %v, want ErrTooMany", err)
	}
	n := 0
	for p, err := range c.LookupPages(t.Context(), digestA) {
		if err != nil {
			t.Fatal(err)
		}
		n += len(p.Records)
	}
	if n != MaxLookupRecords+1 {
		t.Fatalf("pages held %d records, want %d", n, MaxLookupRecords+1)
	}
}

// TestCurrent: the current statement of each asked key, whatever strangers
// wrote and whatever the order in the log; one request.
func TestCurrent(t *testing.T) {
	fl := newFloodedLog(t, 3*PageLimit)
	bob := newEntrySigner(t)
	// bob's later log entry is dated earlier: his current one is the first.
	appendStatements(t, fl.f, bob, digestA, notarize.StatusUnsupported, t0.Add(3*time.Hour), 1)
	appendStatements(t, fl.f, bob, digestA, notarize.StatusTrusted, t0, 1)
	alice, bobID := notarizetest.KeyID(t, fl.alice), notarizetest.KeyID(t, bob)
	res, err := fl.c.Current(t.Context(), digestA, alice, bobID, alice)
	if err != nil {
		t.Fatal(err)
	}
	if fl.f.currentCalls != 1 || fl.f.lookupCalls != 0 {
		t.Fatalf("%d current and %d lookup requests, want 1 and 0", fl.f.currentCalls, fl.f.lookupCalls)
	}
	if len(res.Records) != 2 || res.Records[0].Index != fl.aliceIdx[1] || res.Records[1].KeyID != bobID || res.Records[1].Status() != notarize.StatusUnsupported {
		t.Fatalf("records %+v", res.Records)
	}
	if res.Checkpoint.Size != fl.f.log.size() {
		t.Fatalf("checkpoint size %d", res.Checkpoint.Size)
	}
	dec := notarize.Decide(res.Records, digestA, []string{alice, bobID})
	if dec.Verdict != notarize.Untrusted || dec.Deciding.KeyID != alice {
		t.Fatalf("decision %v by %v", dec.Verdict, dec.Deciding)
	}

	none, err := fl.c.Current(t.Context(), notarize.DigestOf([]byte("never signed")), alice)
	if err != nil || len(none.Records) != 0 {
		t.Fatalf("current of an unsigned digest: %v, %+v", err, none)
	}
	calls := fl.f.currentCalls
	for _, bad := range [][]string{nil, {"not a key id"}, {strings.ToUpper(alice)}} {
		if _, err := fl.c.Current(t.Context(), digestA, bad...); err == nil {
			t.Fatalf("current with key IDs %q: no error", bad)
		}
	}
	if _, err := fl.c.Current(t.Context(), "sha256:nothex", alice); !errors.Is(err, notarize.ErrBadDigest) {
		t.Fatalf("bad digest: %v", err)
	}
	if fl.f.currentCalls != calls {
		t.Fatal("a bad current request was sent")
	}
}

// TestCurrentManyKeys: more key IDs than one request may name are asked in
// several requests.
func TestCurrentManyKeys(t *testing.T) {
	fl := newFloodedLog(t, 2)
	ids := []string{notarizetest.KeyID(t, fl.alice)}
	for i := range api.MaxCurrentKeyIDs {
		ids = append(ids, notarize.DigestOf([]byte{byte(i), byte(i >> 8)}).Hex())
	}
	res, err := fl.c.Current(t.Context(), digestA, ids...)
	if err != nil {
		t.Fatal(err)
	}
	if fl.f.currentCalls != 2 || len(res.Records) != 1 || res.Records[0].Index != fl.aliceIdx[1] {
		t.Fatalf("%d requests, records %+v", fl.f.currentCalls, res.Records)
	}
}

// TestCurrentWithoutEndpoint: a ledger without the current endpoint is
// asked page by page for the same keys only, with the same result.
func TestCurrentWithoutEndpoint(t *testing.T) {
	fl := newFloodedLog(t, 3*PageLimit)
	fl.f.noCurrent = true
	alice := notarizetest.KeyID(t, fl.alice)
	res, err := fl.c.Current(t.Context(), digestA, alice)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Records) != 1 || res.Records[0].Index != fl.aliceIdx[1] {
		t.Fatalf("records %+v", res.Records)
	}
	if len(fl.f.queries) != 1 || len(fl.f.queries[0].keyIDs) != 1 || fl.f.queries[0].keyIDs[0] != alice {
		t.Fatalf("fallback lookups %+v, want one page by alice's key", fl.f.queries)
	}
	// The fallback checks what it reads as any lookup does.
	fl.f.pageHook = func(q lookupQuery, r *api.LookupResponse) { r.Entries[0].InclusionProof[0][0] ^= 1 }
	if _, err := fl.c.Current(t.Context(), digestA, alice); !errors.Is(err, ErrBadProof) {
		t.Fatalf("fallback with a bad proof: %v", err)
	}
}

// TestCurrentLies: every way a current-statement answer can lie is refused.
func TestCurrentLies(t *testing.T) {
	proven := func(t *testing.T, f *fakeOps, i uint64) api.LookupEntry { return f.proven(i) }
	for _, tc := range []struct {
		name string
		lie  func(t *testing.T, fl *floodedLog, r *api.LookupResponse)
		want error
	}{
		{"entry by another key", func(t *testing.T, fl *floodedLog, r *api.LookupResponse) {
			r.Entries = []api.LookupEntry{proven(t, fl.f, fl.aliceIdx[0]+1)}
		}, ErrBadProof},
		{"a stranger's entry besides", func(t *testing.T, fl *floodedLog, r *api.LookupResponse) {
			r.Entries = append(r.Entries, proven(t, fl.f, fl.f.log.size()-1))
		}, ErrBadProof},
		{"two entries for one key", func(t *testing.T, fl *floodedLog, r *api.LookupResponse) {
			r.Entries = []api.LookupEntry{proven(t, fl.f, fl.aliceIdx[0]), proven(t, fl.f, fl.aliceIdx[1])}
		}, ErrBadProof},
		{"the same entry twice", func(t *testing.T, fl *floodedLog, r *api.LookupResponse) {
			r.Entries = append(r.Entries, r.Entries[0])
		}, ErrBadProof},
		{"entry about another digest", func(t *testing.T, fl *floodedLog, r *api.LookupResponse) {
			r.Entries = []api.LookupEntry{proven(t, fl.f, fl.aliceIdx[1]-1)} // alice's statement about digestB
		}, ErrBadProof},
		{"answer about another digest", func(t *testing.T, fl *floodedLog, r *api.LookupResponse) { r.Digest = digestB.String() }, ErrBadProof},
		{"a next page", func(t *testing.T, fl *floodedLog, r *api.LookupResponse) {
			n := uint64(0)
			r.Next = &n
		}, ErrBadProof},
		{"inclusion proof flipped", func(t *testing.T, fl *floodedLog, r *api.LookupResponse) { r.Entries[0].InclusionProof[0][3] ^= 1 }, ErrBadProof},
		{"entry bytes changed", func(t *testing.T, fl *floodedLog, r *api.LookupResponse) {
			r.Entries[0].Entry = append(r.Entries[0].Entry, ' ')
		}, ErrBadProof},
		{"rolled-back checkpoint", func(t *testing.T, fl *floodedLog, r *api.LookupResponse) {
			r.Checkpoint = string(fl.f.log.checkpointAt(t, 2))
		}, &ForkError{}},
		{"checkpoint by another key", func(t *testing.T, fl *floodedLog, r *api.LookupResponse) {
			s, _ := newNoteKey(t, testOrigin)
			r.Checkpoint = string(signNote(t, s, testOrigin, fl.f.log.size(), fl.f.log.tree.HashAt(fl.f.log.size())))
		}, ErrBadCheckpoint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fl := newFloodedLog(t, 20)
			fl.f.currentHook = func(r *api.LookupResponse) { tc.lie(t, fl, r) }
			res, err := fl.c.Current(t.Context(), digestA, notarizetest.KeyID(t, fl.alice))
			var fe *ForkError
			if errors.As(tc.want, &fe) {
				if !errors.As(err, &fe) {
					t.Fatalf("err = %v, want a fork", err)
				}
			} else if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if res != nil {
				t.Fatalf("a result with an error: %+v", res.Records)
			}
		})
	}
}

// TestLookupAnswerBound: the size bound of an answer holds an honest answer
// of that many entries of the largest size, with the longest proofs, up to
// the most a current lookup may ask for; pages are kept under
// api.MaxAnswerSize by the ledger, which is the bound of every answer.
func TestLookupAnswerBound(t *testing.T) {
	cp := strings.Repeat("c", MaxCheckpointSize)
	le := api.LookupEntry{Index: 1<<63 - 1, Entry: make([]byte, notarize.MaxEntrySize)}
	for range 64 {
		le.InclusionProof = append(le.InclusionProof, make([]byte, 32))
	}
	for _, n := range []int{1, 10, api.MaxCurrentKeyIDs} {
		next := uint64(1<<63 - 1)
		r := api.LookupResponse{Digest: digestA.String(), Checkpoint: cp, Next: &next}
		for range n {
			r.Entries = append(r.Entries, le)
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) > maxLookupAnswer(n) {
			t.Fatalf("%d entries: %d bytes over the bound %d", n, len(b), maxLookupAnswer(n))
		}
	}
	if maxLookupAnswer(PageLimit) != api.MaxAnswerSize {
		t.Fatalf("a page's bound %d, want api.MaxAnswerSize", maxLookupAnswer(PageLimit))
	}
}
