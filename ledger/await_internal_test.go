package ledger

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transparency-dev/tessera"
)

// fakeCheckpoints is a checkpoint store whose reads are counted.
type fakeCheckpoints struct {
	reads atomic.Int64
	mu    sync.Mutex
	size  uint64
	err   error
}

func (f *fakeCheckpoints) read(context.Context) ([]byte, error) {
	f.reads.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	if f.size == 0 {
		return nil, os.ErrNotExist
	}
	return fmt.Appendf(nil, "example.com/log\n%d\nAAAA\n\n— sig\n", f.size), nil
}

func (f *fakeCheckpoints) set(size uint64, err error) {
	f.mu.Lock()
	f.size, f.err = size, err
	f.mu.Unlock()
}

func futureAt(i uint64) tessera.IndexFuture {
	return func() (tessera.Index, error) { return tessera.Index{Index: i}, nil }
}

// TestAwaiterIdleReadsNothing: an awaiter nobody waits on does not read
// the checkpoint (Tessera's PublicationAwaiter reads it every poll period
// forever: 100 reads a second for an idle ledger).
func TestAwaiterIdleReadsNothing(t *testing.T) {
	f := &fakeCheckpoints{size: 5}
	a := newAwaiter(t.Context(), f.read, time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	if n := f.reads.Load(); n != 0 {
		t.Fatalf("idle awaiter read the checkpoint %d times", n)
	}
	// One submission: released by the first read, then the loop stops.
	if _, cp, err := a.Await(t.Context(), futureAt(3)); err != nil || len(cp) == 0 {
		t.Fatalf("Await: %q, %v", cp, err)
	}
	waitLoopStopped(t, a)
	before := f.reads.Load()
	time.Sleep(50 * time.Millisecond)
	if n := f.reads.Load() - before; n != 0 {
		t.Fatalf("awaiter read the checkpoint %d times after its last waiter left", n)
	}
}

func waitLoopStopped(t *testing.T, a *awaiter) {
	t.Helper()
	for range 1000 {
		a.mu.Lock()
		running := a.running
		a.mu.Unlock()
		if !running {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("the poll loop still runs with no waiter")
}

// TestAwaiterReleasesWhenCovered: a waiter is released by the first
// checkpoint whose size covers its index, not before, with that checkpoint.
func TestAwaiterReleasesWhenCovered(t *testing.T) {
	f := &fakeCheckpoints{}
	a := newAwaiter(t.Context(), f.read, time.Millisecond)
	done := make(chan []byte, 1)
	go func() {
		_, cp, err := a.Await(t.Context(), futureAt(7))
		if err != nil {
			t.Error(err)
		}
		done <- cp
	}()
	f.set(7, nil) // covers 0..6: not 7
	select {
	case cp := <-done:
		t.Fatalf("released by a checkpoint of size 7 for index 7: %q", cp)
	case <-time.After(30 * time.Millisecond):
	}
	f.set(8, nil)
	select {
	case cp := <-done:
		if n, err := parseCheckpointSize(cp); err != nil || n != 8 {
			t.Fatalf("released with %q (%d, %v)", cp, n, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not released by a covering checkpoint")
	}
}

// TestAwaiterErrors: a failing read after the wait began fails the
// waiter; a failed future, a cancelled context and the ledger's end too;
// an error seen before a wait began does not fail it.
func TestAwaiterErrors(t *testing.T) {
	boom := errors.New("disk on fire")
	f := &fakeCheckpoints{}
	ctx, stop := context.WithCancel(t.Context())
	a := newAwaiter(ctx, f.read, time.Millisecond)

	f.set(0, boom)
	if _, _, err := a.Await(t.Context(), futureAt(0)); !errors.Is(err, boom) {
		t.Fatalf("read error: %v", err)
	}
	waitLoopStopped(t, a)
	f.set(1, nil) // the earlier error is stale now
	if _, _, err := a.Await(t.Context(), futureAt(0)); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if _, _, err := a.Await(t.Context(), func() (tessera.Index, error) { return tessera.Index{}, tessera.ErrPushback }); !errors.Is(err, tessera.ErrPushback) {
		t.Fatalf("future error: %v", err)
	}
	wctx, wcancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer wcancel()
	if _, _, err := a.Await(wctx, futureAt(100)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	errc := make(chan error, 1)
	go func() { _, _, err := a.Await(t.Context(), futureAt(100)); errc <- err }()
	time.Sleep(10 * time.Millisecond)
	stop()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("ledger stopped: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiter outlived the ledger")
	}
}

// TestAwaiterManyWaitersOneLoop: concurrent submissions share one poll
// loop: each is released, and reads stay at about one per poll.
func TestAwaiterManyWaitersOneLoop(t *testing.T) {
	f := &fakeCheckpoints{}
	a := newAwaiter(t.Context(), f.read, 5*time.Millisecond)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			if _, _, err := a.Await(t.Context(), futureAt(uint64(i))); err != nil {
				t.Error(err)
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	f.set(200, nil)
	wg.Wait()
	if n := f.reads.Load(); n > 100 {
		t.Fatalf("%d reads for 200 waiters over a few polls: not one loop", n)
	}
}
