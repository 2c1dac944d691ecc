package ledgerclient

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"net/http"
	"slices"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/vindex"
)

// Bounds of lookups. A ledger's answers, however many entries it holds about
// a digest, cost a client at most these.
const (
	// PageLimit is the number of entries the client asks for per page.
	PageLimit = api.DefaultLookupLimit
	// MaxLookupPages bounds the pages one walk (LookupPages, Lookup) reads:
	// a ledger that keeps announcing a next page is cut off.
	MaxLookupPages = 1000
	// MaxLookupRecords bounds the records Lookup collects in memory; walk
	// LookupPages to read longer histories page by page.
	MaxLookupRecords = 10 * PageLimit
)

// ErrTooMany is returned (wrapped) when a lookup walk reaches MaxLookupPages
// or MaxLookupRecords: the ledger holds more entries about the digest (by the
// keys asked for) than the caller's bound, or announces pages without end.
var ErrTooMany = errors.New("too many lookup entries")

// maxEntryJSON bounds one entry of a lookup answer in JSON: the entry's bytes
// in base64, an inclusion proof of up to 64 hashes, the index and the names.
const maxEntryJSON = 4*((notarize.MaxEntrySize+2)/3) + 64*(4*((32+2)/3)+3) + 128

// maxLookupAnswer is the size bound of a lookup answer of at most n entries:
// the checkpoint escaped in JSON (at most 6 bytes a byte), the digest and
// names, n entries and the inline tail the client asks for
// (maxInlineTailAnswer), and never more than api.MaxAnswerSize (a ledger
// ends a page early, or carries less of the tail, to stay under it). No
// honest answer is larger, so the answer to what the client asked for is
// never refused for its size, whatever other keys wrote.
func maxLookupAnswer(n int) int64 {
	return min(6*int64(MaxCheckpointSize)+4<<10+int64(n)*maxEntryJSON+maxInlineTailAnswer, api.MaxAnswerSize)
}

// lookupQuery is what one lookup request asks for.
type lookupQuery struct {
	// keyIDs limits the entries to these signers when not empty.
	keyIDs []string
	// after, when set, asks for entries with a greater log index.
	after *uint64
	// limit bounds the entries of the page (api.QueryLimit).
	limit int
}

// LookupResult is the verified part of a lookup answer.
type LookupResult struct {
	// Checkpoint is the newest verified checkpoint of the answers read; every
	// record is included in it (each page's checkpoint was proven
	// consistent with the ones before).
	Checkpoint Checkpoint
	// Records are the entries about the digest, each verified (inclusion
	// proof, envelope signature, subject, signer), ordered by log index.
	Records []notarize.Record
	// Complete says what the answer was proven complete up to, for a
	// lookup by key IDs (Current, and Lookup with key IDs); the zero
	// value for a lookup of every signer, which is not proven complete.
	Complete Completeness
}

// weakest returns what two answers' proofs together establish: the
// smaller map, and the earlier anchor when either was anchored.
func (a Completeness) weakest(b Completeness) Completeness {
	out := Completeness{MapSize: min(a.MapSize, b.MapSize), AnchoredAt: a.AnchoredAt, RootTime: a.RootTime}
	if a.MapSize > b.MapSize {
		out.RootTime = b.RootTime // the smaller map's root
	}
	if !b.AnchoredAt.IsZero() && (out.AnchoredAt.IsZero() || b.AnchoredAt.Before(out.AnchoredAt)) {
		out.AnchoredAt = b.AnchoredAt
	}
	return out
}

// LookupPage is one verified page of a digest lookup.
type LookupPage struct {
	// Checkpoint is the verified checkpoint the page's records are included
	// in. A later page's checkpoint is consistent with it, never smaller.
	Checkpoint Checkpoint
	// Records are the page's entries, each verified, in increasing log index.
	Records []notarize.Record
	// Next is the log index after which the following page starts; nil on
	// the last page.
	Next *uint64

	// mp is the page's map proof, leaves its entries' leaf hashes by log
	// index: what Lookup proves the walk complete with (vindex.go).
	mp     *api.MapProof
	leaves map[uint64]vindex.Hash
}

// Lookup asks the ledger for the entries about d, only those signed by
// keyIDs when any are given (what a verifier accepts), walking every page,
// and verifies each page: its checkpoint (and consistency with the stored
// one and the pages before), and for every entry the inclusion proof, the
// envelope signature, that it is about d and by a key asked for. Any entry
// that fails fails the lookup: the ledger's answer is a hint, never a
// verdict. More than MaxLookupRecords records is ErrTooMany: walk
// LookupPages for long histories. With keyIDs, the whole walk is proven
// complete against the verifiable index (each key's statements about d
// hash to its map value's chain and count, plus the log's tail after the
// map root), so an omitted entry is ErrIncomplete; without keyIDs (every
// signer) the ledger can still leave entries out, as it can of
// LookupPages' pages on their own.
func (c *Client) Lookup(ctx context.Context, d notarize.Digest, keyIDs ...string) (*LookupResult, error) {
	res := &LookupResult{Records: []notarize.Record{}}
	leaves := map[uint64]vindex.Hash{}
	var last *LookupPage
	for p, err := range c.LookupPages(ctx, d, keyIDs...) {
		if err != nil {
			return nil, err
		}
		if len(res.Records)+len(p.Records) > MaxLookupRecords {
			return nil, fmt.Errorf("look up %s in ledger: %w: more than %d records; read them page by page", d, ErrTooMany, MaxLookupRecords)
		}
		res.Records = append(res.Records, p.Records...)
		if p.Checkpoint.Size >= res.Checkpoint.Size {
			res.Checkpoint = p.Checkpoint
		}
		maps.Copy(leaves, p.leaves)
		last = p
	}
	if len(keyIDs) > 0 && last != nil {
		// The walk by these keys is proven complete against the last
		// page's map proof and checkpoint (the newest), under the
		// client's timeout like each page: a front dripping the tail's
		// bundles cannot hang the lookup.
		tctx, cancel := c.withTimeout(ctx)
		defer cancel()
		done, err := c.verifyLookupComplete(tctx, last.mp, last.Checkpoint, d, keyIDs, res.Records, leaves)
		if err != nil {
			return nil, fmt.Errorf("look up %s in ledger: %w", d, err)
		}
		res.Complete = done
	}
	return res, nil
}

// LookupPages walks the pages of the entries about d (only those signed by
// keyIDs when any are given), verifying each one as Lookup does, and yields
// them in log order. Each page is read with its own Config.Timeout when ctx
// has no deadline. It stops at the first error, which it yields, and after
// MaxLookupPages pages with ErrTooMany.
func (c *Client) LookupPages(ctx context.Context, d notarize.Digest, keyIDs ...string) iter.Seq2[*LookupPage, error] {
	return func(yield func(*LookupPage, error) bool) {
		var after *uint64
		for range MaxLookupPages {
			p, err := c.lookupPage(ctx, d, lookupQuery{keyIDs: keyIDs, after: after, limit: PageLimit})
			if err != nil {
				yield(nil, fmt.Errorf("look up %s in ledger: %w", d, err))
				return
			}
			if !yield(p, nil) || p.Next == nil {
				return
			}
			after = p.Next
		}
		yield(nil, fmt.Errorf("look up %s in ledger: %w: more than %d pages", d, ErrTooMany, MaxLookupPages))
	}
}

// lookupPage fetches and verifies one page.
func (c *Client) lookupPage(ctx context.Context, d notarize.Digest, q lookupQuery) (*LookupPage, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	if err := checkLookupArgs(d, q.keyIDs); err != nil {
		return nil, err
	}
	before, err := c.stored()
	if err != nil {
		return nil, err
	}
	b, err := c.ops.Lookup(ctx, d, q)
	if err != nil {
		return nil, err
	}
	resp, cp, err := c.lookupAnswer(ctx, before, b, q.limit)
	if err != nil {
		return nil, err
	}
	recs, err := verifyPage(resp, cp, d, q)
	if err != nil {
		return nil, err
	}
	leaves := make(map[uint64]vindex.Hash, len(resp.Entries))
	for _, le := range resp.Entries {
		leaves[le.Index] = vindex.EntryLeafHash(le.Entry)
	}
	return &LookupPage{Checkpoint: cp, Records: recs, Next: resp.Next, mp: resp.Map, leaves: leaves}, nil
}

// Current asks the ledger for the current statement about d of each of
// keyIDs (the one with the newest signed timestamp, ties broken by log
// index) and verifies the answer: its checkpoint (and consistency with the
// stored one), and for every entry the inclusion proof, the envelope
// signature, that it is about d, that it is by one of keyIDs and that no key
// has two. Its cost does not grow with the digest's history nor with other
// keys' statements. At least one key ID is required; more than
// api.MaxCurrentKeyIDs are asked for in several requests.
//
// The answer is proven complete (issue 11): each key's proof against the
// newest map root the ledger committed in its log (its verifiable index,
// package vindex) says which entry is the key's current statement up to the
// root, and the client reads the log after the root itself (at most
// MaxMapTail entries, each proven included). An answer that leaves a
// statement out, or gives another one, is ErrIncomplete; so is a ledger
// without a map whose log is longer than MaxMapTail.
//
// A ledger without the current endpoint (404 NOT_FOUND) is asked with a
// paginated Lookup by the same keys instead, and the current statements are
// chosen here.
func (c *Client) Current(ctx context.Context, d notarize.Digest, keyIDs ...string) (*LookupResult, error) {
	if len(keyIDs) == 0 {
		return nil, fmt.Errorf("current statements about %s: no key IDs", d)
	}
	ids := slices.Clone(keyIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	res := &LookupResult{Records: []notarize.Record{}}
	for i, chunk := range slices.Collect(slices.Chunk(ids, api.MaxCurrentKeyIDs)) {
		r, err := c.current(ctx, d, chunk)
		if err != nil {
			return nil, fmt.Errorf("current statements about %s in ledger: %w", d, err)
		}
		if i == 0 {
			res.Complete = r.Complete
		} else {
			res.Complete = res.Complete.weakest(r.Complete)
		}
		res.Records = append(res.Records, r.Records...)
		if r.Checkpoint.Size >= res.Checkpoint.Size {
			res.Checkpoint = r.Checkpoint
		}
	}
	slices.SortFunc(res.Records, func(a, b notarize.Record) int { return cmp.Compare(a.Index, b.Index) })
	return res, nil
}

func (c *Client) current(ctx context.Context, d notarize.Digest, keyIDs []string) (*LookupResult, error) {
	tctx, cancel := c.withTimeout(ctx)
	defer cancel()
	if err := checkLookupArgs(d, keyIDs); err != nil {
		return nil, err
	}
	if len(keyIDs) > api.MaxCurrentKeyIDs {
		return nil, fmt.Errorf("%d key IDs, at most %d per current lookup", len(keyIDs), api.MaxCurrentKeyIDs)
	}
	before, err := c.stored()
	if err != nil {
		return nil, err
	}
	b, err := c.ops.Current(tctx, d, keyIDs)
	if ae, ok := errors.AsType[*APIError](err); ok && ae.StatusCode == http.StatusNotFound && ae.Code == api.CodeNotFound {
		cancel()
		return c.currentByPages(ctx, d, keyIDs)
	}
	if err != nil {
		return nil, err
	}
	resp, err := decodeLookup(b, maxLookupAnswer(len(keyIDs)))
	if err != nil {
		return nil, err
	}
	cp, err := c.checkpoint(tctx, []byte(resp.Checkpoint))
	if err != nil {
		return nil, err
	}
	// The consistency proof from the stored checkpoint (advance) and the
	// answer's proofs under cp (its entries, the map proof, the log's tail
	// after the map root) need only cp's signature: they run at once, each
	// fetching its tiles and bundles, and the answer counts only when both
	// hold. A failed advance (a fork, a rollback) stops the tail's read and
	// is the error returned, whatever the answer's proofs say.
	pctx, stop := context.WithCancel(tctx)
	defer stop()
	advanced := make(chan error, 1)
	go func() {
		err := c.advance(tctx, cp, before)
		if err != nil {
			stop()
		}
		advanced <- err
	}()
	recs, err := verifyCurrent(resp, cp, d, keyIDs)
	var done Completeness
	if err == nil {
		done, err = c.verifyComplete(pctx, resp.Map, cp, d, keyIDs, recs)
	}
	if aerr := <-advanced; aerr != nil {
		c.fetches.reset() // the tail read from the forked view is not kept
		return nil, aerr
	}
	if err != nil {
		return nil, err
	}
	return &LookupResult{Checkpoint: cp, Records: recs, Complete: done}, nil
}

// currentByPages chooses each key's current statement from a paginated
// lookup by those keys, for a ledger that has no current endpoint.
func (c *Client) currentByPages(ctx context.Context, d notarize.Digest, keyIDs []string) (*LookupResult, error) {
	cur := make(map[string]notarize.Record, len(keyIDs))
	res := &LookupResult{}
	for p, err := range c.LookupPages(ctx, d, keyIDs...) {
		if err != nil {
			return nil, err
		}
		for _, r := range p.Records {
			if old, ok := cur[r.KeyID]; ok {
				r, _ = notarize.Current([]notarize.Record{old, r}, d, r.KeyID)
			}
			cur[r.KeyID] = r
		}
		if p.Checkpoint.Size >= res.Checkpoint.Size {
			res.Checkpoint = p.Checkpoint
		}
	}
	res.Records = make([]notarize.Record, 0, len(cur))
	for _, r := range cur {
		res.Records = append(res.Records, r)
	}
	// Without the current endpoint there is no map proof either (a front
	// may have hidden both): the whole log is the tail, read under the
	// client's timeout like Lookup's, so that a front that never answers
	// the bundles cannot hang a caller without a deadline.
	tctx, cancel := c.withTimeout(ctx)
	defer cancel()
	if _, err := c.verifyComplete(tctx, nil, res.Checkpoint, d, keyIDs, res.Records); err != nil {
		return nil, err
	}
	return res, nil
}

// checkLookupArgs refuses a malformed digest or key ID, and too many key IDs,
// before anything is sent.
func checkLookupArgs(d notarize.Digest, keyIDs []string) error {
	if _, err := notarize.ParseDigest(string(d)); err != nil {
		return err
	}
	if len(keyIDs) > api.MaxLookupKeyIDs {
		return fmt.Errorf("%d key IDs, at most %d per lookup", len(keyIDs), api.MaxLookupKeyIDs)
	}
	for _, id := range keyIDs {
		if _, err := notarize.ParseDigest("sha256:" + id); err != nil {
			return fmt.Errorf("key ID %q: want 64 lowercase hex characters", clip(id, 80))
		}
	}
	return nil
}

// lookupAnswer decodes a lookup answer of at most n entries and verifies its
// checkpoint and consistency with the stored one (which it advances).
// before is the checkpoint stored when the request was sent: an answer
// older than it is a rollback, while one older only than a checkpoint
// stored meanwhile (a concurrent submission's receipt, in this process or
// another sharing its Home) must merely be its prefix.
func (c *Client) lookupAnswer(ctx context.Context, before *Checkpoint, b []byte, n int) (*api.LookupResponse, Checkpoint, error) {
	resp, err := decodeLookup(b, maxLookupAnswer(n))
	if err != nil {
		return nil, Checkpoint{}, err
	}
	cp, err := c.checkpoint(ctx, []byte(resp.Checkpoint))
	if err != nil {
		return nil, Checkpoint{}, err
	}
	if err := c.advance(ctx, cp, before); err != nil {
		return nil, Checkpoint{}, err
	}
	return resp, cp, nil
}

// decodeLookup decodes a lookup answer of at most limit bytes: JSON, or
// framed when it carries an inline tail (api.UnmarshalTailAnswer).
func decodeLookup(b []byte, limit int64) (*api.LookupResponse, error) {
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: lookup answer of %d bytes, at most %d", ErrBadProof, len(b), limit)
	}
	if api.IsTailAnswer(b) {
		r, err := api.UnmarshalTailAnswer(b)
		if err != nil {
			return nil, fmt.Errorf("%w: decode lookup answer: %w", ErrBadProof, err)
		}
		return r, nil
	}
	var r api.LookupResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: decode lookup answer: %v", ErrBadProof, err)
	}
	return &r, nil
}

// verifyPage checks one page of a lookup for d against its verified
// checkpoint: at most the entries asked for, each after q.after and in
// increasing log index, each verified by verifyLookupEntry, and a Next only
// on a page with entries (a ledger never sends an empty page that is not
// the last), not behind the page's last entry and within the checkpoint's
// tree, so that every page moves forward.
func verifyPage(resp *api.LookupResponse, cp Checkpoint, d notarize.Digest, q lookupQuery) ([]notarize.Record, error) {
	if resp.Digest != d.String() {
		return nil, fmt.Errorf("%w: asked about %s, the ledger answered about %q", ErrBadProof, d, clip(resp.Digest, 80))
	}
	if len(resp.Entries) > q.limit {
		return nil, fmt.Errorf("%w: a page of %d entries, at most %d were asked for", ErrBadProof, len(resp.Entries), q.limit)
	}
	recs := make([]notarize.Record, 0, len(resp.Entries))
	var last uint64
	for i, le := range resp.Entries {
		switch {
		case q.after != nil && le.Index <= *q.after:
			return nil, fmt.Errorf("%w: entry %d on the page after %d", ErrBadProof, le.Index, *q.after)
		case i > 0 && le.Index <= last:
			return nil, fmt.Errorf("%w: entry %d repeated or out of log order (after %d)", ErrBadProof, le.Index, last)
		}
		last = le.Index
		r, err := verifyLookupEntry(le, cp, d, q.keyIDs)
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	if resp.Next == nil {
		return recs, nil
	}
	switch next := *resp.Next; {
	case len(recs) == 0:
		return nil, fmt.Errorf("%w: an empty page announcing another", ErrBadProof)
	case next < last:
		return nil, fmt.Errorf("%w: the next page after %d would repeat entry %d", ErrBadProof, next, last)
	case next >= cp.Size:
		return nil, fmt.Errorf("%w: a next page after %d, beyond the checkpoint's %d entries", ErrBadProof, next, cp.Size)
	}
	return recs, nil
}

// verifyCurrent checks a current-statement answer for d: no next page, and
// every entry verified by verifyLookupEntry, by one of keyIDs, at most one
// per key.
func verifyCurrent(resp *api.LookupResponse, cp Checkpoint, d notarize.Digest, keyIDs []string) ([]notarize.Record, error) {
	if resp.Digest != d.String() {
		return nil, fmt.Errorf("%w: asked about %s, the ledger answered about %q", ErrBadProof, d, clip(resp.Digest, 80))
	}
	if resp.Next != nil {
		return nil, fmt.Errorf("%w: a current-statement answer with a next page", ErrBadProof)
	}
	if len(resp.Entries) > len(keyIDs) {
		return nil, fmt.Errorf("%w: %d current statements for %d keys", ErrBadProof, len(resp.Entries), len(keyIDs))
	}
	recs := make([]notarize.Record, 0, len(resp.Entries))
	byKey := make(map[string]uint64, len(resp.Entries))
	for _, le := range resp.Entries {
		r, err := verifyLookupEntry(le, cp, d, keyIDs)
		if err != nil {
			return nil, err
		}
		if i, dup := byKey[r.KeyID]; dup {
			return nil, fmt.Errorf("%w: entries %d and %d both given as the current statement of key %s", ErrBadProof, i, r.Index, r.KeyID)
		}
		byKey[r.KeyID] = r.Index
		recs = append(recs, r)
	}
	slices.SortFunc(recs, func(a, b notarize.Record) int { return cmp.Compare(a.Index, b.Index) })
	return recs, nil
}

// provenEntry checks one entry of an answer against its verified
// checkpoint, its inclusion proof and its envelope signature, and returns
// the verified statement; what it must be about is the caller's to check.
func provenEntry(le api.LookupEntry, cp Checkpoint) (*notarize.Verified, error) {
	if err := verifyInclusion(cp, le.Index, le.Entry, le.InclusionProof); err != nil {
		return nil, err
	}
	e, err := notarize.ParseEntry(le.Entry)
	if err != nil {
		return nil, fmt.Errorf("entry %d: %w", le.Index, err)
	}
	v, err := e.VerifyLogged()
	if err != nil {
		return nil, fmt.Errorf("entry %d: %w", le.Index, err)
	}
	return v, nil
}

// verifyLookupEntry checks one entry of a lookup answer for d against its
// verified checkpoint: the inclusion proof, the envelope signature, that it
// is about d and, when keyIDs are given, signed by one of them.
func verifyLookupEntry(le api.LookupEntry, cp Checkpoint, d notarize.Digest, keyIDs []string) (notarize.Record, error) {
	v, err := provenEntry(le, cp)
	if err != nil {
		return notarize.Record{}, err
	}
	if got := v.Statement.Digest(); got != d {
		return notarize.Record{}, fmt.Errorf("%w: entry %d is about %s, not %s", ErrBadProof, le.Index, got, d)
	}
	if len(keyIDs) > 0 && !slices.Contains(keyIDs, v.KeyID) {
		return notarize.Record{}, fmt.Errorf("%w: entry %d is signed by key %s, which the lookup did not ask for", ErrBadProof, le.Index, v.KeyID)
	}
	return notarize.Record{Index: le.Index, KeyID: v.KeyID, Statement: v.Statement}, nil
}
