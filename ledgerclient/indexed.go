package ledgerclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// ErrNotIndexed is returned (wrapped) by AwaitIndexed when ctx ends before
// a map root covers the entry: the entry is in the log (its receipt was
// verified), but a client that takes recent map roots (Config.MaxIndexLag)
// may not be shown it, by a front, for up to its lag after a root covers it.
var ErrNotIndexed = errors.New("not yet in the ledger's verifiable index")

// awaitPoll is the first wait between AwaitIndexed's lookups, doubled up to
// awaitPollMax: a ledger commits a map root every few seconds under load
// (and within its commit interval of the first entry waiting otherwise).
const (
	awaitPoll    = 250 * time.Millisecond
	awaitPollMax = 2 * time.Second
)

// AwaitIndexed returns once a map root the ledger committed in its log
// covers the log entry index, a statement by keyID about d that the caller
// submitted (its verified receipt's index): from then on, every lookup of
// keyID's statements about d is proven to include it, however a front
// answers, whether or not the client takes recent map roots. It asks the
// ledger for keyID's current statement about d (Current, every answer
// verified), waiting between the asks, until the answer's map root covers
// index; it returns ErrNotIndexed when ctx ends first. A ledger that keeps
// no map (its answers carry no map root) is read whole by every client
// (the completeness proof is the whole log up to the checkpoint), so there
// is nothing to wait for. It returns what the last answer was proven
// complete up to.
func (c *Client) AwaitIndexed(ctx context.Context, d notarize.Digest, keyID string, index uint64) (Completeness, error) {
	wait := awaitPoll
	for {
		res, err := c.Current(ctx, d, keyID)
		if err != nil {
			if ctx.Err() != nil {
				return Completeness{}, fmt.Errorf("entry %d: %w: %w", index, ErrNotIndexed, ctx.Err())
			}
			return Completeness{}, fmt.Errorf("wait for entry %d in the ledger's index: %w", index, err)
		}
		if res.Complete.MapSize > index || res.Complete.MapSize == 0 {
			return res.Complete, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return res.Complete, fmt.Errorf("entry %d: %w: the newest map root covers %d entries: %w", index, ErrNotIndexed, res.Complete.MapSize, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, awaitPollMax)
	}
}
