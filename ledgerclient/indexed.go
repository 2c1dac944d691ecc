package ledgerclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// ErrNotIndexed is returned (wrapped) by AwaitIndexed when ctx ends before
// a map root covers the entry and the lag has passed from that root's
// time: the entry is in the log (its receipt was verified), but a client
// that takes recent map roots (Config.MaxIndexLag) may still be shown,
// by a front, an older root without it.
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
// submitted (its verified receipt's index), and then, with lag positive,
// once this client's clock has passed that root's time plus lag. It asks
// the ledger for keyID's current statement about d (Current, every answer
// verified), waiting between the asks, until the answer's root covers
// index, then waits; it returns ErrNotIndexed when ctx ends first, and what
// the last answer was proven complete up to. An answer without a root (a
// ledger that has committed none, or a front that strips it) does not end
// the asking.
//
// The covering root alone proves nothing to other clients: a front can
// show a client that takes recent roots (Config.MaxIndexLag) an older
// root, still recent, that misses the entry (red team 9). But a root that
// misses the entry had its time read before the entry was indexed, and the
// covering root's after it was: once the covering root's time plus the
// largest MaxIndexLag of the clients to protect has passed (plus their
// clock skew, the caller's to add to lag), no root that misses the entry
// is recent to them any more, and every lookup they make of keyID's
// statements about d is proven to include it, however a front answers.
// The start is the ledger's signed time, not the receipt's arrival, which
// a front could hand over before the entry is indexed (red team 10). A
// covering root without a time (from a ledger before root times) starts
// the lag at this client's clock.
func (c *Client) AwaitIndexed(ctx context.Context, d notarize.Digest, keyID string, index uint64, lag time.Duration) (Completeness, error) {
	done, err := c.awaitRoot(ctx, d, keyID, index)
	if err != nil || lag <= 0 {
		return done, err
	}
	from := done.RootTime
	if from.IsZero() {
		from = c.now()
	}
	if wait := from.Add(lag).Sub(c.now()); wait > 0 {
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

// awaitRoot asks until an answer's map root covers index. An answer that
// fails its proofs (a fork, a bad proof, an incomplete answer: whoever
// answers is lying) ends the asking with that error; any other failure (a
// 404, a 500, a dropped connection) is asked again until ctx ends (red
// team 12: one 404 from a front ended the wait at once, and the command
// returned before every root without the entry was stale).
func (c *Client) awaitRoot(ctx context.Context, d notarize.Digest, keyID string, index uint64) (Completeness, error) {
	wait := awaitPoll
	var last Completeness
	var lastErr error
	for {
		res, err := c.Current(ctx, d, keyID)
		switch {
		case err == nil && res.Complete.MapSize > index:
			return res.Complete, nil
		case err == nil:
			last, lastErr = res.Complete, nil
		case ctx.Err() != nil:
			return last, fmt.Errorf("entry %d: %w: %w", index, ErrNotIndexed, ctx.Err())
		case IsLie(err):
			return Completeness{}, fmt.Errorf("wait for entry %d in the ledger's index: %w", index, err)
		default:
			lastErr = err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			if lastErr != nil {
				return last, fmt.Errorf("entry %d: %w: the last lookup failed (%w): %w", index, ErrNotIndexed, lastErr, ctx.Err())
			}
			return last, fmt.Errorf("entry %d: %w: the newest map root shown covers %d entries: %w", index, ErrNotIndexed, last.MapSize, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, awaitPollMax)
	}
}

// IsLie reports whether err says an answer failed its proofs: a fork, a
// bad proof or an answer missing what it must hold.
func IsLie(err error) bool {
	_, fork := errors.AsType[*ForkError](err)
	return fork || errors.Is(err, ErrIncomplete) || errors.Is(err, ErrBadProof)
}
