package ledger

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/notarize"
)

// Red team 23: the append's antispam decorator takes Submit's look-up of a
// statement identity on a sole writer's index (index.Decorator) instead
// of reading it again. Its claim: nothing indexes the identity between the
// two reads, because every other submission of it waits on the pending
// slot, "given up only once the entry is indexed (or failed)". The "(or
// failed)" is the hole: a submission whose receipt wait times out gives up
// the slot while its entry, already sequenced, is not indexed yet. A replay
// with another signature (same identity, other bytes, so Tessera's
// in-memory dedup, keyed on the bytes, misses it) then looks the identity
// up before the follower indexes the first entry. A duplicate appended
// fails with "DUPLICATE:".

// redteam23GateIndex is an index whose follower writes wait while hold is
// set, and whose Latest of digest want runs onLatest first (once): Latest
// is changesCurrent's read, which Ledger.future makes between its own
// look-up of the identity and the append (the decorator's look-up).
type redteam23GateIndex struct {
	storage.Index

	mu       sync.Mutex
	hold     chan struct{}
	want     []byte
	onLatest func()
}

func (g *redteam23GateIndex) Write(ctx context.Context, next uint64, batch []storage.Row) (bool, error) {
	g.mu.Lock()
	h := g.hold
	g.mu.Unlock()
	if h != nil {
		select {
		case <-h:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	return g.Index.Write(ctx, next, batch)
}

func (g *redteam23GateIndex) Latest(ctx context.Context, digest, keyID []byte) (storage.Stamp, byte, bool, error) {
	g.mu.Lock()
	var f func()
	if g.onLatest != nil && bytes.Equal(digest, g.want) {
		f, g.onLatest = g.onLatest, nil
	}
	g.mu.Unlock()
	if f != nil {
		f()
	}
	return g.Index.Latest(ctx, digest, keyID)
}

// open lets the follower write again.
func (g *redteam23GateIndex) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.hold != nil {
		close(g.hold)
		g.hold = nil
	}
}

// redteam23TimedOut starts a ledger whose index g holds the follower's
// writes, submits a statement (first) whose receipt wait then times out,
// and returns the ledger, the index, and a replay of that statement with a
// new signature (same identity, other bytes).
func redteam23TimedOut(t *testing.T) (*testLedger, *redteam23GateIndex, *notarize.Entry, [32]byte) {
	t.Helper()
	dir := t.TempDir()
	var g *redteam23GateIndex
	tl := startLedgerAt(t, func(t testing.TB) Storage {
		st := posixAt(dir)(t)
		g = &redteam23GateIndex{Index: st.Index()}
		return indexedStorage{Storage: st, idx: g}
	}, Config{ReceiptTimeout: 2 * time.Second})
	if !tl.store.tune.SoleWriter {
		t.Fatal("a POSIX index is not SoleWriter: the decorator's skipped read is not exercised")
	}
	s := newTestSigner(t)
	d := randomDigest(t)
	ts := time.Now().Add(-time.Hour).Truncate(time.Second)
	first := s.signAt(t, d, notarize.StatusTrusted, ts)
	replay := s.signAt(t, d, notarize.StatusTrusted, ts) // ECDSA: a new signature
	v1, err := first.Verify()
	if err != nil {
		t.Fatal(err)
	}
	v2, err := replay.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if v1.Identity() != v2.Identity() || bytes.Equal(mustMarshal(t, first), mustMarshal(t, replay)) {
		t.Fatal("the replay is not the same statement in other bytes")
	}
	raw, _, err := rawDigestAndKeys(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	g.hold, g.want = make(chan struct{}), raw
	g.mu.Unlock()
	t.Cleanup(g.open) // before the ledger closes (cleanups run last first)

	if _, err := tl.Submit(t.Context(), first); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("first submission: %v, want ErrUnavailable (its receipt wait times out)", err)
	}
	// The first entry is in the log, not in the index, and its pending
	// slot is given up.
	if n := redteam23Size(t, tl); n != 1 {
		t.Fatalf("log size %d after the timed-out submission, want 1", n)
	}
	id := v1.Identity()
	if _, found, err := g.Index.IndexOf(t.Context(), id[:]); err != nil || found {
		t.Fatalf("identity indexed %v (%v) while the follower is held", found, err)
	}
	tl.pendingMu.Lock()
	_, pending := tl.pending[v1.Identity()]
	tl.pendingMu.Unlock()
	if pending {
		t.Fatal("the timed-out submission still holds its pending slot")
	}
	return tl, g, replay, v1.Identity()
}

func redteam23Size(t *testing.T, tl *testLedger) uint64 {
	t.Helper()
	n, err := tl.reader.IntegratedSize(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRedteam23IndexedBetweenTheReads: the follower indexes the timed-out
// submission's entry after the replay's look-up (Ledger.future) and before
// its append. The decorator's own read, skipped on a sole writer since
// 4f611c6, found it there; now the replay is appended a second time.
//
// Failed on 4f611c6 (DUPLICATE: a second entry, Duplicate false); passes
// with the decorator reading again (2c6b38a), and with the timed-out
// append recorded (Ledger.unresolved: the replay then waits for its
// future). Fails again with keepUnresolved's record removed.
func TestRedteam23IndexedBetweenTheReads(t *testing.T) {
	tl, g, replay, id := redteam23TimedOut(t)
	g.mu.Lock()
	g.onLatest = func() {
		g.open()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for {
			if _, found, err := g.Index.IndexOf(ctx, id[:]); err == nil && found {
				return
			}
			select {
			case <-ctx.Done():
				t.Error("the follower did not index the first entry")
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	g.mu.Unlock()
	// With the timed-out append recorded (Ledger.unresolved) the replay
	// waits for its future and makes no Latest read: the follower is let
	// go here instead.
	timer := time.AfterFunc(300*time.Millisecond, g.open)
	defer timer.Stop()
	rec, err := tl.Submit(t.Context(), replay)
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	if !rec.Duplicate || rec.Index != 0 {
		t.Fatalf("DUPLICATE: the replay of a statement indexed at 0 before its append was appended at %d (duplicate %v); log size %d",
			rec.Index, rec.Duplicate, redteam23Size(t, tl))
	}
	if n := redteam23Size(t, tl); n != 1 {
		t.Fatalf("DUPLICATE: log size %d after the replay, want 1", n)
	}
}

// TestRedteam23ReplayBeforeIndexed: the replay comes while the follower
// has not indexed the timed-out submission's entry at all. Neither read
// can find it, before or after 4f611c6: the replay is appended again.
// Shared by both versions (the decorator's read only narrows the window
// the other test shows): fixed by the ledger remembering the appends it
// handed to Tessera and has not indexed (Ledger.unresolved); fails with
// keepUnresolved's record removed.
func TestRedteam23ReplayBeforeIndexed(t *testing.T) {
	tl, g, replay, _ := redteam23TimedOut(t)
	type result struct {
		dup bool
		idx uint64
		err error
	}
	done := make(chan result, 1)
	go func() {
		rec, err := tl.Submit(context.Background(), replay)
		if err != nil {
			done <- result{err: err}
			return
		}
		done <- result{dup: rec.Duplicate, idx: rec.Index}
	}()
	deadline := time.Now().Add(time.Second)
	for redteam23Size(t, tl) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	size := redteam23Size(t, tl)
	g.open()
	r := <-done
	if r.err != nil {
		t.Fatalf("replay: %v", r.err)
	}
	if size > 1 || !r.dup || r.idx != 0 {
		t.Fatalf("DUPLICATE: the replay of the statement logged at 0 (timed out, not yet indexed) was appended: log size %d, receipt at %d, duplicate %v",
			size, r.idx, r.dup)
	}
	// The record is dropped once the index covers the entry.
	deadline = time.Now().Add(5 * time.Second)
	for {
		tl.pendingMu.Lock()
		n := len(tl.unresolved)
		tl.pendingMu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d unresolved appends kept after the index covered them", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
