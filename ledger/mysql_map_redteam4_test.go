package ledger

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/transparency-dev/tessera"

	"github.com/notarize/docker-notarize/notarize"
)

// TestRedteam4MapRootInFlightWhenLockLost: instance A holds the shared
// map's update lock, has folded the log and handed its root entry to
// Tessera, which has not sequenced it yet (it waits in A's batch) when A's
// update is cancelled (shutdown: closeMap cancels the follower before the
// log is closed, and the log's close then flushes the root). database/sql
// rolls A's transaction back on the cancel, releasing the lock at once,
// while A's root is still on its way into the log. Instance B then takes
// the lock, waits for every entry already sequenced (A's root is not among
// them yet), and commits a root covering more entries. A's root is
// sequenced after B's: a root covering fewer entries than an earlier one,
// which every proxy's map audit reports as a lying ledger
// (WrongMapRootError).
func TestRedteam4MapRootInFlightWhenLockLost(t *testing.T) {
	t.Parallel()
	dsn := mysqlEnv.database(t)
	cfg := mysqlConfig(t, noteKey(t, "map.example/inflight"))
	a := startLedgerAt(t, mysqlAt(dsn), cfg)
	b := startLedgerAt(t, mysqlAt(dsn), cfg)
	fa, fb := manualMap(a, a.st.Map()), manualMap(b, b.st.Map())
	s := newTestSigner(t)
	submit := func(n int) {
		for range n {
			a.submit(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
		}
	}
	submit(2)
	if _, err := fb.step(t.Context(), time.Time{}); err != nil { // B commits the first root
		t.Fatal(err)
	}
	submit(2)
	if err := a.store.WaitProcessed(t.Context(), 5); err != nil {
		t.Fatal(err)
	}

	// A's root entry is queued, not sequenced, when its update is cancelled.
	realAdd := a.add
	release, queued := make(chan struct{}), make(chan struct{})
	ctx, cancel := context.WithCancel(t.Context())
	a.add = func(actx context.Context, e *tessera.Entry) tessera.IndexFuture {
		if !notarize.IsMapRoot(e.Data()) {
			return realAdd(actx, e)
		}
		done := make(chan struct{})
		var idx tessera.Index
		var err error
		go func() {
			<-release
			idx, err = realAdd(context.Background(), e)()
			close(done)
		}()
		close(queued)
		cancel() // the instance shuts down
		return func() (tessera.Index, error) { <-done; return idx, err }
	}
	aDone := make(chan error, 1)
	go func() { _, err := fa.step(ctx, time.Time{}); aDone <- err }()
	<-queued

	// More statements arrive; B takes the lock A lost and commits a root.
	submit(2)
	before, err := b.st.Map().MapState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	committed := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, err := fb.step(t.Context(), time.Time{}); err != nil {
			t.Logf("B's step: %v", err)
			continue
		}
		st, err := b.st.Map().MapState(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if st.Root != nil && (before.Root == nil || st.Root.Index != before.Root.Index) {
			committed = true
			break
		}
	}
	// A's root reaches the log (its batch is flushed).
	close(release)
	<-aDone
	a.add = realAdd
	if !committed {
		t.Log("B committed no root while A's root was in flight (the lock was held): the defence holds")
	}
	n, err := a.reader.NextIndex(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.store.WaitProcessed(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	idx := make([]uint64, n)
	for i := range idx {
		idx[i] = uint64(i)
	}
	var covered uint64
	var prev uint64
	if err := a.store.entries(t.Context(), idx, func(i uint64, data []byte) bool {
		if !notarize.IsMapRoot(data) {
			return true
		}
		mr, err := notarize.ParseMapRoot(data, a.id.Verifier)
		if err != nil {
			t.Errorf("entry %d: %v", i, err)
			return false
		}
		if mr.Size < covered {
			t.Errorf("BYPASS: root entry %d covers %d entries, after root entry %d covering %d: a shutdown with a root in flight released the map's lock, and every proxy's map audit now reports the ledger as lying", i, mr.Size, prev, covered)
		}
		covered, prev = mr.Size, i
		return true
	}); err != nil {
		t.Fatal(err)
	}
}
