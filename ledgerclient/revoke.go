package ledgerclient

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// maxRevocationLookups bounds the revocation lookups Revocations runs at
// once.
const maxRevocationLookups = 8

// Revocations finds the counting revocation (notarize.FindKeyRevocation) of
// each of keyIDs: a lookup of the key's revocation digest (sha256:<key ID>)
// by the key itself and its revokers (revokers[keyID]), which Lookup
// proves complete against the ledger's verifiable index and the log after
// it. A ledger, or a front before it, that leaves a revocation out fails
// the call (ErrIncomplete); a revocation by any other key is never asked
// for and never counts. The lookups run concurrently, one round trip each
// when the key has no statement about its revocation digest.
func (c *Client) Revocations(ctx context.Context, keyIDs []string, revokers map[string][]string) (notarize.Revocations, error) {
	revs, _, _, err := c.revocations(ctx, keyIDs, revokers)
	return revs, err
}

// revocations is Revocations that also returns the size of the smallest
// checkpoint a lookup was proven complete in: every revocation up to that
// log size was seen.
func (c *Client) revocations(ctx context.Context, keyIDs []string, revokers map[string][]string) (notarize.Revocations, uint64, Completeness, error) {
	ids := slices.Clone(keyIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	type found struct {
		rev  notarize.KeyRevocation
		ok   bool
		size uint64
		done Completeness
	}
	results := make([]found, len(ids))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		first error // the first failure, which cancelled the others
		sem   = make(chan struct{}, maxRevocationLookups)
		wg    sync.WaitGroup
	)
	for i, k := range ids {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			rev, ok, size, done, err := c.revocation(ctx, k, revokers[k])
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
				cancel()
				return
			}
			results[i] = found{rev, ok, size, done}
		})
	}
	wg.Wait()
	if first != nil {
		return nil, 0, Completeness{}, first
	}
	revs := notarize.Revocations{}
	minSize := uint64(0)
	var done Completeness
	for i, r := range results {
		if i == 0 || r.size < minSize {
			minSize = r.size
		}
		if i == 0 {
			done = r.done
		} else {
			done = done.weakest(r.done)
		}
		if r.ok {
			revs[ids[i]] = r.rev
		}
	}
	return revs, minSize, done, nil
}

// revocation looks up key k's revocations by k and revokers and returns
// the one that counts.
func (c *Client) revocation(ctx context.Context, k string, revokers []string) (notarize.KeyRevocation, bool, uint64, Completeness, error) {
	d, err := notarize.KeyRevocationDigest(k)
	if err != nil {
		return notarize.KeyRevocation{}, false, 0, Completeness{}, fmt.Errorf("revocations of key %s: %w", clip(k, 80), err)
	}
	by := append([]string{k}, revokers...)
	slices.Sort(by)
	by = slices.Compact(by)
	if len(by) > api.MaxLookupKeyIDs {
		return notarize.KeyRevocation{}, false, 0, Completeness{}, fmt.Errorf("revocations of key %s: %d revokers, at most %d", k, len(by)-1, api.MaxLookupKeyIDs-1)
	}
	res, err := c.Lookup(ctx, d, by...)
	if err != nil {
		return notarize.KeyRevocation{}, false, 0, Completeness{}, fmt.Errorf("revocations of key %s: %w", k, err)
	}
	rev, ok := notarize.FindKeyRevocation(res.Records, k, revokers)
	return rev, ok, res.Checkpoint.Size, res.Complete, nil
}

// RevocationsAt is Revocations with the size of the smallest checkpoint
// its lookups were proven complete in: every revocation logged before that
// size is in its answer (for a client that takes recent map roots,
// Config.MaxIndexLag: every revocation logged before the roots its answers
// were anchored at, and those after as the ledger gave them). A caller deciding with CurrentRevoked must check
// that the answer's checkpoint is not larger, else ask again: a
// revocation logged in between would be missed.
func (c *Client) RevocationsAt(ctx context.Context, keyIDs []string, revokers map[string][]string) (notarize.Revocations, uint64, error) {
	revs, size, _, err := c.revocations(ctx, keyIDs, revokers)
	return revs, size, err
}

// CurrentRevoked is Current under the key revocations revs: the records
// from which notarize.DecideWithRevocations decides d. For a key of keyIDs
// that revs revokes, the ledger's current statement may be a thief's
// (made after the revocation, whatever its timestamp), so every statement
// of that key about d is read (Lookup, proven complete) and the current
// one is chosen among those before the revocation; the other keys' records
// are Current's. A key without a revocation costs nothing more than
// Current. revs must cover the answer's checkpoint (RevocationsAt's size
// at least as large as its Checkpoint.Size), which is the caller's to
// check; CurrentWithRevocations does it.
func (c *Client) CurrentRevoked(ctx context.Context, d notarize.Digest, keyIDs []string, revs notarize.Revocations) (*LookupResult, error) {
	res, err := c.Current(ctx, d, keyIDs...)
	if err != nil {
		return nil, err
	}
	return c.beforeRevocations(ctx, d, keyIDs, revs, res)
}

// CurrentWithRevocations finds the revocations of keyIDs (Revocations,
// with revokers) and the records that decide d under them (CurrentRevoked)
// in one go: the revocation lookups run alongside the current lookup, so
// a verifier whose keys are not revoked waits for one round trip more at
// most.
func (c *Client) CurrentWithRevocations(ctx context.Context, d notarize.Digest, keyIDs []string, revokers map[string][]string) (*LookupResult, notarize.Revocations, error) {
	return c.StartRevocations(ctx, keyIDs, revokers).Current(ctx, d)
}

// PendingRevocations are revocation lookups started before the digest
// they go with is known (StartRevocations): a verifier starts them while
// the registry resolves the image (issue 14), so that by the time it asks
// about the digest they are done, and the connection to the ledger is
// open. Current takes their answer; Stop drops it.
type PendingRevocations struct {
	c        *Client
	keyIDs   []string
	revokers map[string][]string
	cancel   context.CancelFunc
	done     chan struct{}
	used     atomic.Bool

	// Set before done is closed.
	revs     notarize.Revocations
	size     uint64
	complete Completeness
	err      error
}

// StartRevocations starts the revocation lookups of keyIDs, with
// revokers (Revocations), and returns at once. Their answer counts only
// through Current, which checks it against the statement lookup's log as
// CurrentWithRevocations does. ctx bounds the lookups. Call Current once,
// or Stop.
func (c *Client) StartRevocations(ctx context.Context, keyIDs []string, revokers map[string][]string) *PendingRevocations {
	ctx, cancel := context.WithCancel(ctx)
	p := &PendingRevocations{c: c, keyIDs: slices.Clone(keyIDs), revokers: maps.Clone(revokers), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.revs, p.size, p.complete, p.err = c.revocations(ctx, p.keyIDs, p.revokers)
	}()
	return p
}

// Stop cancels the lookups and waits for them to end.
func (p *PendingRevocations) Stop() {
	p.cancel()
	<-p.done
}

// Current finds the records that decide d under the pending revocations:
// CurrentWithRevocations with the lookups StartRevocations began. The
// first failure, of either, cancels the other and is the one reported. A
// revocation logged after the revocation lookups' checkpoint and before
// the statement lookup's is never missed: the lookups are asked again
// when they were proven in a smaller log than the statements. A second
// call fails.
func (p *PendingRevocations) Current(ctx context.Context, d notarize.Digest) (*LookupResult, notarize.Revocations, error) {
	if p.used.Swap(true) {
		return nil, nil, errors.New("ledger client: pending revocations taken twice")
	}
	defer p.cancel()
	select {
	case <-p.done:
		if p.err != nil {
			return nil, nil, p.err // failed while the digest was found: no statement lookup
		}
	default:
	}
	c, keyIDs, revokers := p.c, p.keyIDs, p.revokers
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// tessera's fetch errors do not always wrap context.Canceled, so the
	// error kept is the first one, never the cancellation it caused.
	var (
		mu    sync.Mutex
		first error
		fail  = func(err error) {
			mu.Lock()
			if first == nil {
				first = err
			}
			mu.Unlock()
			cancel()
			p.cancel()
		}
		stop, watched = make(chan struct{}), make(chan struct{})
	)
	go func() {
		defer close(watched)
		select {
		case <-p.done:
			if p.err != nil {
				fail(p.err)
			}
		case <-stop:
		}
	}()
	res, err := c.Current(ctx, d, keyIDs...)
	if err != nil {
		fail(err)
	}
	<-p.done
	close(stop)
	<-watched
	if p.err != nil {
		fail(p.err) // no-op when the watcher saw it first
	}
	if first != nil {
		return nil, nil, first
	}
	revs, revSize, revDone := p.revs, p.size, p.complete
	if revSize < res.Checkpoint.Size || !c.stillRecent(revDone) {
		// The revocations were proven in a smaller log than the
		// statements: a revocation in between (before a thief's
		// statement in the answer) would be missed, by chance or by a
		// front that answers the revocation lookups from an older
		// checkpoint. Or they were proven complete by a map root that
		// was recent when they were answered and is no longer
		// (Config.MaxIndexLag): the registry took long enough, as a
		// thief serving the image, or on its path, can make it, for a
		// revocation indexed meanwhile to be hidden by a front that
		// answered the early lookups from the root before it (red team
		// 15). Ask again: the stored checkpoint is now at least the
		// answer's, and an older answer is a rollback.
		if revs, revSize, revDone, err = c.revocations(ctx, keyIDs, revokers); err != nil {
			return nil, nil, err
		}
		if revSize < res.Checkpoint.Size {
			return nil, nil, fmt.Errorf("%w: the revocation lookups answered for %d entries, the statements for %d", ErrBadProof, revSize, res.Checkpoint.Size)
		}
	}
	if len(keyIDs) > 0 {
		res.Complete = res.Complete.weakest(revDone) // verify's anchoredAt covers its revocation lookups too
	}
	res, err = c.beforeRevocations(ctx, d, keyIDs, revs, res)
	if err != nil {
		return nil, nil, err
	}
	return res, revs, nil
}

// stillRecent reports whether an answer proven complete as done says may
// still be taken now: it was read up to its checkpoint (no anchor), or
// its map root is still within Config.MaxIndexLag.
func (c *Client) stillRecent(done Completeness) bool {
	if done.AnchoredAt.IsZero() {
		return true
	}
	return (&notarize.MapRoot{Time: done.AnchoredAt}).RecentAt(c.now(), c.maxLag)
}

// beforeRevocations replaces in res, Current's answer about d, the records
// of each revoked key of keyIDs by all its statements about d before its
// revocation.
func (c *Client) beforeRevocations(ctx context.Context, d notarize.Digest, keyIDs []string, revs notarize.Revocations, res *LookupResult) (*LookupResult, error) {
	revoked := map[string]bool{}
	for _, k := range keyIDs {
		if _, ok := revs[k]; ok {
			revoked[k] = true
		}
	}
	if len(revoked) == 0 {
		return res, nil
	}
	recs := make([]notarize.Record, 0, len(res.Records))
	for _, r := range res.Records {
		if !revoked[r.KeyID] {
			recs = append(recs, r)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(revoked)) {
		all, err := c.Lookup(ctx, d, k)
		if err != nil {
			return nil, fmt.Errorf("statements about %s by revoked key %s: %w", d, k, err)
		}
		for _, r := range all.Records {
			if revs.Counts(r) {
				recs = append(recs, r)
			}
		}
		if all.Checkpoint.Size > res.Checkpoint.Size {
			res.Checkpoint = all.Checkpoint
		}
		res.Complete = res.Complete.weakest(all.Complete)
	}
	slices.SortFunc(recs, func(a, b notarize.Record) int { return cmp.Compare(a.Index, b.Index) })
	return &LookupResult{Checkpoint: res.Checkpoint, Records: recs, Complete: res.Complete}, nil
}
