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
// submitted (its verified receipt's index), and this client's clock has
// passed hold. It asks the ledger for keyID's current statement about d
// (Current, every answer verified), waiting between the asks, until the
// answer's map root covers index (an answer without a map root, from a
// ledger that keeps none or a front that strips it, is proven with the
// whole log and ends the asking too); then it waits for hold. It returns
// ErrNotIndexed when ctx ends first, and what the last answer was proven
// complete up to.
//
// The root alone proves nothing to other clients: a front can show a
// client that takes recent roots an older root, still recent, that misses
// the entry (red team 9). But every root that misses it had its time read
// before the entry was indexed, and so before its receipt: with hold the
// receipt's time plus the largest Config.MaxIndexLag of the clients to
// protect (plus clock skew), no such root is recent to them any more once
// AwaitIndexed returns, and every lookup they make of keyID's statements
// about d is proven to include the entry, however a front answers.
func (c *Client) AwaitIndexed(ctx context.Context, d notarize.Digest, keyID string, index uint64, hold time.Time) (Completeness, error) {
	done, err := c.awaitRoot(ctx, d, keyID, index)
	if err != nil {
		return done, err
	}
	if wait := hold.Sub(c.now()); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return done, fmt.Errorf("entry %d: %w: a root covers it, but an older root is recent for another %s: %w", index, ErrNotIndexed, wait.Round(time.Second), ctx.Err())
		case <-t.C:
		}
	}
	return done, nil
}

// awaitRoot asks until an answer's map root covers index, or carries none.
func (c *Client) awaitRoot(ctx context.Context, d notarize.Digest, keyID string, index uint64) (Completeness, error) {
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
