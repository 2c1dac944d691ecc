package replica_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/replica"
	"github.com/sigstore/sigstore/pkg/signature"
)

// scriptedSource hands out prepared batches whatever state it is asked
// from, and records whether Next was ever entered by two goroutines at
// once, or after the test closed it (the Follower is not safe for
// concurrent use, and a sync must leave nothing running behind it).
type scriptedSource struct {
	mu       sync.Mutex
	batches  []*ledgerclient.FollowBatch
	inFlight atomic.Int32
	overlap  atomic.Bool
	late     atomic.Bool
	closed   atomic.Bool
	calls    atomic.Int32
}

func (s *scriptedSource) Next(_ context.Context, st ledgerclient.FollowState) (*ledgerclient.FollowBatch, error) {
	if s.inFlight.Add(1) > 1 {
		s.overlap.Store(true)
	}
	defer s.inFlight.Add(-1)
	if s.closed.Load() {
		s.late.Store(true)
	}
	s.calls.Add(1)
	// Slow enough that the replica's reader is still in here while the
	// batch before is being stored, and deaf to ctx, as the Follower is
	// while it checks signatures.
	time.Sleep(20 * time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.batches) == 0 {
		return &ledgerclient.FollowBatch{From: st.Size, State: st}, nil
	}
	b := s.batches[0]
	s.batches = s.batches[1:]
	return b, nil
}

// badBatch is a batch of entries that are in the log but hold nothing to
// believe (a signature that does not verify): the replica stores them as
// bad entries.
func badBatch(from, n, size uint64) *ledgerclient.FollowBatch {
	b := &ledgerclient.FollowBatch{From: from, State: ledgerclient.FollowState{Size: size, Hashes: [][]byte{make([]byte, 32)}}}
	for i := range n {
		b.Entries = append(b.Entries, ledgerclient.FollowedEntry{Index: from + i, Err: fmt.Errorf("entry %d: %w", from+i, notarize.ErrBadSignature)})
	}
	return b
}

// TestSyncAppliesNothingAfterABatchItRefuses: the replica reads the next
// batch while it stores the one before, but a batch that does not follow
// the stored state ends the sync, and the batch read after it, although it
// would follow the stored state, is never applied. The source is never
// used by two goroutines at once, nor after Sync returned.
func TestSyncAppliesNothingAfterABatchItRefuses(t *testing.T) {
	src := &scriptedSource{batches: []*ledgerclient.FollowBatch{
		badBatch(0, 2, 2),
		badBatch(2, 1, 5), // claims to end at 5 with one entry: refused
		badBatch(2, 1, 3), // would follow [0, 2)
		badBatch(3, 1, 4),
	}}
	path := filepath.Join(t.TempDir(), "r.db")
	r, err := replica.Open(replica.Config{Path: path, Source: src})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	added, err := r.Sync(t.Context())
	if err == nil {
		t.Fatal("Sync accepted a batch that does not follow the stored state")
	}
	// A second sync at once must not meet the first one's reader.
	src.mu.Lock()
	src.batches = []*ledgerclient.FollowBatch{badBatch(7, 1, 8)} // refused: does not follow
	src.mu.Unlock()
	if _, err := r.Sync(t.Context()); err == nil {
		t.Fatal("Sync accepted a batch with a gap")
	}
	src.closed.Store(true)
	if added != 2 {
		t.Errorf("Sync added %d entries, want 2 (the first batch only)", added)
	}
	if s := r.Status(); s.Size != 2 || s.BadEntries != 2 || s.LastError == "" {
		t.Fatalf("status after a refused batch: %+v; want size 2, 2 bad entries and the error", s)
	}
	time.Sleep(50 * time.Millisecond) // a reader left running would call again
	if src.overlap.Load() || src.late.Load() {
		t.Fatalf("source used concurrently (%v) or after Sync returned (%v)", src.overlap.Load(), src.late.Load())
	}
	// The replica reopened from its file holds the same: nothing of the
	// batches after the refused one was committed.
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r2, err := replica.Open(replica.Config{Path: path, Source: &scriptedSource{}})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if s := r2.Status(); s.Size != 2 || s.BadEntries != 2 {
		t.Fatalf("reopened status %+v; want size 2, 2 bad entries", s)
	}
}

// TestSyncEndsWithItsContext: a sync whose context ends while a batch is
// being read returns that error, stores nothing more, and leaves no reader
// behind.
func TestSyncEndsWithItsContext(t *testing.T) {
	src := &scriptedSource{batches: []*ledgerclient.FollowBatch{badBatch(0, 1, 1), badBatch(1, 1, 2), badBatch(2, 1, 3)}}
	r, err := replica.Open(replica.Config{Path: filepath.Join(t.TempDir(), "r.db"), Source: src})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	_, err = r.Sync(ctx)
	src.closed.Store(true)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sync = %v, want the context's deadline", err)
	}
	time.Sleep(50 * time.Millisecond)
	if src.overlap.Load() || src.late.Load() {
		t.Fatalf("source used concurrently (%v) or after Sync returned (%v)", src.overlap.Load(), src.late.Load())
	}
	if s := r.Status(); s.Size >= 3 {
		t.Fatalf("status %+v: the sync went on after its context ended", s)
	}
}

// TestSyncManyBatchesInOrder: a real ledger followed in small batches
// (each read, proven and signature-checked while the one before is
// stored) ends with every statement at the log index the ledger's receipt
// gave it, and with the ledger's size.
func TestSyncManyBatchesInOrder(t *testing.T) {
	const n = 520 // 256-entry batches: 3 batches, the last one partial
	srv := ledgertest.Start(t)
	signers := []signature.SignerVerifier{newSigner(t), newSigner(t), newSigner(t), newSigner(t)}
	index := make([]uint64, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 128 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				e := entry(t, signers[i%int64(len(signers))], notarize.DigestOf(fmt.Append(nil, i)), notarize.StatusTrusted, time.Now().UTC())
				rc, err := srv.Ledger().Submit(t.Context(), e)
				if err != nil {
					t.Error(err)
					return
				}
				index[i] = rc.Index
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	plc, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: srv.URL, Home: t.TempDir(), VerifierKey: srv.VerifierKey})
	if err != nil {
		t.Fatal(err)
	}
	r, err := replica.Open(replica.Config{Path: filepath.Join(t.TempDir(), "r.db"), Source: ledgerclient.NewFollower(plc, 256)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	added, err := r.Sync(t.Context())
	if err != nil || added < n {
		t.Fatalf("Sync = %d, %v; want at least the %d statements submitted", added, err, n)
	}
	// The ledger's own entries (map roots) are in the size but are no
	// statements.
	if s := r.Status(); s.Size != uint64(added) || s.Records != n || s.BadEntries != 0 {
		t.Fatalf("status: size %d, %d records, %d bad entries after adding %d; want %d records", s.Size, s.Records, s.BadEntries, added, n)
	}
	for i := range int64(n) {
		recs, err := r.Records(t.Context(), notarize.DigestOf(fmt.Append(nil, i)))
		if err != nil || len(recs) != 1 || recs[0].Index != index[i] {
			t.Fatalf("Records(statement %d) = %+v, %v; want one record at index %d", i, recs, err, index[i])
		}
	}
}
