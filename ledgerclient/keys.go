package ledgerclient

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// MaxKeyPages bounds the pages one key lookup walk (KeyDigestPages) reads: a
// ledger that keeps announcing a next page is cut off with ErrTooMany.
const MaxKeyPages = MaxLookupPages

// KeyQuery is what one page of a key lookup asks for: the digests one signer
// key has statements about, with the key's current statement about each.
type KeyQuery struct {
	// Status, when set, keeps only the digests whose current statement by
	// the key has this status.
	Status notarize.Status
	// Cursor, when set, asks for the digests after it: the Next of the
	// previous page.
	Cursor notarize.Digest
	// Limit bounds the page's entries; 0 means PageLimit, at most
	// api.MaxLookupLimit.
	Limit int
}

// KeyPage is one verified page of a key lookup.
type KeyPage struct {
	// Checkpoint is the verified checkpoint every record of the page is
	// included in; it is consistent with the client's stored one.
	Checkpoint Checkpoint
	// Records hold one statement per digest, signed by the key asked for,
	// in strictly increasing digest order, each after the query's cursor.
	Records []notarize.Record
	// Next is the cursor of the following page; "" on the last page.
	Next notarize.Digest
}

// KeyDigests fetches one page of the digests the key keyID has statements
// about (api.PathKeys), with the key's current statement about each, and
// verifies it: the answer's checkpoint (signature, witness policy,
// consistency with the stored one, which it advances), and for every entry
// its inclusion proof, its envelope signature, that it is signed by keyID,
// that it has q.Status when one was asked for, and that the digests come in
// strictly increasing order after q.Cursor, one statement each; a Next
// cursor must not go back before the page's last digest. Any failure fails
// the page. The page proves that each listed statement is logged and signed
// by the key, not that the list is complete nor that each statement is the
// key's newest: a ledger can still leave digests out.
func (c *Client) KeyDigests(ctx context.Context, keyID string, q KeyQuery) (*KeyPage, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	if q.Limit == 0 {
		q.Limit = PageLimit
	}
	if err := checkKeyQuery(keyID, q); err != nil {
		return nil, fmt.Errorf("look up the digests of key %s: %w", clip(keyID, 80), err)
	}
	p, err := c.keyPage(ctx, keyID, q)
	if err != nil {
		return nil, fmt.Errorf("look up the digests of key %s in ledger: %w", keyID, err)
	}
	return p, nil
}

func (c *Client) keyPage(ctx context.Context, keyID string, q KeyQuery) (*KeyPage, error) {
	before, err := c.stored()
	if err != nil {
		return nil, err
	}
	b, err := c.ops.KeyDigests(ctx, keyID, q)
	if err != nil {
		return nil, err
	}
	resp, err := decodeKeyDigests(b, maxLookupAnswer(q.Limit))
	if err != nil {
		return nil, err
	}
	cp, err := c.checkpoint(ctx, []byte(resp.Checkpoint))
	if err != nil {
		return nil, err
	}
	if err := c.advance(ctx, cp, before); err != nil {
		return nil, err
	}
	return verifyKeyPage(resp, cp, keyID, q)
}

// KeyDigestPages walks every page of the key lookup of keyID (only the
// digests whose current statement has status, when it is set), verifying each
// page as KeyDigests does, and also across pages: every page starts after the
// previous page's last digest, so a digest is never listed twice and the
// order never goes back, and each checkpoint is consistent with the one
// before. It yields the pages in digest order and stops at the first error,
// which it yields, and after MaxKeyPages pages with ErrTooMany.
func (c *Client) KeyDigestPages(ctx context.Context, keyID string, status notarize.Status) iter.Seq2[*KeyPage, error] {
	return func(yield func(*KeyPage, error) bool) {
		q := KeyQuery{Status: status, Limit: PageLimit}
		for range MaxKeyPages {
			p, err := c.KeyDigests(ctx, keyID, q)
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(p, nil) || p.Next == "" {
				return
			}
			q.Cursor = p.Next
		}
		yield(nil, fmt.Errorf("look up the digests of key %s in ledger: %w: more than %d pages", keyID, ErrTooMany, MaxKeyPages))
	}
}

// proveJobs bounds the current lookups ProveCurrent has under way at once.
const proveJobs = 8

// ProveCurrent checks that each record, listed by a key lookup of keyID,
// is the key's current statement about its digest, as a current lookup
// proves it (Current: with the ledger's verifiable map, the answer is
// proven complete). A key lookup proves each listed statement logged and
// signed, not that it is the newest: a ledger, or a front before it, could
// list an older "trusted" statement about an asset the key has since
// revoked. A record that is not the proven current statement is
// ErrIncomplete, naming both entries. It costs one current lookup per
// record, proveJobs at a time.
func (c *Client) ProveCurrent(ctx context.Context, keyID string, records []notarize.Record) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The first failure is the answer: it cancels the others, whose
	// errors (a fetch cut short, not always wrapping context.Canceled)
	// would only hide it.
	var first error
	var once sync.Once
	sem := make(chan struct{}, proveJobs)
	var wg sync.WaitGroup
	for _, r := range records {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := c.proveOne(ctx, keyID, r); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		})
	}
	wg.Wait()
	return first
}

// proveOne checks that r is keyID's proven current statement about its
// digest.
func (c *Client) proveOne(ctx context.Context, keyID string, r notarize.Record) error {
	d := r.Statement.Digest()
	if r.KeyID != keyID {
		return fmt.Errorf("prove the current statement about %s: %w: entry %d is by key %s, not %s", d, ErrBadProof, r.Index, r.KeyID, keyID)
	}
	res, err := c.Current(ctx, d, keyID)
	if err != nil {
		return fmt.Errorf("prove the current statement of key %s about %s: %w", keyID, d, err)
	}
	if len(res.Records) != 1 || res.Records[0].Index != r.Index {
		cur := "none"
		if len(res.Records) == 1 {
			cur = fmt.Sprintf("entry %d", res.Records[0].Index)
		}
		return fmt.Errorf("%w: the key lookup gave entry %d as key %s's current statement about %s, the proven current statement is %s", ErrIncomplete, r.Index, keyID, d, cur)
	}
	return nil
}

// checkKeyQuery refuses a malformed key ID, status, cursor or limit before
// anything is sent.
func checkKeyQuery(keyID string, q KeyQuery) error {
	if _, err := notarize.ParseDigest("sha256:" + keyID); err != nil {
		return fmt.Errorf("key ID %q: want 64 lowercase hex characters", clip(keyID, 80))
	}
	if q.Status != "" && !q.Status.Valid() {
		return fmt.Errorf("status %q: want trusted, untrusted or unsupported", clip(string(q.Status), 80))
	}
	if q.Cursor != "" {
		if _, err := notarize.ParseDigest(string(q.Cursor)); err != nil {
			return fmt.Errorf("cursor: %w", err)
		}
	}
	if q.Limit < 1 || q.Limit > api.MaxLookupLimit {
		return fmt.Errorf("page limit %d: want 1 to %d", q.Limit, api.MaxLookupLimit)
	}
	return nil
}

// decodeKeyDigests decodes a key lookup answer of at most limit bytes.
func decodeKeyDigests(b []byte, limit int64) (*api.KeyDigestsResponse, error) {
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: key lookup answer of %d bytes, at most %d", ErrBadProof, len(b), limit)
	}
	var r api.KeyDigestsResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: decode key lookup answer: %v", ErrBadProof, err)
	}
	return &r, nil
}

// verifyKeyPage checks one key lookup page against its verified checkpoint:
// the answer is about keyID; at most q.Limit entries; each entry's
// inclusion proof, signature, signer (keyID) and status (q.Status when set);
// digests strictly increasing and after q.Cursor; and a Next that is a
// digest not before the page's last one (nor before the cursor), so that
// every page moves forward.
func verifyKeyPage(resp *api.KeyDigestsResponse, cp Checkpoint, keyID string, q KeyQuery) (*KeyPage, error) {
	if resp.KeyID != keyID {
		return nil, fmt.Errorf("%w: asked about key %s, the ledger answered about %q", ErrBadProof, keyID, clip(resp.KeyID, 80))
	}
	if len(resp.Entries) > q.Limit {
		return nil, fmt.Errorf("%w: a page of %d entries, at most %d were asked for", ErrBadProof, len(resp.Entries), q.Limit)
	}
	p := &KeyPage{Checkpoint: cp, Records: make([]notarize.Record, 0, len(resp.Entries))}
	last := q.Cursor
	for _, le := range resp.Entries {
		r, err := verifyKeyEntry(le, cp, keyID, q.Status)
		if err != nil {
			return nil, err
		}
		d := r.Statement.Digest()
		if last != "" && d <= last {
			what := "out of digest order"
			switch {
			case d == last:
				what = "listed twice"
			case last == q.Cursor:
				what = "not after the cursor " + string(q.Cursor)
			}
			return nil, fmt.Errorf("%w: entry %d about %s is %s (after %s)", ErrBadProof, le.Index, d, what, last)
		}
		last = d
		p.Records = append(p.Records, r)
	}
	if resp.Next == "" {
		return p, nil
	}
	next, err := notarize.ParseDigest(resp.Next)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: next page cursor %q: %v", ErrBadProof, clip(resp.Next, 80), err)
	case next < last:
		return nil, fmt.Errorf("%w: the next page after %s would list %s again", ErrBadProof, next, last)
	case len(p.Records) == 0 && next == q.Cursor:
		return nil, fmt.Errorf("%w: an empty page announcing the same page again (cursor %s)", ErrBadProof, next)
	}
	p.Next = next
	return p, nil
}

// verifyKeyEntry checks one entry of a key lookup against its verified
// checkpoint: the inclusion proof, the envelope signature, that it is signed
// by keyID and, when status is set, that it has that status.
func verifyKeyEntry(le api.LookupEntry, cp Checkpoint, keyID string, status notarize.Status) (notarize.Record, error) {
	v, err := provenEntry(le, cp)
	if err != nil {
		return notarize.Record{}, err
	}
	if v.KeyID != keyID {
		return notarize.Record{}, fmt.Errorf("%w: entry %d is signed by key %s, not by the key asked about (%s)", ErrBadProof, le.Index, v.KeyID, keyID)
	}
	if got := v.Statement.Predicate.Status; status != "" && got != status {
		return notarize.Record{}, fmt.Errorf("%w: entry %d says %s, the lookup asked only for %s", ErrBadProof, le.Index, got, status)
	}
	return notarize.Record{Index: le.Index, KeyID: v.KeyID, Statement: v.Statement}, nil
}

// KeyDigests returns the body of GET /api/v1/keys/{keyID}/digests (one page
// of an api.KeyDigestsResponse) for q.
func (h *httpOps) KeyDigests(ctx context.Context, keyID string, q KeyQuery) ([]byte, error) {
	v := url.Values{}
	if q.Status != "" {
		v.Set(api.QueryStatus, string(q.Status))
	}
	if q.Cursor != "" {
		v.Set(api.QueryCursor, string(q.Cursor))
	}
	if q.Limit > 0 {
		v.Set(api.QueryLimit, strconv.Itoa(q.Limit))
	}
	return h.do(ctx, http.MethodGet, api.PathKeys+keyID+api.PathKeyDigestsSuffix, v, nil, maxLookupAnswer(q.Limit))
}
