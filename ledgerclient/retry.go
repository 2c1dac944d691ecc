package ledgerclient

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"time"
)

// Bounds of the retries of a read the ledger refused as busy (HTTP 503)
// or rate limited (429). A ledger shares its lookup places among clients
// and answers a full gate 503 with Retry-After; a read retried a few
// times over a few seconds gets through a transient flood, where failing
// at once would turn it into exit 4 for verify or untrust.
const (
	// maxReadRetries bounds the retries of one read: at most 1 +
	// maxReadRetries requests are sent.
	maxReadRetries = 3
	// maxRetryWait bounds the waits of one read's retries together: a
	// Retry-After that would take them past it is not waited for, the
	// refusal is returned at once (with APIError.RetryAfter).
	maxRetryWait = 5 * time.Second
	// firstRetryBackoff is the first wait when the answer gives no
	// Retry-After; each next one doubles. Up to a quarter more is added at
	// random, so that clients refused together do not retry together.
	firstRetryBackoff = 250 * time.Millisecond
	// maxRefusalDrain bounds the bytes of a refused answer read before
	// retrying (so its connection can be reused).
	maxRefusalDrain = 64 << 10
)

// retryTransport sends a read (GET or HEAD without a body: lookups, key
// lookups, info, tiles, entry bundles and the checkpoint) again when it is
// answered 503 or 429, at most maxReadRetries times, after the wait the
// answer's Retry-After asks for (or an exponential backoff when it gives
// none). It never waits past the request's deadline (the client's
// timeout) nor longer than maxRetryWait in all: then, and after the last
// retry, the refusal itself is returned. Anything else, a submission
// above all, is sent once: a submission refused is for its caller to send
// again.
type retryTransport struct {
	base http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !retriable(req) {
		return t.base.RoundTrip(req)
	}
	backoff, waited := firstRetryBackoff, time.Duration(0)
	for try := 0; ; try++ {
		resp, err := t.base.RoundTrip(req)
		if err != nil || try == maxReadRetries || !refusedBusy(resp.StatusCode) {
			return resp, err
		}
		wait := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		if wait == 0 {
			wait = backoff
		}
		wait += rand.N(wait/4 + 1)
		backoff *= 2
		if waited += wait; !mayWait(req.Context(), waited, wait) {
			return resp, nil
		}
		_, _ = io.CopyN(io.Discard, resp.Body, maxRefusalDrain)
		_ = resp.Body.Close()
		if err := sleepCtx(req.Context(), wait); err != nil {
			return nil, fmt.Errorf("waiting to retry after HTTP %d: %w", resp.StatusCode, err) // http.Client names the request
		}
	}
}

// retriable reports whether req is a read that may be sent again.
func retriable(req *http.Request) bool {
	return (req.Method == http.MethodGet || req.Method == http.MethodHead) &&
		(req.Body == nil || req.Body == http.NoBody)
}

// refusedBusy reports whether status says "busy, try again later".
func refusedBusy(status int) bool {
	return status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests
}

// mayWait reports whether a retry after wait fits: the waits so far,
// waited with it, are at most maxRetryWait, and it ends before ctx's
// deadline.
func mayWait(ctx context.Context, waited, wait time.Duration) bool {
	if waited > maxRetryWait {
		return false
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= wait {
		return false
	}
	return true
}

// sleepCtx waits for d, or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
