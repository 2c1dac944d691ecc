package ratelimit

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestBurstThenRate(t *testing.T) {
	c := newClock()
	l := New(2, 3, 100, c.now) // 2 a second, burst 3
	for i := range 3 {
		if _, ok := l.Take("a"); !ok {
			t.Fatalf("take %d refused within the burst", i)
		}
	}
	wait, ok := l.Take("a")
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("take past the burst = %v, %v; want refused, 500ms", wait, ok)
	}
	if _, ok := l.Take("b"); !ok {
		t.Fatal("another name shares a's bucket")
	}
	c.add(500 * time.Millisecond)
	if _, ok := l.Take("a"); !ok {
		t.Fatal("refused after refilling one token")
	}
	if _, ok := l.Take("a"); ok {
		t.Fatal("a second token appeared from nowhere")
	}
	if New(0, 1, 1, c.now) != nil {
		t.Fatal("rate 0 is not off")
	}
	var off *Limiter
	if _, ok := off.Take("x"); !ok {
		t.Fatal("a nil limiter refused")
	}
}

// TestTakeAllIsAllOrNothing: a request named by several buckets spends
// from none of them when one is empty.
func TestTakeAllIsAllOrNothing(t *testing.T) {
	c := newClock()
	l := New(1, 1, 100, c.now)
	l.Take("host")
	wait, ok := l.TakeAll(Name{Key: "net", Scale: 4}, Name{Key: "host"})
	if ok || wait != time.Second {
		t.Fatalf("TakeAll with an empty bucket = %v, %v", wait, ok)
	}
	// net was not spent: four tokens (scale 4) are all there.
	for i := range 4 {
		if _, ok := l.TakeAll(Name{Key: "net", Scale: 4}); !ok {
			t.Fatalf("scaled take %d refused: the failed TakeAll spent net's token", i)
		}
	}
}

func TestGiveBack(t *testing.T) {
	c := newClock()
	l := New(1, 2, 100, c.now)
	l.Take("a")
	l.Take("a")
	l.Give("a")
	if _, ok := l.Take("a"); !ok {
		t.Fatal("a token given back is not there")
	}
	l.Give("a")
	l.Give("a")
	l.Give("a")
	for range 2 {
		l.Take("a")
	}
	if _, ok := l.Take("a"); ok {
		t.Fatal("giving back overfilled the bucket past its burst")
	}
}

// TestMemoryBoundedAndFailsClosed: a flood of names never grows the table
// past max, and cannot evict a spent bucket to win its name a fresh burst:
// names beyond max share one overflow bucket.
func TestMemoryBoundedAndFailsClosed(t *testing.T) {
	c := newClock()
	l := New(1, 1, 1000, c.now)
	l.Take("victim-of-eviction") // spent: not idle
	for i := range 100_000 {
		l.Take(strconv.Itoa(i))
		if n := l.Len(); n > 1000 {
			t.Fatalf("%d buckets after %d names, at most 1000", n, i+1)
		}
		if i%1000 == 0 {
			c.add(time.Millisecond) // 0.1 s in all: the victim earns a tenth of a token
		}
	}
	if _, ok := l.Take("victim-of-eviction"); ok {
		t.Fatal("a flood of new names evicted a spent bucket and handed its name a fresh token")
	}
	// Idle (refilled) buckets go first: a busy name keeps its bucket and
	// newcomers get room once the flood's buckets refill.
	c.add(time.Hour)
	l.Take("busy")
	for i := range 2000 {
		if _, ok := l.Take("idle" + strconv.Itoa(i)); !ok && i > 0 {
			t.Fatalf("newcomer %d refused once the flood's buckets refilled", i)
		}
		c.add(time.Second)
		if _, ok := l.Take("busy"); !ok && i > 0 {
			t.Fatalf("busy name refused at %d", i)
		}
	}
}
