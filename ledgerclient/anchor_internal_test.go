package ledgerclient

import (
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// TestAnchoredDecision: the anchored check is taken only by a client that
// takes recent roots, for a root with a time within its bound either way
// of its clock, a tail that is not empty and an answer that carries none
// of it; every other answer is proven with the whole tail.
func TestAnchoredDecision(t *testing.T) {
	now := time.Date(2026, 11, 30, 21, 0, 0, 0, time.UTC)
	cp := Checkpoint{Size: 2000}
	root := func(at time.Time) *notarize.MapRoot { return &notarize.MapRoot{Size: 1500, Time: at} }
	for _, tc := range []struct {
		name string
		lag  time.Duration
		mp   *api.MapProof
		mr   *notarize.MapRoot
		from uint64
		want bool
	}{
		{"recent root", 10 * time.Second, &api.MapProof{}, root(now.Add(-9 * time.Second)), 1500, true},
		{"at the bound", 10 * time.Second, &api.MapProof{}, root(now.Add(-10 * time.Second)), 1500, true},
		{"ahead, within the bound", 10 * time.Second, &api.MapProof{}, root(now.Add(10 * time.Second)), 1500, true},
		{"client takes no recent roots", 0, &api.MapProof{}, root(now), 1500, false},
		{"older than the bound", 10 * time.Second, &api.MapProof{}, root(now.Add(-11 * time.Second)), 1500, false},
		{"ahead of the clock past the bound", 10 * time.Second, &api.MapProof{}, root(now.Add(11 * time.Second)), 1500, false},
		{"a root without a time", 10 * time.Second, &api.MapProof{}, root(time.Time{}), 1500, false},
		{"no root", 10 * time.Second, nil, nil, 0, false},
		{"no tail", 10 * time.Second, &api.MapProof{}, root(now), 2000, false},
		{"tail carried inline", 10 * time.Second, &api.MapProof{Tail: &api.InlineTail{}}, root(now), 1500, false},
	} {
		c := &Client{maxLag: tc.lag, now: func() time.Time { return now }}
		if got := c.anchored(tc.mp, tc.mr, cp, tc.from); got != tc.want {
			t.Errorf("%s: anchored %v, want %v", tc.name, got, tc.want)
		}
	}
}
