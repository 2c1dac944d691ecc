package ledger

import (
	"bytes"
	"testing"
)

func TestBundleCacheEvictsLeastRecentlyUsedBySize(t *testing.T) {
	c := newBundleCache(10)
	c.put(1, bytes.Repeat([]byte{1}, 4))
	c.put(2, bytes.Repeat([]byte{2}, 4))
	if _, ok := c.get(1); !ok { // 1 is now the most recent
		t.Fatal("bundle 1 not cached")
	}
	c.put(3, bytes.Repeat([]byte{3}, 4)) // 12 bytes > 10: 2 goes
	if _, ok := c.get(2); ok {
		t.Fatal("the least recently used bundle was kept")
	}
	for _, i := range []uint64{1, 3} {
		if b, ok := c.get(i); !ok || b[0] != byte(i) {
			t.Fatalf("bundle %d: %v %v", i, b, ok)
		}
	}
	c.put(4, make([]byte, 11)) // larger than the cache
	if _, ok := c.get(4); ok || c.size > 10 {
		t.Fatalf("an oversized bundle was kept (size %d)", c.size)
	}
}
