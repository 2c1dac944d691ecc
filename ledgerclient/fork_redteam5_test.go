package ledgerclient

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// TestRedteam5ForkSlowConsistency: the consistency proof runs beside the
// answer's proofs and the tail's read (f466e1d). A forked ledger answers
// honestly from its fork and makes the consistency proof's tiles slow, so
// that the answer and its tail are proven long before the fork is found:
// the lookup is still an error (a *ForkError, or ErrBadProof: the
// consistency proof does not verify) with no result, and the stored
// checkpoint stays the pre-fork one (the next lookup of the forked ledger
// fails too). A fork whose tiles never arrive ends with an error within
// the client's timeout, never with the forked answer.
func TestRedteam5ForkSlowConsistency(t *testing.T) {
	for _, never := range []bool{false, true} {
		f, c, home := pinnedClient(t, 3)
		c.timeout = 2 * time.Second
		alice := newEntrySigner(t)
		ka := notarizetest.KeyID(t, alice)
		appendStatements(t, f, alice, digestA, notarize.StatusUntrusted, t0, 1)
		f.grow(10)
		if _, err := c.Current(t.Context(), digestA, ka); err != nil {
			t.Fatal(err)
		}
		stored := stateBytes(t, home, testOrigin)
		fork := newFakeLog(f.log.signer, f.log.vkey)
		fork.add([]byte("leaf 0"), []byte("another leaf 1"))
		f.setLog(fork)
		appendStatements(t, f, alice, digestA, notarize.StatusTrusted, t0.Add(time.Hour), 1)
		f.grow(600)
		f.tileGate = func(ctx context.Context, level, index uint64, p uint8) error {
			wait := 500 * time.Millisecond
			if never {
				wait = time.Hour
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
				return nil
			}
		}
		res, err := c.Current(context.Background(), digestA, ka)
		var fe *ForkError
		forked := func(err error) bool { return errors.As(err, &fe) || errors.Is(err, ErrBadProof) }
		switch {
		case res != nil:
			t.Fatalf("BYPASS: never %v: the forked ledger's answer was returned: %+v (err %v)", never, res, err)
		case !never && !forked(err):
			t.Fatalf("never %v: %v, want a *ForkError or a consistency proof that does not verify", never, err)
		case err == nil:
			t.Fatalf("never %v: no error", never)
		}
		if got := stateBytes(t, home, testOrigin); string(got) != string(stored) {
			t.Fatalf("BYPASS: never %v: the forked checkpoint replaced the stored one", never)
		}
		f.tileGate = nil
		if res, err := c.Current(t.Context(), digestA, ka); res != nil || !forked(err) {
			t.Fatalf("BYPASS: never %v: the next lookup of the forked ledger: %v %+v", never, err, res)
		}
	}
}
