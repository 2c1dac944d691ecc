package proxy

import (
	"fmt"
	"testing"
	"time"
)

// TestUnknownNamesPacing: one line per name per interval, with the count
// of the requests not logged; past the bound, new names share one line
// per interval instead of growing the map.
func TestUnknownNamesPacing(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	u := newUnknownNames(func() time.Time { return now })
	u.max = 3
	if log, _, _ := u.note("ghcr.io"); !log {
		t.Fatal("first request for a name not logged")
	}
	for range 5 {
		if log, _, _ := u.note("ghcr.io"); log {
			t.Fatal("a name logged twice in one interval")
		}
	}
	now = now.Add(unknownLogEvery)
	if log, n, _ := u.note("ghcr.io"); !log || n != 5 {
		t.Fatalf("after the interval: log %v, %d more requests, want true, 5", log, n)
	}
	u.note("a")
	u.note("b")
	// The map is full of names logged in this interval: others share one line.
	logged := 0
	for i := range 100 {
		log, _, overflow := u.note(fmt.Sprintf("made-up-%d", i))
		if !overflow {
			t.Fatalf("name %d remembered past the bound", i)
		}
		if log {
			logged++
		}
	}
	if logged != 1 || len(u.names) != 3 {
		t.Fatalf("100 names past the bound: %d lines, %d names kept; want 1, 3", logged, len(u.names))
	}
	// Once the interval is over, expired names make room.
	now = now.Add(unknownLogEvery)
	if log, _, overflow := u.note("quay.io"); !log || overflow {
		t.Fatalf("after the interval a new name: log %v, overflow %v", log, overflow)
	}
}
