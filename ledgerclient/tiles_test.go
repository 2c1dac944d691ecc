package ledgerclient

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestConsistencyTilesAtOnce: the tiles of a consistency proof are asked
// for together, not one after another (a ledger that answers a tile only
// once another is asked for still gets the proof checked), and the proof
// built from them still verifies: the client's checkpoint advances.
func TestConsistencyTilesAtOnce(t *testing.T) {
	f, c, _ := pinnedClient(t, 300)
	f.grow(70000 - 300)
	var mu sync.Mutex
	asked := 0
	two := make(chan struct{})
	f.tileGate = func(ctx context.Context, level, index uint64, p uint8) error {
		mu.Lock()
		if asked++; asked == 2 {
			close(two)
		}
		mu.Unlock()
		select {
		case <-two:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Second):
			return fmt.Errorf("tile %d/%d: no other tile asked for meanwhile", level, index)
		}
	}
	cp, err := c.Latest(t.Context())
	if err != nil || cp.Size != 70000 {
		t.Fatalf("Latest: %v %+v", err, cp)
	}
}
