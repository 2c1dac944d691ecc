package proxy

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestByteBudgetFirstComeFirstServed: a request waiting for a large part
// of the budget is not starved by smaller requests that come after it and
// would fit: they wait behind it, and it gets the budget as soon as the
// bytes it waits for are given back. (Before, every release woke all
// waiters and the first to fit took the room, so a stream of small
// manifests kept a large one out until it was refused as busy.)
func TestByteBudgetFirstComeFirstServed(t *testing.T) {
	b := newByteBudget("test", 10)
	b.wait = time.Minute // the large request waits as long as the test needs
	releaseA, err := b.acquire(t.Context(), 6)
	if err != nil {
		t.Fatal(err)
	}
	large := make(chan error, 1)
	var releaseLarge func()
	go func() {
		var err error
		releaseLarge, err = b.acquire(t.Context(), 10)
		large <- err
	}()
	time.Sleep(300 * time.Millisecond) // the large request is waiting
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if release, err := b.acquire(ctx, 2); err == nil {
		release()
		t.Fatal("STARVATION: a small request that came later took room a waiting large one needs")
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the small request: %v, want to wait behind the large one until its context ends", err)
	}
	releaseA()
	select {
	case err := <-large:
		if err != nil {
			t.Fatalf("the large request after the room was given back: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the large request did not get the budget it waited for")
	}
	releaseLarge()
	releaseLarge() // idempotent
	release, err := b.acquire(t.Context(), 10)
	if err != nil {
		t.Fatalf("the whole budget after everything was given back: %v", err)
	}
	release()
}

// TestByteBudgetRefusals: a request that cannot fit is refused as busy
// after its wait (budgetWait), naming the bytes in flight; one whose context ends
// fails with the context's cause; a request larger than the budget takes
// all of it.
func TestByteBudgetRefusals(t *testing.T) {
	b := newByteBudget("upstream answers", 10)
	b.wait = 50 * time.Millisecond
	hold, err := b.acquire(t.Context(), 100) // larger than the budget: all of it
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.acquire(t.Context(), 1)
	if busy, ok := asBusy(err); !ok || busy.what != "upstream answers: 10 bytes in flight, at most 10" {
		t.Fatalf("err = %v, want busy naming 10 bytes in flight", err)
	}
	cause := errors.New("client went away")
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(cause)
	if _, err := b.acquire(ctx, 1); !errors.Is(err, cause) {
		t.Fatalf("err = %v, want the context's cause", err)
	}
	hold()
	release, err := b.acquire(t.Context(), 10)
	if err != nil {
		t.Fatal(err)
	}
	release()
}
