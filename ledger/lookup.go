package ledger

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"slices"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/tessera/api/layout"
)

// Bounds of the work of one lookup, beside api.MaxLookupLimit and the key
// ID counts.
const (
	// maxAnswerEstimate bounds the estimated JSON size of one answer,
	// below api.MaxAnswerSize: a page ends early (with Next) at it.
	maxAnswerEstimate = api.MaxAnswerSize * 3 / 4
	// maxBundleBytes bounds the entry bundle bytes one page reads: a page
	// whose entries lie in many bundles full of large entries ends early.
	maxBundleBytes = 64 << 20
)

// LookupOptions selects one page of a digest lookup.
type LookupOptions struct {
	// KeyIDs, when not empty, limits the page to the entries signed by
	// these keys (hex key IDs, at most api.MaxLookupKeyIDs). Entries by
	// other keys are never read, proven or counted.
	KeyIDs []string
	// After, when not nil, starts the page after this log index (the
	// previous page's Next).
	After *uint64
	// Limit bounds the page's entries: 1 to api.MaxLookupLimit, or 0 for
	// api.DefaultLookupLimit.
	Limit int
}

// Lookup returns one page of the entries whose statement subject is d, in
// increasing log index, each with an inclusion proof to the latest
// checkpoint, which is returned with them. Next is set when more entries
// match under that checkpoint. A page holds at most opts.Limit entries and
// ends early when its answer would grow past api.MaxAnswerSize, but always
// holds one entry if any matches.
func (l *Ledger) Lookup(ctx context.Context, d notarize.Digest, opts LookupOptions) (*api.LookupResponse, error) {
	keys, err := lookupKeyIDs(opts.KeyIDs, 0, api.MaxLookupKeyIDs)
	if err != nil {
		return nil, fmt.Errorf("lookup: %w", err)
	}
	limit := opts.Limit
	if limit == 0 {
		limit = api.DefaultLookupLimit
	}
	if limit < 0 || limit > api.MaxLookupLimit {
		return nil, fmt.Errorf("lookup: %w: limit %d: want 1 to %d", errBadRequest, limit, api.MaxLookupLimit)
	}
	var from uint64
	if opts.After != nil {
		if *opts.After == math.MaxUint64 {
			return nil, fmt.Errorf("lookup: %w: %s %d is past every index", errBadRequest, api.QueryAfter, *opts.After)
		}
		from = *opts.After + 1
	}
	cpRaw, cp, err := l.indexedCheckpoint(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("lookup: %w", err)
	}
	indices, err := l.store.Page(ctx, d, keys, from, cp.Size, limit+1)
	if err != nil {
		return nil, fmt.Errorf("lookup: %w", err)
	}
	more := len(indices) > limit
	indices = indices[:min(len(indices), limit)]
	resp, err := l.answer(ctx, d, cpRaw, cp, indices, true)
	if err != nil {
		return nil, fmt.Errorf("lookup: %w", err)
	}
	if n := len(resp.Entries); n > 0 && (more || n < len(indices)) {
		next := resp.Entries[n-1].Index
		resp.Next = &next
	}
	return resp, nil
}

// Current returns the current statement about d of each of keyIDs (1 to
// api.MaxCurrentKeyIDs hex key IDs) that made one: the entry with the
// newest signed timestamp, ties broken by the greater log index (as
// notarize.Current), with an inclusion proof to the latest checkpoint.
// Entries in increasing log index; Next is never set. Its cost does not
// grow with the digest's history, nor with other keys' statements.
func (l *Ledger) Current(ctx context.Context, d notarize.Digest, keyIDs []string) (*api.LookupResponse, error) {
	keys, err := lookupKeyIDs(keyIDs, 1, api.MaxCurrentKeyIDs)
	if err != nil {
		return nil, fmt.Errorf("current: %w", err)
	}
	cpRaw, cp, err := l.indexedCheckpoint(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("current: %w", err)
	}
	indices, err := l.store.Current(ctx, d, keys, cp.Size)
	if err != nil {
		return nil, fmt.Errorf("current: %w", err)
	}
	resp, err := l.answer(ctx, d, cpRaw, cp, indices, false)
	if err != nil {
		return nil, fmt.Errorf("current: %w", err)
	}
	return resp, nil
}

// lookupKeyIDs checks that keyIDs holds min to max key IDs of 64 lowercase
// hex characters and returns them without duplicates.
func lookupKeyIDs(keyIDs []string, least, most int) ([]string, error) {
	out := make([]string, 0, len(keyIDs))
	for _, id := range keyIDs {
		if !isKeyID(id) {
			return nil, fmt.Errorf("%w: %s %q: want 64 lowercase hex characters", errBadRequest, api.QueryKeyID, truncate(id, 80))
		}
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
		if len(out) > most {
			return nil, fmt.Errorf("%w: more than %d key IDs", errBadRequest, most)
		}
	}
	if len(out) < least {
		return nil, fmt.Errorf("%w: at least %d %s parameter required", errBadRequest, least, api.QueryKeyID)
	}
	return out, nil
}

func isKeyID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// indexedCheckpoint returns the latest checkpoint once the index covers
// it, so that a lookup answers for exactly the entries it commits to.
func (l *Ledger) indexedCheckpoint(ctx context.Context, d notarize.Digest) ([]byte, *log.Checkpoint, error) {
	if _, err := notarize.ParseDigest(string(d)); err != nil {
		return nil, nil, err
	}
	cpRaw, cp, err := l.latestCheckpoint(ctx)
	if err != nil {
		return nil, nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, indexWait)
	defer cancel()
	if err := l.store.WaitProcessed(wctx, cp.Size); err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		return nil, nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return cpRaw, cp, nil
}

// answer reads the entries at indices (increasing, below cp.Size) and
// proves them under cp. When bounded, it stops before the answer's
// estimated size would pass maxAnswerEstimate or the bundles read would
// pass maxBundleBytes, keeping at least one entry.
func (l *Ledger) answer(ctx context.Context, d notarize.Digest, cpRaw []byte, cp *log.Checkpoint, indices []uint64, bounded bool) (*api.LookupResponse, error) {
	resp := &api.LookupResponse{Digest: string(d), Checkpoint: string(cpRaw), Entries: []api.LookupEntry{}}
	proofSize := 48 * bits.Len64(cp.Size) // base64 hashes in JSON, per entry
	size := len(cpRaw) + 2*len(d) + 64
	bundles := map[uint64][]byte{}
	read := 0
	var entries [][]byte
	for _, i := range indices {
		before := len(bundles)
		data, err := l.entryAt(ctx, bundles, i, cp.Size)
		if err != nil {
			return nil, err
		}
		if len(bundles) > before {
			read += len(bundles[i/layout.EntryBundleWidth])
		}
		size += base64Len(len(data)) + proofSize + 64
		if bounded && len(entries) > 0 && (size > maxAnswerEstimate || read > maxBundleBytes) {
			break
		}
		entries = append(entries, data)
	}
	if len(entries) == 0 {
		return resp, nil
	}
	proofs, err := l.inclusionProofs(ctx, cp.Size, indices[:len(entries)]...)
	if err != nil {
		return nil, err
	}
	for k, data := range entries {
		resp.Entries = append(resp.Entries, api.LookupEntry{Index: indices[k], Entry: data, InclusionProof: proofs[k]})
	}
	return resp, nil
}

// base64Len is the length of the standard base64 encoding of n bytes.
func base64Len(n int) int { return (n + 2) / 3 * 4 }
