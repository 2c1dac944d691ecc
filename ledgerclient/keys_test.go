package ledgerclient

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// KeyDigests serves a key lookup page as the ledger does (keyPage).
func (f *fakeOps) KeyDigests(_ context.Context, keyID string, q KeyQuery) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return json.Marshal(f.keyPage(keyID, q))
}

// keyFake is a fakeOps whose key lookup pages a test rewrites with hook.
type keyFake struct {
	*fakeOps
	hook func(KeyQuery, *api.KeyDigestsResponse)
	// raw, when set, is the whole answer (for fuzzing).
	raw []byte
}

func (k *keyFake) KeyDigests(_ context.Context, keyID string, q KeyQuery) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.raw != nil {
		return k.raw, nil
	}
	resp := k.keyPage(keyID, q)
	if k.hook != nil {
		k.hook(q, resp)
	}
	return json.Marshal(resp)
}

// keyPage is the honest page: the key's current statement about each digest
// of the served tree, filtered by q.Status, in increasing digest order after
// q.Cursor, at most q.Limit, Next the last digest of a page when more follow.
func (f *fakeOps) keyPage(keyID string, q KeyQuery) *api.KeyDigestsResponse {
	size := f.log.size()
	if f.serveSize != nil {
		size = *f.serveSize
	}
	if f.verified == nil {
		f.verified = map[string]*notarize.Verified{}
	}
	var recs []notarize.Record
	digests := map[notarize.Digest]bool{}
	for i, leaf := range f.log.leaves[:size] {
		v, ok := f.verified[string(leaf)]
		if !ok {
			if e, err := notarize.ParseEntry(leaf); err == nil {
				v, _ = e.VerifyLogged()
			}
			f.verified[string(leaf)] = v
		}
		if v == nil || v.KeyID != keyID {
			continue
		}
		recs = append(recs, notarize.Record{Index: uint64(i), KeyID: v.KeyID, Statement: v.Statement})
		digests[v.Statement.Digest()] = true
	}
	sorted := make([]notarize.Digest, 0, len(digests))
	for d := range digests {
		sorted = append(sorted, d)
	}
	slices.Sort(sorted)
	limit := q.Limit
	if limit == 0 {
		limit = api.DefaultLookupLimit
	}
	resp := &api.KeyDigestsResponse{KeyID: keyID, Checkpoint: string(f.cp()), Entries: []api.LookupEntry{}}
	for _, d := range sorted {
		if q.Cursor != "" && d <= q.Cursor {
			continue
		}
		cur, _ := notarize.Current(recs, d, keyID)
		if q.Status != "" && cur.Statement.Predicate.Status != q.Status {
			continue
		}
		if len(resp.Entries) == limit {
			last, _ := notarize.ParseEntry(resp.Entries[len(resp.Entries)-1].Entry)
			v, _ := last.VerifyLogged()
			resp.Next = v.Statement.Digest().String()
			break
		}
		resp.Entries = append(resp.Entries, f.proven(cur.Index))
	}
	return resp
}

// keyedLog is a fake ledger where alice made statements about n digests
// (every third later untrusted), and mallory, a stranger, about some of the
// same digests.
type keyedLog struct {
	f              *keyFake
	c              *Client
	alice, mallory signature.SignerVerifier
	aliceID        string
	digests        []notarize.Digest // sorted
	untrusted      map[notarize.Digest]bool
}

func newKeyedLog(t *testing.T, n int) *keyedLog {
	t.Helper()
	s, vkey := newNoteKey(t, testOrigin)
	f := &keyFake{fakeOps: newFakeOps(t, newFakeLog(s, vkey))}
	f.grow(2)
	cfg := Config{URL: "https://ledger.test", Home: t.TempDir(), VerifierKey: vkey}
	c, err := newClient(t.Context(), cfg.withDefaults(), "https://ledger.test", f)
	if err != nil {
		t.Fatal(err)
	}
	kl := &keyedLog{f: f, c: c, alice: newEntrySigner(t), mallory: newEntrySigner(t), untrusted: map[notarize.Digest]bool{}}
	kl.aliceID = notarizetest.KeyID(t, kl.alice)
	for i := range n {
		d := notarize.DigestOf(fmt.Appendf(nil, "asset %d", i))
		kl.digests = append(kl.digests, d)
		appendStatements(t, f.fakeOps, kl.alice, d, notarize.StatusTrusted, t0, 1)
		if i%2 == 0 {
			appendStatements(t, f.fakeOps, kl.mallory, d, notarize.StatusUntrusted, t0, 1)
		}
	}
	for i, d := range kl.digests {
		if i%3 == 0 {
			appendStatements(t, f.fakeOps, kl.alice, d, notarize.StatusUntrusted, t0.Add(time.Hour), 1)
			kl.untrusted[d] = true
		}
	}
	slices.Sort(kl.digests)
	return kl
}

// walk collects the records of every page of alice's key lookup.
func (kl *keyedLog) walk(status notarize.Status) ([]notarize.Record, error) {
	var out []notarize.Record
	for p, err := range kl.c.KeyDigestPages(context.Background(), kl.aliceID, status) {
		if err != nil {
			return nil, err
		}
		out = append(out, p.Records...)
	}
	return out, nil
}

// TestKeyDigestsWalksPages: every digest the key signed, once, in digest
// order, with its current status, over several pages; the status filter
// keeps only the matching ones; strangers' statements are never listed.
func TestKeyDigestsWalksPages(t *testing.T) {
	kl := newKeyedLog(t, 2*PageLimit+7)
	recs, err := kl.walk("")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(kl.digests) {
		t.Fatalf("%d records, want %d", len(recs), len(kl.digests))
	}
	for i, r := range recs {
		d := r.Statement.Digest()
		if d != kl.digests[i] || r.KeyID != kl.aliceID {
			t.Fatalf("record %d: %s by %s, want %s by alice", i, d, r.KeyID, kl.digests[i])
		}
		want := notarize.StatusTrusted
		if kl.untrusted[d] {
			want = notarize.StatusUntrusted
		}
		if got := r.Statement.Predicate.Status; got != want {
			t.Fatalf("%s: %s, want %s", d, got, want)
		}
	}
	for _, st := range []notarize.Status{notarize.StatusUntrusted, notarize.StatusTrusted, notarize.StatusUnsupported} {
		recs, err := kl.walk(st)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for _, d := range kl.digests {
			if kl.untrusted[d] == (st == notarize.StatusUntrusted) && st != notarize.StatusUnsupported {
				want++
			}
		}
		if len(recs) != want {
			t.Fatalf("status %s: %d records, want %d", st, len(recs), want)
		}
	}
}

// TestKeyDigestsRefusesLies: one lie per case on the first or a later page;
// each is refused as a bad proof (or a fork), with no page.
func TestKeyDigestsRefusesLies(t *testing.T) {
	t.Parallel()
	later := func(q KeyQuery) bool { return q.Cursor != "" }
	for _, tc := range []struct {
		name   string
		status notarize.Status
		lie    func(t *testing.T, kl *keyedLog, q KeyQuery, r *api.KeyDigestsResponse)
		want   error
	}{
		{"answer about another key", "", func(t *testing.T, kl *keyedLog, q KeyQuery, r *api.KeyDigestsResponse) {
			r.KeyID = notarizetest.KeyID(t, kl.mallory)
		}, ErrBadProof},
		{"a stranger's statement listed as the key's", "", func(t *testing.T, kl *keyedLog, q KeyQuery, r *api.KeyDigestsResponse) {
			r.Entries[3] = kl.f.proven(1 + 2) // entry 3 of the log is mallory's
		}, ErrBadProof},
		{"a digest repeated on a page", "", func(t *testing.T, kl *keyedLog, q KeyQuery, r *api.KeyDigestsResponse) {
			r.Entries[5] = r.Entries[4]
		}, ErrBadProof},
		{"digests out of order on a page", "", func(t *testing.T, kl *keyedLog, q KeyQuery, r *api.KeyDigestsResponse) {
			r.Entries[5], r.Entries[6] = r.Entries[6], r.Entries[5]
		}, ErrBadProof},
		{"a later page repeating the previous page's last digest", "", func(t *testing.T, kl *keyedLog, q KeyQuery, r *api.KeyDigestsResponse) {
			if later(q) {
				r.Entries = append([]api.LookupEntry{kl.proven(t, q.Cursor)}, r.Entries...)
				r.Entries = r.Entries[:len(r.Entries)-1]
			}
		}, ErrBadProof},
		{"a later page going back before the cursor", "", func(t *testing.T, kl *keyedLog, q KeyQuery, r *api.KeyDigestsResponse) {
			if later(q) {
				r.Entries[0] = kl.proven(t, kl.digests[0])
			}
		}, ErrBadProof},
		{"a next cursor behind the page's last digest", "", func(t *testing.T, kl *keyedLog, q KeyQuery, r *api.KeyDigestsResponse) {
			if r.Next != "" {
				r.Next = kl.digests[0].String()
			}
		}, ErrBadProof},
		{"a malformed next cursor", "", func(t *testing.T, kl *keyedLog, q KeyQuery, r *api.KeyDigestsResponse) {
			if r.Next != "" {
				r.Next = "sha256:../../admin"
			}
		}, ErrBadProof},
		{"an empty page announcing itself again", "", func(t *testing.T, kl *keyedLog, q KeyQuery, r *api.KeyDigestsResponse) {
			if later(q) {
				r.Entries, r.Next = nil, q.Cursor.String()
			}
		}, ErrBadProof},
		{"more entries than asked for", "", func(t *testing.T, kl *keyedLog, q KeyQuery, r *api.KeyDigestsResponse) {
			r.Entries = append(r.Entries, kl.proven(t, kl.digests[len(kl.digests)-1]))
		}, ErrBadProof},
		{"a trusted statement in an untrusted-only page", notarize.StatusUntrusted, func(t *testing.T, kl *keyedLog, q KeyQuery, r *api.KeyDigestsResponse) {
			for _, d := range kl.digests {
				if !kl.untrusted[d] {
					r.Entries = append(r.Entries, kl.proven(t, d))
					slices.SortFunc(r.Entries, func(a, b api.LookupEntry) int { return cmp.Compare(entryDigest(t, a), entryDigest(t, b)) })
					return
				}
			}
		}, ErrBadProof},
		{"a bad inclusion proof", "", func(t *testing.T, kl *keyedLog, q KeyQuery, r *api.KeyDigestsResponse) {
			p := slices.Clone(r.Entries[2].InclusionProof)
			p[0] = slices.Clone(p[0])
			p[0][0] ^= 1
			r.Entries[2].InclusionProof = p
		}, ErrBadProof},
		{"an entry's bytes changed", "", func(t *testing.T, kl *keyedLog, q KeyQuery, r *api.KeyDigestsResponse) {
			r.Entries[2].Entry = r.Entries[3].Entry
		}, ErrBadProof},
		{"a later page with a rolled-back checkpoint", "", func(t *testing.T, kl *keyedLog, q KeyQuery, r *api.KeyDigestsResponse) {
			if later(q) {
				r.Checkpoint = string(kl.f.log.checkpointAt(t, kl.f.log.size()-1))
			}
		}, &ForkError{}},
		{"a checkpoint by another key", "", func(t *testing.T, kl *keyedLog, q KeyQuery, r *api.KeyDigestsResponse) {
			s, _ := newNoteKey(t, testOrigin)
			r.Checkpoint = string(signNote(t, s, testOrigin, kl.f.log.size(), kl.f.log.tree.HashAt(kl.f.log.size())))
		}, ErrKeyMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kl := newKeyedLog(t, 2*PageLimit+7)
			kl.f.hook = func(q KeyQuery, r *api.KeyDigestsResponse) { tc.lie(t, kl, q, r) }
			recs, err := kl.walk(tc.status)
			var fe *ForkError
			if errors.As(tc.want, &fe) {
				if !errors.As(err, &fe) {
					t.Fatalf("err = %v, want a fork", err)
				}
			} else if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if recs != nil {
				t.Fatalf("records with an error: %d", len(recs))
			}
		})
	}
}

// entryDigest returns the subject digest of a lookup entry.
func entryDigest(t *testing.T, le api.LookupEntry) notarize.Digest {
	t.Helper()
	e, err := notarize.ParseEntry(le.Entry)
	if err != nil {
		t.Fatal(err)
	}
	v, err := e.VerifyLogged()
	if err != nil {
		t.Fatal(err)
	}
	return v.Statement.Digest()
}

// proven returns alice's current statement about d with its proof.
func (kl *keyedLog) proven(t *testing.T, d notarize.Digest) api.LookupEntry {
	t.Helper()
	r := kl.f.keyPage(kl.aliceID, KeyQuery{Cursor: notarize.Digest(prevDigest(t, kl.digests, d)), Limit: 1})
	if len(r.Entries) != 1 {
		t.Fatalf("no statement by alice about %s", d)
	}
	return r.Entries[0]
}

// prevDigest is the digest of ds before d, "" for the first.
func prevDigest(t *testing.T, ds []notarize.Digest, d notarize.Digest) string {
	t.Helper()
	i := slices.Index(ds, d)
	if i < 0 {
		t.Fatalf("%s not among the digests", d)
	}
	if i == 0 {
		return ""
	}
	return ds[i-1].String()
}

// TestKeyDigestsEndlessPages: a ledger that announces a next page forever
// (each moving forward by one digest) is cut off after MaxKeyPages.
func TestKeyDigestsEndlessPages(t *testing.T) {
	kl := newKeyedLog(t, 3)
	calls := 0
	kl.f.hook = func(q KeyQuery, r *api.KeyDigestsResponse) {
		calls++
		r.Entries = nil
		// An ever-growing cursor: "sha256:" and 64 hex digits of calls.
		r.Next = fmt.Sprintf("sha256:%064x", calls)
	}
	if _, err := kl.walk(""); !errors.Is(err, ErrTooMany) {
		t.Fatalf("err = %v, want ErrTooMany", err)
	}
	if calls != MaxKeyPages {
		t.Fatalf("%d pages asked, want %d", calls, MaxKeyPages)
	}
}

// TestKeyDigestsBadArguments: a malformed key ID, status, cursor or limit is
// refused before any request.
func TestKeyDigestsBadArguments(t *testing.T) {
	kl := newKeyedLog(t, 1)
	calls := 0
	kl.f.hook = func(KeyQuery, *api.KeyDigestsResponse) { calls++ }
	for _, tc := range []struct {
		key string
		q   KeyQuery
	}{
		{"", KeyQuery{}},
		{"ABC", KeyQuery{}},
		{kl.aliceID + "/../x", KeyQuery{}},
		{kl.aliceID, KeyQuery{Status: "revoked"}},
		{kl.aliceID, KeyQuery{Cursor: "sha256:nope"}},
		{kl.aliceID, KeyQuery{Limit: api.MaxLookupLimit + 1}},
		{kl.aliceID, KeyQuery{Limit: -1}},
	} {
		if _, err := kl.c.KeyDigests(t.Context(), tc.key, tc.q); err == nil {
			t.Errorf("KeyDigests(%q, %+v) = nil error", tc.key, tc.q)
		}
	}
	if calls != 0 {
		t.Fatalf("%d requests for bad arguments", calls)
	}
}

// FuzzKeyDigests feeds arbitrary bytes to KeyDigests as the ledger's
// answer. It must not panic, and what it accepts must be genuinely in the
// log, signed by the key asked for, with the asked status, in strictly
// increasing digest order, with a next cursor not behind the last digest.
func FuzzKeyDigests(f *testing.F) {
	s, vkey := fuzzNoteKey(f)
	kf := &keyFake{fakeOps: newFakeOps(f, newFakeLog(s, vkey))}
	alice, bob := newEntrySigner(f), newEntrySigner(f)
	aliceID := notarizetest.KeyID(f, alice)
	for i, st := range []notarize.Status{notarize.StatusTrusted, notarize.StatusUntrusted, notarize.StatusTrusted, notarize.StatusUnsupported} {
		for _, sg := range []signature.Signer{alice, bob} {
			kf.log.add(marshal(f, signEntry(f, sg, notarize.DigestOf(fmt.Appendf(nil, "fuzz %d", i)), st, t0)))
		}
	}
	for _, q := range []KeyQuery{{}, {Limit: 2}, {Status: notarize.StatusTrusted}} {
		good, err := kf.fakeOps.KeyDigests(f.Context(), aliceID, q)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(good, string(q.Status))
	}
	f.Add([]byte(`{"keyID":"`+aliceID+`","checkpoint":"","entries":[],"next":"sha256:00"}`), "")
	cfg := Config{URL: "https://ledger.test", Home: f.TempDir(), VerifierKey: vkey}
	c, err := newClient(f.Context(), cfg.withDefaults(), "https://ledger.test", kf)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte, status string) {
		st := notarize.Status(status)
		if !st.Valid() {
			st = ""
		}
		kf.mu.Lock()
		kf.raw = raw
		kf.mu.Unlock()
		p, err := c.KeyDigests(t.Context(), aliceID, KeyQuery{Status: st})
		if err != nil {
			return
		}
		var last notarize.Digest
		for _, r := range p.Records {
			d := r.Statement.Digest()
			if r.KeyID != aliceID || (st != "" && r.Statement.Predicate.Status != st) || d <= last {
				t.Fatalf("accepted a false or misordered record: %+v", r)
			}
			last = d
		}
		if p.Next != "" && p.Next < last {
			t.Fatalf("accepted a next cursor %s behind %s", p.Next, last)
		}
	})
}
