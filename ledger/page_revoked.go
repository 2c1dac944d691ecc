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
// only: the one every verifier honours.
const (
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

// pageLimits are one Ledger's bounds of its pages' revocation look-ups
// (Ledger.pageLimits). The zero value means pageRevocationChunk and
// pageRevocationScan; a test lowers them on its own ledger, so that tests
// running in parallel share no package state.
type pageLimits struct {
	chunk, scan int
}

// revocationChunk is pageRevocationChunk, or the ledger's own bound.
func (l *Ledger) revocationChunk() int {
	if l.pageLimits.chunk > 0 {
		return l.pageLimits.chunk
	}
	return pageRevocationChunk
}

// revocationScan is pageRevocationScan, or the ledger's own bound.
func (l *Ledger) revocationScan() int {
	if l.pageLimits.scan > 0 {
		return l.pageLimits.scan
	}
	return pageRevocationScan
}

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
	chunk := l.revocationChunk()
	var from uint64
	for budget.Load() > 0 {
		indices, err := l.store.Page(ctx, d, []string{keyID}, from, below, chunk)
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
		if len(indices) < chunk {
			return nil, false, nil
		}
		from = indices[len(indices)-1] + 1
	}
	return nil, true, nil
}

// newScanBudget returns a page's budget of entries to read looking for
// self-revocations: revocationScan for the whole page, whatever the
// number of keys on it.
func (l *Ledger) newScanBudget() *atomic.Int64 {
	b := new(atomic.Int64)
	b.Store(int64(l.revocationScan()))
	return b
}

// pageRevocationWorkers is how many keys' self-revocations a page looks
// up at once: a digest with statements by many keys must not cost one
// index round trip after another while the page holds a lookup slot.
// pageRevocationKeys bounds how many keys' it looks up in all
// (revocationOrder chooses them): strangers' keys signing one digest must
// not turn an anonymous page view into hundreds of index reads, on a gate
// the API's lookups share. The others are marked as not looked up.
const (
	pageRevocationWorkers = 8
	pageRevocationKeys    = 32
)

// Enrolment ranks of a key (Ledger.enrolment), the order in which a page
// looks up self-revocations.
const (
	rankIdentity = iota // enrolled with an identity (Config.Identities)
	rankWriter          // an enrolled writer (Config.Signers, the storage's set)
	rankStranger        // anyone else: on an open ledger, anyone at all
)

// enrolment returns keyID's enrolment rank. Only the operator enrols a
// key (the --signers file, read at start, and the storage's set of
// writers); nothing a writer submits gives a key an identity or a place
// among the writers, so strangers cannot rank above a signer.
func (l *Ledger) enrolment(keyID string) int {
	if _, ok := l.EnrolledIdentity(keyID); ok {
		return rankIdentity
	}
	if set := l.enrolled.Load(); set != nil && (*set)[keyID] {
		return rankWriter
	}
	return rankStranger
}

// revocationOrder returns the positions of keyIDs in the order a page
// looks their self-revocations up: keys enrolled with an identity first,
// then the other enrolled writers, then the rest, each group by its first
// statement on the page (first, by log index). Strangers who sign a
// digest before its signer therefore cannot push an enrolled signer past
// pageRevocationKeys; on an open ledger without enrolments, the keys that
// signed first come first.
func (l *Ledger) revocationOrder(keyIDs []string, first map[string]uint64) []int {
	rank := make([]int, len(keyIDs))
	order := make([]int, len(keyIDs))
	for i, k := range keyIDs {
		rank[i], order[i] = l.enrolment(k), i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(rank[a], rank[b]), cmp.Compare(first[keyIDs[a]], first[keyIDs[b]]))
	})
	return order
}

// selfRevocationOf is one key's selfRevocation answer; skipped when the
// page did not look it up (pageRevocationKeys).
type selfRevocationOf struct {
	rv      *notarize.KeyRevocation
	cut     bool
	skipped bool
}

// selfRevocations returns selfRevocation of each of keyIDs, in their
// order, looked up pageRevocationWorkers at a time, for the first
// pageRevocationKeys keys of revocationOrder (enrolled keys, then by
// first statement, by log index); the first error stops the others.
func (l *Ledger) selfRevocations(ctx context.Context, keyIDs []string, first map[string]uint64, below uint64) ([]selfRevocationOf, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make([]selfRevocationOf, len(keyIDs))
	errs := make([]error, len(keyIDs))
	budget := l.newScanBudget()
	order := l.revocationOrder(keyIDs, first)
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
func (l *Ledger) pageRevokedOf(r selfRevocationOf, shown uint64) *ui.Revoked {
	if r.skipped {
		return &ui.Revoked{Skipped: true, Scanned: pageRevocationKeys}
	}
	return l.pageRevoked(r.rv, r.cut, shown)
}

// pageRevoked returns the page's view of a self-revocation (nil for none):
// its index, signed timestamp and reason, and whether the statement shown
// beside it (at log index shown) comes after it and so does not count.
func (l *Ledger) pageRevoked(rv *notarize.KeyRevocation, cut bool, shown uint64) *ui.Revoked {
	switch {
	case rv != nil:
		return &ui.Revoked{
			Index:  rv.Index,
			Signed: rv.Timestamp.UTC().Format(time.RFC3339),
			Reason: truncate(rv.Reason, notarize.MaxNameLen),
			After:  shown > rv.Index,
		}
	case cut:
		return &ui.Revoked{Unread: true, Scanned: l.revocationScan()}
	}
	return nil
}
