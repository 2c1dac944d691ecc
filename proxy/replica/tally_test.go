package replica_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
	"github.com/notarize/docker-notarize/proxy/replica"
)

// TestReplicaTallies: each key's tally counts every digest once, under
// the status of its current statement (greatest signed timestamp), so a
// later revocation moves a count and an older statement logged after it (a
// replay) does not move it back; revocations are listed newest first;
// History is a digest's whole record; all of it survives a reopen.
func TestReplicaTallies(t *testing.T) {
	srv := ledgertest.Start(t)
	lc, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: srv.URL, Home: t.TempDir(), VerifierKey: srv.VerifierKey})
	if err != nil {
		t.Fatal(err)
	}
	a, b := newSigner(t), newSigner(t)
	keyA, keyB := notarizetest.KeyID(t, a), notarizetest.KeyID(t, b)
	d1, d2, d3 := notarize.DigestOf([]byte("one")), notarize.DigestOf([]byte("two")), notarize.DigestOf([]byte("three"))
	at := time.Now().UTC().Add(-time.Hour)
	for _, e := range []*notarize.Entry{
		entry(t, a, d1, notarize.StatusTrusted, at),
		entry(t, a, d2, notarize.StatusTrusted, at),
		entry(t, a, d1, notarize.StatusUntrusted, at.Add(2*time.Minute)),
		entry(t, a, d1, notarize.StatusTrusted, at.Add(time.Minute)), // older than the revocation
		entry(t, b, d3, notarize.StatusUnsupported, at),
	} {
		if _, err := lc.Submit(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	cfg := replica.Config{Path: filepath.Join(t.TempDir(), "replica.db"), Source: ledgerclient.NewFollower(lc, 0)}
	r, err := replica.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	check := func(r *replica.Replica) {
		t.Helper()
		tal, err := r.Tallies([]string{keyA, keyB, strings.Repeat("00", 32)})
		if err != nil {
			t.Fatal(err)
		}
		want := []replica.Tally{
			{KeyID: keyA, Trusted: 1, Untrusted: 1},
			{KeyID: keyB, Unsupported: 1},
			{KeyID: strings.Repeat("00", 32)},
		}
		for i := range want {
			if tal[i] != want[i] {
				t.Errorf("tally %d = %+v, want %+v", i, tal[i], want[i])
			}
		}
		revs, err := r.Revocations([]string{keyA, keyB}, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(revs) != 2 || revs[0].Digest != d3 || revs[0].KeyID != keyB || revs[0].Status != notarize.StatusUnsupported ||
			revs[1].Digest != d1 || revs[1].Index != 2 || revs[1].Status != notarize.StatusUntrusted || !revs[1].Timestamp.Equal(at.Add(2*time.Minute)) {
			t.Errorf("revocations = %+v", revs)
		}
		all := func(string) bool { return true }
		hist, omitted, err := r.History(d1, all, 0)
		if err != nil || omitted != 0 || len(hist) != 3 || hist[0].Index != 0 || hist[2].Index != 3 || hist[2].KeyID != keyA {
			t.Errorf("History(d1) = %+v, %d omitted, %v", hist, omitted, err)
		}
		// Only keyB's records are kept whole; of the others, the latest one.
		hist, omitted, err = r.History(d1, func(id string) bool { return id == keyB }, 1)
		if err != nil || omitted != 2 || len(hist) != 1 || hist[0].Index != 3 {
			t.Errorf("History(d1, none kept, 1 other) = %+v, %d omitted, %v", hist, omitted, err)
		}
		if hist, _, err := r.History(d3, all, 0); err != nil || len(hist) != 1 || hist[0].KeyID != keyB {
			t.Errorf("History(d3) = %+v, %v", hist, err)
		}
	}
	check(r)
	if _, err := r.Tallies([]string{"nothex"}); err == nil {
		t.Error("Tallies of a malformed key ID succeeded")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r, err = replica.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	check(r)
}

// TestReplicaRevocationsBounded: each key keeps its last MaxRevocations
// revocations, across batches, so a stranger's flood of revocations
// neither grows without bound nor pushes a policy signer's out; the
// tallies still count every digest.
func TestReplicaRevocationsBounded(t *testing.T) {
	signer, stranger := strings.Repeat("cd", 32), strings.Repeat("ab", 32)
	var batches []*ledgerclient.FollowBatch
	n := uint64(0)
	add := func(b *ledgerclient.FollowBatch, key string) {
		d := notarize.DigestOf([]byte(fmt.Sprint("revoked ", n)))
		b.Entries = append(b.Entries, ledgerclient.FollowedEntry{Index: n, Record: notarize.Record{Index: n, KeyID: key,
			Statement: notarize.NewStatement(d, "x", notarize.Predicate{Status: notarize.StatusUntrusted, Timestamp: time.Unix(1, 0)})}})
		n++
	}
	for i, size := range []int{700, 700} {
		b := &ledgerclient.FollowBatch{From: n}
		if i == 0 {
			add(b, signer)
		}
		for range size {
			add(b, stranger)
		}
		b.State = ledgerclient.FollowState{Size: n, Hashes: [][]byte{make([]byte, 32)}}
		batches = append(batches, b)
	}
	r, err := replica.Open(replica.Config{Path: filepath.Join(t.TempDir(), "r.db"), Source: &fakeSource{batches: batches}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	revs, err := r.Revocations([]string{stranger}, 2*replica.MaxRevocations)
	if err != nil {
		t.Fatal(err)
	}
	if len(revs) != replica.MaxRevocations || revs[0].Index != n-1 || revs[len(revs)-1].Index != n-replica.MaxRevocations {
		t.Fatalf("%d revocations kept, newest %d, oldest %d; want the last %d", len(revs), revs[0].Index, revs[len(revs)-1].Index, replica.MaxRevocations)
	}
	if revs, err := r.Revocations([]string{signer}, 10); err != nil || len(revs) != 1 || revs[0].Index != 0 || revs[0].KeyID != signer {
		t.Fatalf("the signer's revocation after a stranger's flood: %+v, %v", revs, err)
	}
	if revs, err := r.Revocations([]string{signer, stranger}, 3); err != nil || len(revs) != 3 || revs[0].Index != n-1 || revs[2].Index != n-3 {
		t.Fatalf("merged revocations: %+v, %v", revs, err)
	}
	if tal, err := r.Tallies([]string{stranger}); err != nil || tal[0].Untrusted != n-1 {
		t.Fatalf("tally %+v, %v; want %d untrusted", tal, err, n-1)
	}
}
