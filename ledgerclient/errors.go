package ledgerclient

import (
	"encoding/base64"
	"errors"
	"fmt"
)

// ErrBadProof is returned (wrapped) when the ledger's evidence does not check
// out: an inclusion proof that does not lead to the checkpoint's root, tiles
// that do not hash to the ledger's own signed checkpoint, a receipt for another
// entry than the one submitted, or a lookup answer about another digest.
var ErrBadProof = errors.New("bad proof")

// ErrBadCheckpoint is returned (wrapped) for a checkpoint that is malformed,
// too large, not signed by the pinned verifier key or for another origin.
var ErrBadCheckpoint = errors.New("bad checkpoint")

// ErrKeyMismatch is returned (wrapped) when the ledger signs with another key
// than the one pinned for it, or when the stored state for the ledger's origin
// was signed by another key. The message names both keys where it can.
var ErrKeyMismatch = errors.New("ledger key mismatch")

// ForkError reports that the ledger showed a checkpoint that cannot extend the
// one this client stored: a rollback to a smaller tree, another root hash for
// the same size, or a larger tree for which no valid consistency proof exists.
// Both checkpoints are signed by the pinned key, so together they are evidence
// that the ledger rewrote its history. The stored state is left untouched.
type ForkError struct {
	// Stored is the last checkpoint this client verified and stored.
	Stored Checkpoint
	// Got is the checkpoint the ledger showed now.
	Got Checkpoint
	// Err says what failed (the rollback or the consistency proof).
	Err error
}

// Error describes the fork with both tree sizes and root hashes.
func (e *ForkError) Error() string {
	kind := "forked"
	if e.Got.Size < e.Stored.Size {
		kind = "rolled back"
	}
	return fmt.Sprintf("SECURITY ERROR: ledger %q %s its history: stored checkpoint size %d root %s, ledger shows size %d root %s: %v (stored state left untouched)",
		e.Stored.Origin, kind,
		e.Stored.Size, base64.StdEncoding.EncodeToString(e.Stored.Hash),
		e.Got.Size, base64.StdEncoding.EncodeToString(e.Got.Hash), e.Err)
}

// Unwrap returns the underlying cause.
func (e *ForkError) Unwrap() error { return e.Err }

// APIError is a refusal by the ledger: a non-2xx answer to an API request,
// decoded from its api.ErrorResponse body.
type APIError struct {
	// StatusCode is the HTTP status code.
	StatusCode int
	// Code is the api.ErrorResponse code (one of the Code* constants), or "" when
	// the body was not an api.ErrorResponse.
	Code string
	// Message is the ledger's explanation.
	Message string
}

// Error returns the status, code and message.
func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("ledger answered HTTP %d: %s", e.StatusCode, e.Message)
	}
	return fmt.Sprintf("ledger refused (HTTP %d %s): %s", e.StatusCode, e.Code, e.Message)
}
