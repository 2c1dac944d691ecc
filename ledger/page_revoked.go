package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/notarize/docker-notarize/ledger/ui"
	"github.com/notarize/docker-notarize/notarize"
)

// A key's self-revocation as the pages show it. A revocation by another
// key (a revoker a verifier's policy names) counts only under that
// policy, which the pages do not know, so they show self-revocations
// only: the one every verifier honours. (Variables so that a test can
// shrink them.)
var (
	// pageRevocationChunk is how many of a key's statements about its own
	// revocation digest a page reads at a time.
	pageRevocationChunk = 256
	// pageRevocationScan bounds how many it reads in all. A thief who held
	// the key before it was revoked can write statements about that digest
	// before the revocation; past the bound the page says it did not read
	// them all instead of saying the key is not revoked.
	pageRevocationScan = 4096
)

// selfRevocation returns keyID's self-revocation among the entries below
// the log size below: its key revocation, signed by keyID itself, at the
// lowest log index (notarize.FindKeyRevocation with no revokers), or nil
// with cut set when the key has more statements about its revocation
// digest than the page reads.
func (l *Ledger) selfRevocation(ctx context.Context, keyID string, below uint64) (rv *notarize.KeyRevocation, cut bool, err error) {
	d, err := notarize.KeyRevocationDigest(keyID)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", errBadRequest, err)
	}
	var from uint64
	for read := 0; read < pageRevocationScan; {
		indices, err := l.store.Page(ctx, d, []string{keyID}, from, below, pageRevocationChunk)
		if err != nil {
			return nil, false, err
		}
		records, err := l.pageRead(ctx, indices)
		if err != nil {
			return nil, false, err
		}
		if r, ok := notarize.FindKeyRevocation(records, keyID, nil); ok {
			return &r, false, nil
		}
		if len(indices) < pageRevocationChunk {
			return nil, false, nil
		}
		read += len(indices)
		from = indices[len(indices)-1] + 1
	}
	return nil, true, nil
}

// pageRevocationWorkers is how many keys' self-revocations a page looks
// up at once: a digest with statements by many keys must not cost one
// index round trip after another while the page holds a lookup slot.
const pageRevocationWorkers = 8

// selfRevocationOf is one key's selfRevocation answer.
type selfRevocationOf struct {
	rv  *notarize.KeyRevocation
	cut bool
}

// selfRevocations returns selfRevocation of each of keyIDs, in their
// order, looked up pageRevocationWorkers at a time; the first error stops
// the others.
func (l *Ledger) selfRevocations(ctx context.Context, keyIDs []string, below uint64) ([]selfRevocationOf, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make([]selfRevocationOf, len(keyIDs))
	errs := make([]error, len(keyIDs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(pageRevocationWorkers, len(keyIDs)) {
		wg.Go(func() {
			for i := range next {
				rv, cut, err := l.selfRevocation(ctx, keyIDs[i], below)
				out[i], errs[i] = selfRevocationOf{rv: rv, cut: cut}, err
				if err != nil {
					cancel()
				}
			}
		})
	}
	for i := range keyIDs {
		next <- i
	}
	close(next)
	wg.Wait()
	var first error // the cause, not another lookup's cancellation by it
	for _, err := range errs {
		if err != nil && (first == nil || errors.Is(first, context.Canceled) && !errors.Is(err, context.Canceled)) {
			first = err
		}
	}
	if first != nil {
		return nil, first
	}
	return out, nil
}

// pageRevoked returns the page's view of a self-revocation (nil for none):
// its index, signed timestamp and reason, and whether the statement shown
// beside it (at log index shown) comes after it and so does not count.
func pageRevoked(rv *notarize.KeyRevocation, cut bool, shown uint64) *ui.Revoked {
	switch {
	case rv != nil:
		return &ui.Revoked{
			Index:  rv.Index,
			Signed: rv.Timestamp.UTC().Format(time.RFC3339),
			Reason: truncate(rv.Reason, notarize.MaxNameLen),
			After:  shown > rv.Index,
		}
	case cut:
		return &ui.Revoked{Unread: true, Scanned: pageRevocationScan}
	}
	return nil
}
