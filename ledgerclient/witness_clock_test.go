package ledgerclient

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestWitnessClockAhead: a quorum dated a little in the future counts; a quorum dated further ahead than MaxWitnessClockSkew is refused,
// since a frozen view would otherwise stay fresh until that date.
func TestWitnessClockAhead(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	ws, p := threeWitnesses(t)
	f, c := witnessedClient(t, 3, p, time.Minute, now)
	f.checkpointHook = cosignedBy(at(ws[0], now.Add(time.Minute)), at(ws[1], now.Add(2*time.Minute)))
	cp, err := c.Latest(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !cp.WitnessedAt.Equal(now.Add(time.Minute)) {
		t.Fatalf("WitnessedAt = %v, want %v", cp.WitnessedAt, now.Add(time.Minute))
	}
	// One witness far ahead does not move a 2-of-3 quorum.
	f.checkpointHook = cosignedBy(at(ws[0], now.Add(-10*time.Second)), at(ws[1], now.Add(24*time.Hour)))
	if cp, err := c.Latest(t.Context()); err != nil || !cp.WitnessedAt.Equal(now.Add(-10*time.Second)) {
		t.Fatalf("one witness ahead: %v, %v", cp.WitnessedAt, err)
	}
	// A quorum dated a day ahead.
	f.checkpointHook = cosignedBy(at(ws[0], now.Add(24*time.Hour)), at(ws[1], now.Add(24*time.Hour)))
	if _, err := c.Latest(t.Context()); !errors.Is(err, ErrBadCheckpoint) || !strings.Contains(err.Error(), "ahead of this clock") {
		t.Fatalf("a quorum dated a day ahead: %v", err)
	}
}
