package ledger

import (
	"container/list"
	"sync"
)

// bundleCacheBytes bounds the full entry bundles a ledger keeps in memory.
// Lookups and duplicate receipts read one bundle per entry they answer
// with; on a log flooded with large entries a bundle is up to 16 MiB, so
// the hot ones are kept rather than read again for every lookup.
const bundleCacheBytes = 64 << 20

// bundleCache keeps the most recently used full entry bundles, which never
// change, up to a total size. It is safe for concurrent use.
type bundleCache struct {
	max int

	mu    sync.Mutex
	size  int
	order *list.List               // of *cachedBundle, most recently used first
	byIdx map[uint64]*list.Element // bundle index → element of order
}

type cachedBundle struct {
	index uint64
	raw   []byte
}

func newBundleCache(maxBytes int) *bundleCache {
	return &bundleCache{max: maxBytes, order: list.New(), byIdx: map[uint64]*list.Element{}}
}

// get returns the full bundle at index, if cached.
func (c *bundleCache) get(index uint64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byIdx[index]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*cachedBundle).raw, true
}

// put caches the full bundle at index, evicting the least recently used
// ones to stay within max bytes. A bundle larger than max is not kept.
func (c *bundleCache) put(index uint64, raw []byte) {
	if len(raw) > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byIdx[index]; ok {
		return
	}
	c.byIdx[index] = c.order.PushFront(&cachedBundle{index: index, raw: raw})
	c.size += len(raw)
	for c.size > c.max {
		last := c.order.Back()
		b := last.Value.(*cachedBundle)
		c.order.Remove(last)
		delete(c.byIdx, b.index)
		c.size -= len(b.raw)
	}
}
