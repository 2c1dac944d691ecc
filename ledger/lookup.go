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
)

// Bounds of the work of lookups, beside api.MaxLookupLimit and the key
// ID counts. A lookup reads the bytes of the entries it answers with from
// the index (store.entries), never an entry bundle: what it reads is what
// it returns.
const (
	// maxAnswerEstimate bounds the estimated JSON size of one answer,
	// below api.MaxAnswerSize: a page ends early (with Next) at it, and a
	// current answer over it (which api.MaxCurrentKeyIDs entries of
	// MaxLeafSize cannot reach) is refused.
	maxAnswerEstimate = api.MaxAnswerSize * 3 / 4
)

// The lookups reading the index at once are bounded and shared among
// clients by the lookup gate (lookupgate.go): with maxAnswerEstimate, it
// bounds what lookups hold, about 32 × 6 MiB.

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
	// Tail asks for the log's tail after the map root inline
	// (api.QueryTail), carried by the last page only.
	Tail TailMode
}

// TailMode is what an answer carries of the log's tail after its map root
// (api.QueryTail).
type TailMode int

// The tail modes. A value of api.QueryTail the ledger does not know is
// TailNone, as it was before the parameter existed.
const (
	// TailNone carries no tail: the client reads it (no value; an
	// older client).
	TailNone TailMode = iota
	// TailInline carries it inline (api.TailInline), within the answer's
	// bounds (withInlineTail).
	TailInline
	// TailAnchor carries it as TailInline does, except when the answer's
	// root carries a time at most api.AnchorMaxAge from the ledger's clock
	// (api.TailAnchor, anchored): the answer then carries none, and the
	// client proves it complete up to the root's time.
	TailAnchor
)

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
	var mp *api.MapProof
	var mroot *parsedRoot
	if len(keys) > 0 { // the map is keyed by signer: a walk by keys is proven complete
		if mp, mroot, err = l.mapProof(ctx, d, keys); err != nil { // before the checkpoint, which must cover its root
			return nil, fmt.Errorf("lookup: %w", err)
		}
	}
	cpRaw, cp, err := l.indexedCheckpoint(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("lookup: %w", err)
	}
	leave, err := l.enterLookup(ctx, lookupAPI)
	if err != nil {
		return nil, fmt.Errorf("lookup: %w", err)
	}
	defer leave()
	indices, err := l.store.Page(ctx, d, keys, from, cp.Size, limit+1)
	if err != nil {
		return nil, fmt.Errorf("lookup: %w", err)
	}
	more := len(indices) > limit
	indices = indices[:min(len(indices), limit)]
	resp, err := l.answer(ctx, d, cpRaw, cp, indices)
	if err != nil {
		return nil, fmt.Errorf("lookup: %w", err)
	}
	if n := len(resp.Entries); n > 0 && (more || n < len(indices)) {
		next := resp.Entries[n-1].Index
		resp.Next = &next
	}
	if err := l.proveMapRoot(ctx, mp, mroot, cp); err != nil {
		return nil, fmt.Errorf("lookup: %w", err)
	}
	if resp.Next == nil {
		if err := l.withTail(ctx, opts.Tail, resp, mp, mroot, cp); err != nil {
			return nil, fmt.Errorf("lookup: %w", err)
		}
	}
	resp.Map = mp
	return resp, nil
}

// Current returns the current statement about d of each of keyIDs (1 to
// api.MaxCurrentKeyIDs hex key IDs) that made one: the entry with the
// newest signed timestamp, ties broken by the greater log index (as
// notarize.Current), with an inclusion proof to the latest checkpoint.
// Entries in increasing log index; Next is never set. Its cost does not
// grow with the digest's history, nor with other keys' statements: it
// reads one index row and one entry per key. An answer that would pass
// maxAnswerEstimate is refused rather than cut short, so that a current
// statement is never silently left out.
func (l *Ledger) Current(ctx context.Context, d notarize.Digest, keyIDs []string) (*api.LookupResponse, error) {
	return l.current(ctx, d, keyIDs, TailNone)
}

// current is Current, with the log's tail after the map root as tail asks
// (api.QueryTail).
func (l *Ledger) current(ctx context.Context, d notarize.Digest, keyIDs []string, tail TailMode) (*api.LookupResponse, error) {
	keys, err := lookupKeyIDs(keyIDs, 1, api.MaxCurrentKeyIDs)
	if err != nil {
		return nil, fmt.Errorf("current: %w", err)
	}
	mp, mroot, err := l.mapProof(ctx, d, keys) // before the checkpoint, which must cover its root
	if err != nil {
		return nil, fmt.Errorf("current: %w", err)
	}
	cpRaw, cp, err := l.indexedCheckpoint(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("current: %w", err)
	}
	leave, err := l.enterLookup(ctx, lookupAPI)
	if err != nil {
		return nil, fmt.Errorf("current: %w", err)
	}
	defer leave()
	indices, err := l.store.Current(ctx, d, keys, cp.Size)
	if err != nil {
		return nil, fmt.Errorf("current: %w", err)
	}
	resp, err := l.answer(ctx, d, cpRaw, cp, indices)
	if err != nil {
		return nil, fmt.Errorf("current: %w", err)
	}
	if len(resp.Entries) < len(indices) {
		return nil, fmt.Errorf("current: %w: the current statements of %d keys are too large for one answer; ask for fewer keys", errBadRequest, len(keys))
	}
	if err := l.proveMapRoot(ctx, mp, mroot, cp); err != nil {
		return nil, fmt.Errorf("current: %w", err)
	}
	if err := l.withTail(ctx, tail, resp, mp, mroot, cp); err != nil {
		return nil, fmt.Errorf("current: %w", err)
	}
	resp.Map = mp
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

// indexedCheckpoint checks d and returns the latest checkpoint once the
// index covers it, so that a lookup answers for exactly the entries it
// commits to.
func (l *Ledger) indexedCheckpoint(ctx context.Context, d notarize.Digest) ([]byte, *log.Checkpoint, error) {
	if _, err := notarize.ParseDigest(string(d)); err != nil {
		return nil, nil, err
	}
	return l.coveredCheckpoint(ctx)
}

// coveredCheckpoint returns the latest checkpoint once the index covers it.
func (l *Ledger) coveredCheckpoint(ctx context.Context) ([]byte, *log.Checkpoint, error) {
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

// answer reads the entries at indices (increasing, below cp.Size) from the
// index and proves them under cp. It stops before the answer's estimated
// size would pass maxAnswerEstimate, keeping at least one entry: it reads
// at most one entry past what it returns.
func (l *Ledger) answer(ctx context.Context, d notarize.Digest, cpRaw []byte, cp *log.Checkpoint, indices []uint64) (*api.LookupResponse, error) {
	resp := &api.LookupResponse{Digest: string(d), Checkpoint: string(cpRaw), Entries: []api.LookupEntry{}}
	proofSize := 48 * bits.Len64(cp.Size) // base64 hashes in JSON, per entry
	size := len(cpRaw) + 2*len(d) + 64
	var entries [][]byte
	err := l.store.entries(ctx, indices, func(_ uint64, data []byte) bool {
		size += base64Len(len(data)) + proofSize + 64
		if len(entries) > 0 && size > maxAnswerEstimate {
			return false
		}
		entries = append(entries, data)
		return true
	})
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return resp, nil
	}
	proofs, err := l.checkedProofs(ctx, cp, indices[:len(entries)], entries)
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
