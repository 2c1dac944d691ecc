package ledger

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
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
	// pageRevocationScan bounds how many a page reads in all, for all its
	// keys (newScanBudget). A thief who held
	// the key before it was revoked can write statements about that digest
	// before the revocation; past the bound the page says it did not read
	// them all instead of saying the key is not revoked.
	pageRevocationScan = 4096
)

// selfRevocation returns keyID's self-revocation among the entries below
// the log size below: its key revocation, signed by keyID itself, at the
// lowest log index (notarize.FindKeyRevocation with no revokers), or nil
// with cut set when the key has more statements about its revocation
// digest than the page's scan budget (newScanBudget, shared by every key
// a page looks up) lets it read.
func (l *Ledger) selfRevocation(ctx context.Context, keyID string, below uint64, budget *atomic.Int64) (rv *notarize.KeyRevocation, cut bool, err error) {
	d, err := notarize.KeyRevocationDigest(keyID)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", errBadRequest, err)
	}
	var from uint64
	for budget.Load() > 0 {
		indices, err := l.store.Page(ctx, d, []string{keyID}, from, below, pageRevocationChunk)
		if err != nil {
			return nil, false, err
		}
		budget.Add(-int64(len(indices)))
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
		from = indices[len(indices)-1] + 1
	}
	return nil, true, nil
}

// newScanBudget returns a page's budget of entries to read looking for
// self-revocations: pageRevocationScan for the whole page, whatever the
// number of keys on it.
func newScanBudget() *atomic.Int64 {
	b := new(atomic.Int64)
	b.Store(int64(pageRevocationScan))
	return b
}

// pageRevocationWorkers is how many keys' self-revocations a page looks
// up at once: a digest with statements by many keys must not cost one
// index round trip after another while the page holds a lookup slot.
// pageRevocationKeys bounds how many keys' it looks up in all (in the
// order of their first statement on the page): strangers' keys signing one digest
// must not turn an anonymous page view into hundreds of index reads, on
// a gate the API's lookups share. The others are marked as not looked up.
const (
	pageRevocationWorkers = 8
	pageRevocationKeys    = 32
)

// selfRevocationOf is one key's selfRevocation answer; skipped when the
// page did not look it up (pageRevocationKeys).
type selfRevocationOf struct {
	rv      *notarize.KeyRevocation
	cut     bool
	skipped bool
}

// selfRevocations returns selfRevocation of each of keyIDs, in their
// order, looked up pageRevocationWorkers at a time, for the
// pageRevocationKeys keys whose first statement (first, by log index)
// comes first; the first error stops the others.
func (l *Ledger) selfRevocations(ctx context.Context, keyIDs []string, first map[string]uint64, below uint64) ([]selfRevocationOf, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make([]selfRevocationOf, len(keyIDs))
	errs := make([]error, len(keyIDs))
	budget := newScanBudget()
	order := make([]int, len(keyIDs)) // by first statement in the log: signers before the strangers who follow them
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(first[keyIDs[a]], first[keyIDs[b]]) })
	if len(order) > pageRevocationKeys {
		for _, i := range order[pageRevocationKeys:] {
			out[i].skipped = true
		}
		order = order[:pageRevocationKeys]
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(pageRevocationWorkers, len(order)) {
		wg.Go(func() {
			for i := range next {
				rv, cut, err := l.selfRevocation(ctx, keyIDs[i], below, budget)
				out[i], errs[i] = selfRevocationOf{rv: rv, cut: cut}, err
				if err != nil {
					cancel()
				}
			}
		})
	}
	for _, i := range order {
		next <- i
	}
	close(next)
	wg.Wait()
	var cause error // not another lookup's cancellation by it
	for _, err := range errs {
		if err != nil && (cause == nil || errors.Is(cause, context.Canceled) && !errors.Is(err, context.Canceled)) {
			cause = err
		}
	}
	if cause != nil {
		return nil, cause
	}
	return out, nil
}

// pageRevokedOf is pageRevoked of r, or the mark of a key the page did
// not look up.
func pageRevokedOf(r selfRevocationOf, shown uint64) *ui.Revoked {
	if r.skipped {
		return &ui.Revoked{Skipped: true, Scanned: pageRevocationKeys}
	}
	return pageRevoked(r.rv, r.cut, shown)
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
