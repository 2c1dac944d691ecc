package proxy

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/notarize/docker-notarize/notarize"
)

// TestRecordingNeverBlocks: when the writer cannot keep up (here: it is
// held by a write transaction that does not end), observe still returns at
// once, counts the decision in memory, and counts the write it dropped.
func TestRecordingNeverBlocks(t *testing.T) {
	s := newDigestStats(100)
	if err := s.open(filepath.Join(t.TempDir(), "decisions.db"), nil); err != nil {
		t.Fatal(err)
	}
	// Hold bbolt's writer lock: the writer goroutine blocks in its first flush.
	tx, err := s.db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	d := notarize.DigestOf([]byte("x"))
	n := decisionQueue + decisionBatch + 100
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			s.observe(Decision{Time: time.Now(), Upstream: "local", Repo: "app", Digest: d, Verdict: "UNKNOWN", Outcome: OutcomeRefused, Reference: string(rune('a' + i%26))})
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("observe blocked on a stuck writer")
	}
	if got := s.snapshot(d, "", 1, nil); got.Digests[0].Denied != uint64(n) || got.Dropped == 0 {
		t.Fatalf("after %d refusals: denied %d, dropped %d; want all counted and some writes dropped", n, got.Digests[0].Denied, got.Dropped)
	}
	_ = tx.Rollback()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestDecisionRetention: counters and buckets not touched for
// decisionRetention are swept from memory and from the file, and a file
// holding expired ones (the proxy was down) loads without them; the rings
// keep only their last entries across a reopen.
func TestDecisionRetention(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.db")
	s := newDigestStats(100)
	if err := s.open(path, nil); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	old, fresh := notarize.DigestOf([]byte("old")), notarize.DigestOf([]byte("fresh"))
	s.observe(Decision{Time: now.Add(-decisionRetention - time.Hour), Upstream: "local", Repo: "old", Digest: old, Verdict: "UNKNOWN", Outcome: OutcomeRefused})
	for range recentRefusals + 5 {
		s.observe(Decision{Time: now, Upstream: "local", Repo: "fresh", Digest: fresh, Verdict: "UNKNOWN", Outcome: OutcomeRefused})
	}
	ctx := t.Context()
	if err := s.close(ctx); err != nil {
		t.Fatal(err)
	}
	// Reopened: the expired counters are not loaded, the rings are bounded.
	s = newDigestStats(100)
	if err := s.open(path, nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.digest(old, nil); ok {
		t.Error("an expired digest was loaded")
	}
	if ds, ok := s.digest(fresh, nil); !ok || ds.Denied != recentRefusals+5 {
		t.Errorf("fresh digest after reopen: %+v", ds)
	}
	if s.refusals.n != recentRefusals || s.recent.n != recentRefusals {
		t.Errorf("rings after reopen: %d refusals, %d decisions", s.refusals.n, s.recent.n)
	}
	// A sweep removes from memory and from the file.
	x := s.expire(now.Add(decisionRetention + time.Hour))
	if len(x.digests) != 1 || len(x.repos) != 1 || len(x.buckets) == 0 {
		t.Fatalf("sweep removed %+v", x)
	}
	var seq uint64
	if err := s.flush(nil, x, &seq); err != nil {
		t.Fatal(err)
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(decDigests).Stats().KeyN + tx.Bucket(decRepos).Stats().KeyN + tx.Bucket(decBuckets).Stats().KeyN; n != 0 {
			t.Errorf("%d counters left in the file after the sweep", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestDecisionRecordRefusesBadFile: a file of another format, or with a
// corrupt entry, is refused with the fix (remove it), not read as zeros.
func TestDecisionRecordRefusesBadFile(t *testing.T) {
	for name, put := range map[string]func(tx *bolt.Tx) error{
		"format": func(tx *bolt.Tx) error {
			m, err := tx.CreateBucketIfNotExists(decMeta)
			if err != nil {
				return err
			}
			return m.Put(decFormatKey, []byte{9})
		},
		"corrupt": func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(decDigests)
			if err != nil {
				return err
			}
			return b.Put([]byte("sha256:x"), []byte("{not json"))
		},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "decisions.db")
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(put)
			if cerr := db.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			err = newDigestStats(10).open(path, nil)
			if err == nil || !strings.Contains(err.Error(), "remove it") {
				t.Fatalf("open = %v, want a refusal saying to remove the file", err)
			}
		})
	}
}
