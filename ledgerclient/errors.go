package ledgerclient

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
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
	// RetryAfter is how long the ledger asked the client to wait before
	// trying again: the Retry-After of a 429 (a rate limit) or a 503 (the
	// ledger busy), in seconds or as an HTTP date (RFC 9110, 10.2.3), at
	// most MaxRetryAfter. Zero when it gave none, one that does not parse,
	// or a date already past. A refused read has been retried first, a
	// few times within the client's timeout (retry.go); a submission never is.
	RetryAfter time.Duration
}

// MaxRetryAfter bounds APIError.RetryAfter: a longer wait asked for (by a
// ledger, or a front before it) is taken as this one.
const MaxRetryAfter = time.Hour

// Error returns the status, code and message, and when to try again.
func (e *APIError) Error() string {
	msg := fmt.Sprintf("ledger refused (HTTP %d %s): %s", e.StatusCode, e.Code, e.Message)
	if e.Code == "" {
		msg = fmt.Sprintf("ledger answered HTTP %d: %s", e.StatusCode, e.Message)
	}
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(" (the ledger asks to try again in %v)", e.RetryAfter)
	}
	return msg
}

// maxRetryAfterLen bounds the Retry-After values parsed: an HTTP date is
// 29 characters.
const maxRetryAfterLen = 64

// parseRetryAfter reads a Retry-After value received at now: a number of
// seconds or an HTTP date, as a wait of at most MaxRetryAfter. It returns
// zero for a value that is neither, or a date not after now.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > maxRetryAfterLen {
		return 0
	}
	if strings.Trim(v, "0123456789") == "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n > uint64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter // only digits: too many is a long wait
		}
		return time.Duration(n) * time.Second
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	d := at.Sub(now)
	if d <= 0 {
		return 0
	}
	return min(d.Round(time.Second), MaxRetryAfter)
}
