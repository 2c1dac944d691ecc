package ledgerclient

import (
	"context"
	"slices"
	"sync"
)

// Bounds of a Client's fetch cache: at most fetchCacheBytes of answers,
// none larger than fetchCacheItem (a hostile ledger's 16 MiB bundle is
// fetched, never kept), the oldest dropped first.
const (
	fetchCacheBytes = 32 << 20
	fetchCacheItem  = fetchCacheBytes / 8
)

// fetchKey names one tlog-tiles resource: an entry bundle (level
// bundleLevel) or the hash tile at level, index of width p (0: full).
type fetchKey struct {
	level, index uint64
	p            uint8
}

// bundleLevel marks a fetchKey as an entry bundle's: no tile level is
// that high.
const bundleLevel = ^uint64(0)

// fetchCall is one fetch of a key, shared by every reader asking for the
// key while it runs and kept once it succeeded.
type fetchCall struct {
	done chan struct{}
	b    []byte
	err  error
}

// fetchCache shares a Client's reads of the log's tail, entry bundles and
// hash tiles, between its lookups: verify's current lookup and its
// revocation lookups run at once and read the same tail after the map
// root, and a lookup asked again reads it again. A resource at (index,
// width) never changes in an append-only log, so one fetch serves them
// all; a concurrent reader waits for the running fetch rather than sending
// its own. What it holds are the ledger's untrusted bytes: every reader
// proves them against its own checkpoint as before (a lying answer fails
// every lookup that uses it, as it would each fetched on its own). A
// failed fetch is not kept: the readers waiting on it fetch on their own.
// The zero value is ready to use.
type fetchCache struct {
	mu    sync.Mutex
	calls map[fetchKey]*fetchCall
	order []fetchKey // kept keys, oldest first
	bytes int
}

// get returns the answer for k, from the cache, from a running fetch of
// it, or from fetch (under ctx), which it then keeps within the bounds.
func (fc *fetchCache) get(ctx context.Context, k fetchKey, fetch func(context.Context) ([]byte, error)) ([]byte, error) {
	for {
		fc.mu.Lock()
		if fc.calls == nil {
			fc.calls = map[fetchKey]*fetchCall{}
		}
		call, ok := fc.calls[k]
		if !ok {
			call = &fetchCall{done: make(chan struct{})}
			fc.calls[k] = call
			fc.mu.Unlock()
			call.b, call.err = fetch(ctx)
			fc.settle(k, call)
			close(call.done)
			return call.b, call.err
		}
		fc.mu.Unlock()
		select {
		case <-call.done:
			if call.err == nil {
				return call.b, nil
			}
			// The fetch this reader waited on failed (its own reader's
			// context may have ended): fetch again.
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// settle keeps call's answer for k, dropping the oldest answers to stay
// within the bounds, or forgets k if the fetch failed or is too large.
func (fc *fetchCache) settle(k fetchKey, call *fetchCall) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if call.err != nil || len(call.b) > fetchCacheItem {
		delete(fc.calls, k)
		return
	}
	fc.order = append(fc.order, k)
	fc.bytes += len(call.b)
	for fc.bytes > fetchCacheBytes && len(fc.order) > 0 {
		old := fc.order[0]
		fc.order = fc.order[1:]
		if c, ok := fc.calls[old]; ok {
			fc.bytes -= len(c.b)
			delete(fc.calls, old)
		}
	}
}

// forget drops the answers for keys: a read that failed with them does not
// leave a lying (or corrupted) answer for the next lookup.
func (fc *fetchCache) forget(keys []fetchKey) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for _, k := range keys {
		c, ok := fc.calls[k]
		if !ok {
			continue
		}
		select {
		case <-c.done:
		default:
			continue // still running: its readers get its answer
		}
		delete(fc.calls, k)
		fc.bytes -= len(c.b)
		if i := slices.Index(fc.order, k); i >= 0 {
			fc.order = slices.Delete(fc.order, i, i+1)
		}
	}
}

// reset drops every answer kept: after a fork or a rollback, nothing read
// from that ledger's view is kept for the next lookup (fetches still
// running keep their readers, and are not kept once done if they fail).
func (fc *fetchCache) reset() {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for k, c := range fc.calls {
		select {
		case <-c.done:
			delete(fc.calls, k)
		default:
		}
	}
	fc.order = slices.DeleteFunc(fc.order, func(k fetchKey) bool { _, ok := fc.calls[k]; return !ok })
	fc.bytes = 0
	for _, k := range fc.order {
		fc.bytes += len(fc.calls[k].b)
	}
}

// readBundle is c.ops.ReadEntryBundle through c's fetch cache.
func (c *Client) readBundle(ctx context.Context, index uint64, p uint8) ([]byte, error) {
	return c.fetches.get(ctx, fetchKey{bundleLevel, index, p}, func(ctx context.Context) ([]byte, error) {
		return c.ops.ReadEntryBundle(ctx, index, p)
	})
}

// readTile is c.ops.ReadTile through c's fetch cache.
func (c *Client) readTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	return c.fetches.get(ctx, fetchKey{level, index, p}, func(ctx context.Context) ([]byte, error) {
		return c.ops.ReadTile(ctx, level, index, p)
	})
}
