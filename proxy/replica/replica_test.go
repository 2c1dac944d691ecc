package replica_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
	"github.com/notarize/docker-notarize/proxy/replica"
)

func newSigner(t testing.TB) signature.SignerVerifier { return notarizetest.NewSigner(t) }

func entry(t testing.TB, sv signature.Signer, d notarize.Digest, s notarize.Status, at time.Time) *notarize.Entry {
	t.Helper()
	e, err := notarize.Sign(context.Background(), sv, notarize.NewStatement(d, "test", notarize.Predicate{Status: s, Name: "release", Timestamp: at}))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestReplicaFollowsLedger(t *testing.T) {
	srv := ledgertest.Start(t)
	home, dir := t.TempDir(), t.TempDir()
	lc, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: srv.URL, Home: home, VerifierKey: srv.VerifierKey})
	if err != nil {
		t.Fatal(err)
	}
	sv := newSigner(t)
	pub, _ := sv.PublicKey()
	keyID, _ := notarize.KeyID(pub)
	d1, d2 := notarize.DigestOf([]byte("one")), notarize.DigestOf([]byte("two"))
	at := time.Now().UTC().Add(-time.Hour)
	for _, e := range []*notarize.Entry{
		entry(t, sv, d1, notarize.StatusTrusted, at),
		entry(t, sv, d2, notarize.StatusTrusted, at),
		entry(t, sv, d1, notarize.StatusUntrusted, at.Add(time.Minute)),
	} {
		if _, err := lc.Submit(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	clk := &clock{now: time.Now()}
	cfg := replica.Config{Path: filepath.Join(dir, "replica.db"), Source: ledgerclient.NewFollower(lc, 0), MaxStaleness: time.Minute, Now: clk.Now}
	r, err := replica.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Records(t.Context(), d1); !errors.Is(err, replica.ErrStale) {
		t.Fatalf("Records before any sync = %v, want ErrStale", err)
	}
	if n, err := r.Sync(t.Context()); err != nil || n != 3 {
		t.Fatalf("Sync() = %d, %v; want 3 entries", n, err)
	}
	recs, err := r.Records(t.Context(), d1)
	if err != nil {
		t.Fatal(err)
	}
	if got := notarize.Decide(recs, d1, []string{keyID}); got.Verdict != notarize.Untrusted || len(recs) != 2 {
		t.Fatalf("d1: %d records, verdict %v; want 2, UNTRUSTED", len(recs), got.Verdict)
	}
	if recs[1].Statement.Predicate.Name != "release" || recs[0].Index != 0 || recs[1].Index != 2 {
		t.Fatalf("records %+v", recs)
	}

	// Restart: the state is persisted; only the new entry is read.
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.Submit(t.Context(), entry(t, sv, d2, notarize.StatusUnsupported, at.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	r, err = replica.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if s := r.Status(); s.Size != 3 || s.Records != 3 {
		t.Fatalf("status after reopen = %+v", s)
	}
	if n, err := r.Sync(t.Context()); err != nil || n != 1 {
		t.Fatalf("Sync() after reopen = %d, %v; want 1", n, err)
	}
	recs, _ = r.Records(t.Context(), d2)
	if got := notarize.Decide(recs, d2, []string{keyID}); got.Verdict != notarize.Unsupported {
		t.Fatalf("d2 verdict %v, want UNSUPPORTED", got.Verdict)
	}

	// Ledger gone: serve from the last verified state until it is stale.
	srv.Stop()
	if _, err := r.Sync(t.Context()); err == nil {
		t.Fatal("Sync() with the ledger down succeeded")
	}
	if _, err := r.Records(t.Context(), d2); err != nil {
		t.Fatalf("Records within max staleness = %v", err)
	}
	clk.Add(2 * time.Minute)
	_, err = r.Records(t.Context(), d2)
	if !errors.Is(err, replica.ErrStale) {
		t.Fatalf("Records past max staleness = %v, want ErrStale", err)
	}
	t.Logf("stale error: %v", err)
}

// fakeSource hands out prepared batches.
type fakeSource struct {
	batches []*ledgerclient.FollowBatch
	err     error
}

func (f *fakeSource) Next(_ context.Context, st ledgerclient.FollowState) (*ledgerclient.FollowBatch, error) {
	if f.err != nil {
		return nil, f.err
	}
	if len(f.batches) == 0 {
		return &ledgerclient.FollowBatch{From: st.Size, State: st}, nil
	}
	b := f.batches[0]
	f.batches = f.batches[1:]
	return b, nil
}

func TestReplicaSkipsBadEntries(t *testing.T) {
	sv := newSigner(t)
	d := notarize.DigestOf([]byte("x"))
	e := entry(t, sv, d, notarize.StatusTrusted, time.Now())
	v, err := e.Verify()
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeSource{batches: []*ledgerclient.FollowBatch{{
		From: 0,
		Entries: []ledgerclient.FollowedEntry{
			{Index: 0, Err: notarize.ErrBadSignature},
			{Index: 1, Record: notarize.Record{Index: 1, KeyID: v.KeyID, Statement: v.Statement}},
		},
		State: ledgerclient.FollowState{Size: 2, Hashes: [][]byte{make([]byte, 32)}},
	}}}
	r, err := replica.Open(replica.Config{Path: filepath.Join(t.TempDir(), "r.db"), Source: src})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s := r.Status(); s.BadEntries != 1 || s.Records != 1 || s.Size != 2 {
		t.Fatalf("status %+v", s)
	}
	recs, err := r.Records(t.Context(), d)
	if err != nil || len(recs) != 1 || recs[0].Index != 1 {
		t.Fatalf("Records = %+v, %v", recs, err)
	}
	// A batch that does not start at the replica's size is refused.
	src.batches = []*ledgerclient.FollowBatch{{From: 5, State: ledgerclient.FollowState{Size: 5}, Entries: []ledgerclient.FollowedEntry{{Index: 5}}}}
	if _, err := r.Sync(t.Context()); err == nil {
		t.Fatal("Sync accepted a batch with a gap")
	}
	if s := r.Status(); s.Size != 2 || s.LastError == "" {
		t.Fatalf("status after a bad batch %+v", s)
	}
}

// switchable forwards to one ledger, then to another.
type switchable struct{ target atomic.Pointer[url.URL] }

func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	httputil.NewSingleHostReverseProxy(s.target.Load()).ServeHTTP(w, r)
}

func TestReplicaKeepsServingThroughAFork(t *testing.T) {
	a := ledgertest.Start(t)
	b := ledgertest.Start(t, ledgertest.WithSignerKey(a.SignerKey), ledgertest.WithOrigin(a.Origin))
	sw := &switchable{}
	ua, _ := url.Parse(a.URL)
	ub, _ := url.Parse(b.URL)
	sw.target.Store(ua)
	front := httptest.NewServer(sw)
	defer front.Close()

	sv := newSigner(t)
	d := notarize.DigestOf([]byte("app"))
	submit := func(srv string, e *notarize.Entry) {
		c, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: srv, Home: t.TempDir(), VerifierKey: a.VerifierKey})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Submit(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Now().UTC().Add(-time.Hour)
	submit(a.URL, entry(t, sv, d, notarize.StatusTrusted, at))
	// B: another history under the same key, longer than A's.
	submit(b.URL, entry(t, sv, d, notarize.StatusUntrusted, at))
	submit(b.URL, entry(t, sv, notarize.DigestOf([]byte("other")), notarize.StatusTrusted, at))

	clk := &clock{now: time.Now()}
	lc, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: front.URL, Home: t.TempDir(), VerifierKey: a.VerifierKey})
	if err != nil {
		t.Fatal(err)
	}
	r, err := replica.Open(replica.Config{Path: filepath.Join(t.TempDir(), "r.db"), Source: ledgerclient.NewFollower(lc, 0), MaxStaleness: time.Minute, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	sw.target.Store(ub)
	_, err = r.Sync(t.Context())
	var fe *ledgerclient.ForkError
	if !errors.As(err, &fe) {
		t.Fatalf("Sync() after the fork = %v, want *ForkError", err)
	}
	recs, err := r.Records(t.Context(), d)
	if err != nil || len(recs) != 1 || recs[0].Status() != notarize.StatusTrusted {
		t.Fatalf("within max staleness the last verified state must be served: %+v, %v", recs, err)
	}
	clk.Add(2 * time.Minute)
	if _, err := r.Records(t.Context(), d); !errors.Is(err, replica.ErrStale) || !strings.Contains(err.Error(), "SECURITY ERROR") {
		t.Fatalf("past max staleness after a fork: %v", err)
	}
	if s := r.Status(); s.Size != 1 {
		t.Fatalf("the replica moved to the forked history: %+v", s)
	}
}

// blockingSource counts calls to Next and, while block is set, holds each
// call until release is closed.
type blockingSource struct {
	calls   atomic.Int64
	block   atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func (b *blockingSource) Next(_ context.Context, st ledgerclient.FollowState) (*ledgerclient.FollowBatch, error) {
	b.calls.Add(1)
	if b.block.Load() {
		b.entered <- struct{}{}
		<-b.release
	}
	return &ledgerclient.FollowBatch{From: st.Size, State: st}, nil
}

// TestRefreshSharesSyncs: Refresh always leaves the replica synced by a sync
// that started after it was called, and refreshes waiting behind one sync
// share the next one instead of each running their own.
func TestRefreshSharesSyncs(t *testing.T) {
	src := &blockingSource{entered: make(chan struct{}), release: make(chan struct{})}
	r, err := replica.Open(replica.Config{Path: filepath.Join(t.TempDir(), "r.db"), Source: src})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i := range 2 {
		if err := r.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := src.calls.Load(); n != int64(i+1) {
			t.Fatalf("after %d sequential refreshes: %d syncs, want %d", i+1, n, i+1)
		}
	}

	// A sync is in progress (it started before the refreshes were asked for,
	// so it does not count for them): the waiting refreshes share one sync after it.
	src.calls.Store(0)
	src.block.Store(true)
	syncDone := make(chan error, 1)
	go func() { _, err := r.Sync(t.Context()); syncDone <- err }()
	<-src.entered
	src.block.Store(false)
	const waiters = 8
	var wg sync.WaitGroup
	for range waiters {
		wg.Go(func() {
			if err := r.Refresh(t.Context()); err != nil {
				t.Error(err)
			}
		})
	}
	time.Sleep(100 * time.Millisecond) // let them queue behind the sync in progress
	close(src.release)
	if err := <-syncDone; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	// Exactly 2 when every waiter queued before the first sync ended, as it
	// does unless the scheduler stalls a goroutine for the whole sleep.
	if n := src.calls.Load(); n < 2 || n > waiters/2 {
		t.Fatalf("a sync in progress and %d waiting refreshes made %d syncs, want 2 (shared)", waiters, n)
	}
}
