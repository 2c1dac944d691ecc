package proxy

import (
	"context"
	"path/filepath"
	"testing"
	"time"

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
			s.observe(Decision{Time: time.Now(), Upstream: "local", Repo: "app", Digest: d, Verdict: "TRUSTED", Outcome: OutcomeAllowed, Reference: string(rune('a' + i%26))})
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("observe blocked on a stuck writer")
	}
	if got := s.snapshot(d, "", 1, nil); got.Digests[0].Allowed != uint64(n) || got.Dropped == 0 {
		t.Fatalf("after %d decisions: allowed %d, dropped %d; want all counted and some writes dropped", n, got.Digests[0].Allowed, got.Dropped)
	}
	_ = tx.Rollback()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.close(ctx); err != nil {
		t.Fatal(err)
	}
}
