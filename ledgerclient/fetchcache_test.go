package ledgerclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// TestFetchCacheSharesTail: lookups of one Client, at once or one after
// the other, read each bundle of the tail once (verify's current lookup
// and its revocation lookups read the same tail). Every bundle read is
// held until both concurrent lookups are blocked (synctest.Wait: the
// first on the reads it sent, the second on those, or on reads of its
// own), so the second always meets the first's reads in flight: a cache
// that shared only finished reads would count those bundles twice.
func TestFetchCacheSharesTail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, c, _ := pinnedClient(t, 3)
		alice := newEntrySigner(t)
		ka := notarizetest.KeyID(t, alice)
		appendStatements(t, f, alice, digestA, notarize.StatusTrusted, t0, 1)
		f.grow(1500)
		var mu sync.Mutex
		reads := map[[2]uint64]int{}
		release := make(chan struct{})
		f.bundleHook = func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error) {
			mu.Lock()
			reads[[2]uint64{index, uint64(p)}]++
			mu.Unlock()
			<-release
			return b, err
		}
		errs := make(chan error, 3)
		for range 2 {
			go func() {
				_, err := c.Current(t.Context(), digestA, ka)
				errs <- err
			}()
		}
		synctest.Wait() // both lookups wait on bundle reads
		mu.Lock()
		held := len(reads)
		mu.Unlock()
		if held == 0 {
			t.Fatal("no bundle read in flight while both lookups wait")
		}
		close(release)
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.Current(t.Context(), digestA, ka); err != nil {
			t.Fatal(err)
		}
		if len(reads) < 5 {
			t.Fatalf("%d bundles read, want the whole log's", len(reads))
		}
		for k, n := range reads {
			if n != 1 {
				t.Errorf("bundle %d (width %d) read %d times by three lookups", k[0], k[1], n)
			}
		}
	})
}

// TestFetchCacheDropsALie: a bundle that failed a lookup's proof is not
// kept for the Client's next lookup, which reads it again (an honest
// answer then verifies).
func TestFetchCacheDropsALie(t *testing.T) {
	f, c, _ := pinnedClient(t, 3)
	alice := newEntrySigner(t)
	ka := notarizetest.KeyID(t, alice)
	appendStatements(t, f, alice, digestA, notarize.StatusTrusted, t0, 1)
	f.grow(1000)
	var lie atomic.Bool
	lie.Store(true)
	f.bundleHook = func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error) {
		if lie.Load() && index == 2 && err == nil {
			b = bytes.Clone(b)
			b[len(b)-1] ^= 1
		}
		return b, err
	}
	if _, err := c.Current(t.Context(), digestA, ka); !errors.Is(err, ErrBadProof) {
		t.Fatalf("a corrupted bundle: %v, want ErrBadProof", err)
	}
	lie.Store(false)
	if _, err := c.Current(t.Context(), digestA, ka); err != nil {
		t.Fatalf("the honest answer after a corrupted one: %v", err)
	}
}

// TestFetchCacheBounds: an answer larger than fetchCacheItem is not kept,
// the answers kept stay within fetchCacheBytes (oldest dropped first), and
// a reader that waited on a fetch whose own reader gave up fetches again.
func TestFetchCacheBounds(t *testing.T) {
	var fc fetchCache
	fetches := 0
	fetch := func(n int) func(context.Context) ([]byte, error) {
		return func(context.Context) ([]byte, error) { fetches++; return make([]byte, n), nil }
	}
	big := fetchKey{bundleLevel, 1, 0}
	for range 2 {
		if _, err := fc.get(t.Context(), big, fetch(fetchCacheItem+1)); err != nil {
			t.Fatal(err)
		}
	}
	if fetches != 2 {
		t.Fatalf("an answer over the item bound: %d fetches for 2 reads, want 2 (not kept)", fetches)
	}
	for i := range 3 * fetchCacheBytes / fetchCacheItem {
		if _, err := fc.get(t.Context(), fetchKey{bundleLevel, uint64(10 + i), 0}, fetch(fetchCacheItem)); err != nil {
			t.Fatal(err)
		}
	}
	if fc.bytes > fetchCacheBytes || len(fc.calls) != fetchCacheBytes/fetchCacheItem {
		t.Fatalf("%d bytes in %d answers kept, at most %d", fc.bytes, len(fc.calls), fetchCacheBytes)
	}
	if _, ok := fc.calls[fetchKey{bundleLevel, 10, 0}]; ok {
		t.Fatal("the oldest answer was kept, a newer one dropped")
	}
}

// TestFetchCacheWaiterFetchesAgain: a reader gives up while another waits
// on its fetch; the waiter then fetches on its own and gets the answer. The
// waiter is known to wait on the leader's fetch (synctest.Wait: it is
// blocked, and a fetch of its own would not block) before the leader gives
// up, and its own fetch runs once.
func TestFetchCacheWaiterFetchesAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var fc fetchCache
		k := fetchKey{0, 7, 0}
		release := make(chan struct{})
		lctx, cancel := context.WithCancel(t.Context())
		leader := make(chan error, 1)
		go func() {
			_, err := fc.get(lctx, k, func(ctx context.Context) ([]byte, error) {
				<-release
				return nil, fmt.Errorf("fetch: %w", ctx.Err())
			})
			leader <- err
		}()
		synctest.Wait() // the leader's fetch is running
		var own atomic.Int32
		waiter := make(chan []byte, 1)
		go func() {
			b, _ := fc.get(t.Context(), k, func(context.Context) ([]byte, error) { own.Add(1); return []byte("tile"), nil })
			waiter <- b
		}()
		synctest.Wait() // the waiter waits on the leader's fetch
		if n := own.Load(); n != 0 {
			t.Fatalf("the waiter fetched on its own (%d) while the leader's fetch ran", n)
		}
		cancel()
		close(release)
		if err := <-leader; err == nil {
			t.Fatal("the cancelled reader's fetch succeeded")
		}
		if b := <-waiter; string(b) != "tile" {
			t.Fatalf("the waiter got %q after the fetch it waited on failed", b)
		}
		if n := own.Load(); n != 1 {
			t.Fatalf("the waiter fetched %d times after the fetch it waited on failed, want 1", n)
		}
	})
}
