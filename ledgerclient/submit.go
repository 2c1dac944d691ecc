package ledgerclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptrace"
	"sync/atomic"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// SubmitResult is a verified receipt.
type SubmitResult struct {
	// Index is the entry's position in the log.
	Index uint64
	// Duplicate is true when the entry was already in the log.
	Duplicate bool
	// Checkpoint is the verified checkpoint whose tree includes the entry.
	Checkpoint Checkpoint
	// Record is the entry as a verified record.
	Record notarize.Record
}

// ErrNotSent is matched (errors.Is) by a Submit error when no request
// carrying the entry was written to any connection (the ledger could not be
// reached, or e was refused here): the ledger cannot have logged it. Any
// other failure may come after the ledger logged the entry (a front that
// forwards it and answers 502, a connection dropped during the answer, a
// redirect to an address that refuses the connection).
var ErrNotSent = errors.New("nothing was sent to the ledger")

// notSentError is a Submit failure before any request was written.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return e.err.Error() }
func (e *notSentError) Unwrap() []error {
	return []error{e.err, ErrNotSent}
}

// Submit checks e's signature, sends it to the ledger and returns only once
// the receipt checks out: its checkpoint verifies and is consistent with the stored one, its
// inclusion proof leads to the checkpoint's root, its entry is e and its
// envelope verifies. A refusal by the ledger is an *APIError; a failure
// before any request was written matches ErrNotSent.
func (c *Client) Submit(ctx context.Context, e *notarize.Entry) (*SubmitResult, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	// Every request of the submission (a redirect's too) carries the
	// trace: headers written on any of them make the outcome unknown.
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteHeaders: func() { wrote.Store(true) }})
	res, err := c.submit(ctx, e)
	if err != nil {
		if !wrote.Load() {
			err = &notSentError{err}
		}
		return nil, fmt.Errorf("submit to ledger: %w", err)
	}
	return res, nil
}

func (c *Client) submit(ctx context.Context, e *notarize.Entry) (*SubmitResult, error) {
	// Refuse locally what the ledger must refuse.
	if _, err := e.Verify(); err != nil {
		return nil, err
	}
	body, err := e.Marshal()
	if err != nil {
		return nil, err
	}
	b, err := c.ops.Submit(ctx, body)
	if err != nil {
		return nil, err
	}
	r, err := decodeReceipt(b)
	if err != nil {
		return nil, err
	}
	cp, err := c.checkpoint(ctx, []byte(r.Checkpoint))
	if err != nil {
		return nil, err
	}
	// A receipt may carry the checkpoint that first covered the entry, older
	// than one this client stored since: that is no rollback as long as it
	// is a prefix of the stored tree, which advance proves.
	if err := c.advance(ctx, cp, nil); err != nil {
		return nil, err
	}
	rec, err := verifyReceipt(r, cp, body)
	if err != nil {
		return nil, err
	}
	return &SubmitResult{Index: r.Index, Duplicate: r.Duplicate, Checkpoint: cp, Record: rec}, nil
}

// decodeReceipt decodes a receipt, bounded in size.
func decodeReceipt(b []byte) (*api.Receipt, error) {
	if len(b) > maxReceiptSize {
		return nil, fmt.Errorf("%w: receipt of %d bytes, at most %d", ErrBadProof, len(b), maxReceiptSize)
	}
	var r api.Receipt
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: decode receipt: %v", ErrBadProof, err)
	}
	if r.Checkpoint == "" || len(r.Entry) == 0 {
		return nil, fmt.Errorf("%w: receipt without checkpoint or entry", ErrBadProof)
	}
	return &r, nil
}

// verifyReceipt checks a decoded receipt against its verified checkpoint
// and the entry bytes that were sent, and returns the entry's record.
func verifyReceipt(r *api.Receipt, cp Checkpoint, sent []byte) (notarize.Record, error) {
	if err := verifyInclusion(cp, r.Index, r.Entry, r.InclusionProof); err != nil {
		return notarize.Record{}, err
	}
	got, err := notarize.ParseEntry(r.Entry)
	if err != nil {
		return notarize.Record{}, fmt.Errorf("%w: the receipt's entry: %v", ErrBadProof, err)
	}
	v, err := got.VerifyLogged()
	if err != nil {
		return notarize.Record{}, fmt.Errorf("entry %d: %w", r.Index, err)
	}
	if !bytes.Equal(r.Entry, sent) {
		// A statement is logged once: a duplicate's receipt carries the
		// entry as logged, which may hold other signature bytes (ECDSA
		// signatures are randomized). It must be the same statement by the
		// same key; any other entry is not a receipt for this submission.
		if !r.Duplicate || !sameStatement(sent, v) {
			return notarize.Record{}, fmt.Errorf("%w: the receipt is for another entry than the one submitted", ErrBadProof)
		}
	}
	return notarize.Record{Index: r.Index, KeyID: v.KeyID, Statement: v.Statement}, nil
}

// sameStatement reports whether the entry sent holds the statement of the
// verified logged entry: the same key and the same signed payload.
func sameStatement(sent []byte, logged *notarize.Verified) bool {
	e, err := notarize.ParseEntry(sent)
	if err != nil {
		return false
	}
	v, err := e.Verify()
	return err == nil && v.Identity() == logged.Identity()
}
