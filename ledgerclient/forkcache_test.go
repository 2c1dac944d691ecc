package ledgerclient

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// TestForkLeavesNoTailInTheFetchCache: a lookup that meets a fork reads
// the forked view's tail before the consistency proof fails; none of it is
// kept, so the next lookup of the honest ledger succeeds at once instead
// of failing on the fork's bundles (found by red team 5).
func TestForkLeavesNoTailInTheFetchCache(t *testing.T) {
	f, c, _ := pinnedClient(t, 3)
	alice := newEntrySigner(t)
	ka := notarizetest.KeyID(t, alice)
	appendStatements(t, f, alice, digestA, notarize.StatusUntrusted, t0, 1)
	f.grow(10)
	if _, err := c.Current(t.Context(), digestA, ka); err != nil {
		t.Fatal(err)
	}
	honest := f.log
	fork := newFakeLog(f.log.signer, f.log.vkey)
	fork.add([]byte("leaf 0"), []byte("another leaf 1"))
	f.setLog(fork)
	appendStatements(t, f, alice, digestA, notarize.StatusTrusted, t0.Add(time.Hour), 1)
	f.grow(600)
	// The consistency proof's tiles come late, so the forked view's tail
	// bundles are read (and would be kept) before the fork is found.
	f.tileGate = func(ctx context.Context, level, index uint64, p uint8) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
			return nil
		}
	}
	var fe *ForkError
	if res, err := c.Current(t.Context(), digestA, ka); res != nil || (!errors.As(err, &fe) && !errors.Is(err, ErrBadProof)) {
		t.Fatalf("the forked view: %v %+v, want a fork found", err, res)
	}
	f.tileGate = nil
	f.setLog(honest)
	f.grow(600)
	res, err := c.Current(t.Context(), digestA, ka)
	if err != nil || res == nil || len(res.Records) != 1 || res.Records[0].Statement.Predicate.Status != notarize.StatusUntrusted {
		t.Fatalf("the honest ledger after the fork: %v %+v", err, res)
	}
}
