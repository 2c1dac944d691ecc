package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"time"

	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
)

// A submission can fail after the ledger logged it: a front (a load
// balancer, a proxy, or a lying one) forwards it and then answers 502, the
// connection drops while the ledger answers, or the receipt does not
// verify. A revocation whose failure is reported without a look is in the
// log, but the command neither says where nor waits until the ledger's
// index covers it, so a front replaying an older map root hides it from
// verify for as long as that root stays recent (red team 12). After a
// failure of unknown outcome, the commands that record statements look the
// statement up (proven, as every lookup is) and, found, go on as with its
// receipt.

// lostReceiptWait bounds the look for a submission of unknown outcome
// that is not a revocation waited for (lookBound). A ledger answers a
// submission only once a checkpoint it published covers the entry, so a
// statement logged before the failure is in the ledger's lookups within
// its publication interval (well under a second) and the look ends there.
const lostReceiptWait = 5 * time.Second

// lostReceiptPoll is the first pause between the looks, doubled up to
// lostReceiptPollMax.
const (
	lostReceiptPoll    = 100 * time.Millisecond
	lostReceiptPollMax = time.Second
)

// lostReceiptClockSkew is the margin by which a map root's time (the
// ledger's clock) must follow the failure (this machine's clock) for an
// answer under it to show everything logged before the failure.
const lostReceiptClockSkew = time.Second

// lookBound is how long a command looks for a submission of unknown
// outcome: for a revocation it waits for (--index-wait and the hold both
// set), the whole --index-wait. A look that ends without an answer from
// after the failure cannot tell whether the revocation was logged; one
// that ran --index-wait has outlasted every map root the ledger dated
// before it indexed a revocation logged before the failure, plus verify's
// --max-index-lag (the ledger indexes within seconds), so that no front
// can show a verifier a recent root without it any more (red team 13).
func lookBound(revocation bool, wait, hold time.Duration) time.Duration {
	if revocation && wait > 0 && hold > 0 {
		return max(wait, lostReceiptWait)
	}
	return lostReceiptWait
}

// outcomeUnknown reports whether a failed submission may have been logged
// and is worth looking for: everything but the ledger's own refusal (a 4xx
// with a ledger error code, which the ledger answers before it logs
// anything; submitStatement looks behind it for a revocation), a
// submission that wrote nothing to any connection (ledgerclient.ErrNotSent),
// and proof that the ledger (or whatever answers for it) shows another
// history or key (a fork, a key mismatch): every lookup through it would
// be refused the same way, so the command reports that at once.
func outcomeUnknown(err error) bool {
	if _, fork := errors.AsType[*ledgerclient.ForkError](err); fork || errors.Is(err, ledgerclient.ErrNotSent) || errors.Is(err, ledgerclient.ErrKeyMismatch) {
		return false
	}
	if apiErr, ok := errors.AsType[*ledgerclient.APIError](err); ok {
		return apiErr.Code == "" || apiErr.StatusCode >= http.StatusInternalServerError || apiErr.StatusCode < http.StatusBadRequest
	}
	return true
}

// lookOutcome is what one look found.
type lookOutcome int

const (
	lookInconclusive lookOutcome = iota // no answer from after the failure yet
	lookFound                           // the statement, proven in the ledger
	lookAbsent                          // proven absent from a log read after the failure
)

// findLost asks find until it reports the submission found or proven
// absent, the parent context ends, or bound passes. A failed ask, or an
// answer from before the failure, is asked again: a front that fails or
// replays lookups only costs the wait. It returns the last outcome and the
// last ask's error.
func findLost(ctx context.Context, bound time.Duration, find func(context.Context) (lookOutcome, error)) (lookOutcome, error) {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	pause := lostReceiptPoll
	for {
		got, err := find(ctx)
		if got != lookInconclusive {
			return got, nil
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return lookInconclusive, err
		case <-t.C:
		}
		pause = min(2*pause, lostReceiptPollMax)
	}
}

// lostSubmission is the error of a submission of unknown outcome that the
// look did not find.
func lostSubmission(err error, got lookOutcome, bound time.Duration, lookErr error, failed time.Time) error {
	if got == lookAbsent {
		return fmt.Errorf("%w (it is not this key's current statement in the ledger as of a map root dated after the failure: not logged then, or already superseded; a front that still holds the submission could forward it later. Run the command again: a new statement is recorded and waited for)", err)
	}
	msg := fmt.Sprintf("no answer from after the failure came within %s, so whether the ledger logged the statement is unknown: run the command again (a repeat is recorded once) or check with docker notarize verify", bound.Round(time.Second))
	if lookErr != nil {
		msg += fmt.Sprintf("; the last lookup failed: %v", lookErr)
	}
	return &UnknownOutcomeError{Err: fmt.Errorf("%w (%s)", err, msg), Failed: failed}
}

// UnknownOutcomeError is a submission that failed in a way that may have
// come after the ledger logged it, and that no answer from after the
// failure showed either way. Failed is when the submission failed.
type UnknownOutcomeError struct {
	Err    error
	Failed time.Time
}

// Error returns the submission's error and what the look found.
func (e *UnknownOutcomeError) Error() string { return e.Err.Error() }

// Unwrap returns the submission's error (an *ledgerclient.APIError, a
// transport error), so that exit codes and Retry-After still read it.
func (e *UnknownOutcomeError) Unwrap() error { return e.Err }

// waitOut waits, unless ctx ends first, until bound has passed from the
// failure of the latest of errs that is an UnknownOutcomeError: a command
// that looked for several revocations for less than lookBound each (key
// rotate, lostReceiptWait per digest) returns no sooner after each failure
// than one that looked for one (red team 13 F-F: counted from the earliest,
// the last of seven lost re-statements was hidden right after rotate).
func waitOut(ctx context.Context, bound time.Duration, errs []error) {
	var last time.Time
	for _, err := range errs {
		if u, ok := errors.AsType[*UnknownOutcomeError](err); ok && u.Failed.After(last) {
			last = u.Failed
		}
	}
	if last.IsZero() {
		return
	}
	if wait := time.Until(last.Add(bound)); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

// submitStatement calls submit, which sends the entry stating st by keyID,
// and returns its verified receipt; after a failure of unknown outcome it
// sends it once more (the ledger answers a repeat with the receipt of the statement as
// logged, and charges no rate limit for it), and if that fails too looks for st
// among keyID's current statements (Current, proven complete up to its
// checkpoint) for up to bound (lookBound) and, found there, returns it as
// the receipt, with a warning on stderr. The statement is taken as absent
// only from an answer whose map root the ledger dated after the failure:
// its log holds everything logged before the failure, whereas an older
// answer, which a front can replay, proves nothing (red team 13). A
// receipt found so has its lookup's checkpoint; it is not a Duplicate, as
// far as anyone can tell: this submission (or a repeat of it) logged it.
//
// A revocation (untrusted or unsupported, a key revocation) that the
// ledger refuses with its own 4xx is looked for too, for lostReceiptWait:
// a front that forwards it and then forges the refusal is caught when the
// statement shows up in the ledger's answers (red team 13 F-C); not found,
// the refusal stands as it came. A trust refused is not looked for: had a
// front forged that refusal, nothing would be hidden.
func submitStatement(ctx context.Context, stderr io.Writer, client *ledgerclient.Client, st *notarize.Statement, keyID string, bound time.Duration, submit func() (*ledgerclient.SubmitResult, error)) (*ledgerclient.SubmitResult, error) {
	res, err := submit()
	if err == nil || ctx.Err() != nil {
		return res, err
	}
	unknown := outcomeUnknown(err)
	refused := !unknown && st.Predicate.Status != notarize.StatusTrusted && !errors.Is(err, ledgerclient.ErrNotSent)
	if !unknown && !refused {
		return res, err
	}
	d := st.Digest()
	if refused {
		bound = lostReceiptWait
	} else if again, aerr := submit(); aerr == nil {
		// Sent again: the ledger logs a statement once, so this is the
		// receipt of the first submission if it was logged, or of this one.
		fmt.Fprintf(stderr, "warning: the ledger's answer to the submission of %s was lost (%v); sent again, the statement is in the ledger at log index %d\n", d, err, again.Index)
		return again, nil
	}
	failed := time.Now()
	var got *ledgerclient.SubmitResult
	outcome, lookErr := findLost(ctx, bound, func(ctx context.Context) (lookOutcome, error) {
		cur, err := client.Current(ctx, d, keyID)
		if err != nil {
			return lookInconclusive, err
		}
		r, ok := notarize.Current(cur.Records, d, keyID)
		if ok && sameStatement(r.Statement, st) {
			got = &ledgerclient.SubmitResult{Index: r.Index, Checkpoint: cur.Checkpoint, Record: r}
			return lookFound, nil
		}
		if c := cur.Complete; c.AnchoredAt.IsZero() && !c.RootTime.IsZero() && c.RootTime.After(failed.Add(lostReceiptClockSkew)) {
			return lookAbsent, nil
		}
		return lookInconclusive, nil
	})
	switch {
	case outcome != lookFound && refused:
		return nil, err // the refusal, as it came
	case outcome != lookFound:
		return nil, lostSubmission(err, outcome, bound, lookErr, failed)
	case refused:
		fmt.Fprintf(stderr, "warning: the submission of %s was answered with a refusal (%v), but the statement is in the ledger at log index %d: something between this machine and the ledger forged the refusal\n", d, err, got.Index)
	default:
		fmt.Fprintf(stderr, "warning: the ledger's answer to the submission of %s was lost (%v); the statement is in the ledger at log index %d\n", d, err, got.Index)
	}
	return got, nil
}

// sameStatement reports whether a, proven in the ledger, is the statement
// b: the same subject, status, signed time, signer identity and
// attributes. Two statements by one key that agree in all of these are the
// same decision, whichever was logged.
func sameStatement(a, b *notarize.Statement) bool {
	pa, pb := a.Predicate, b.Predicate
	return a.Digest() == b.Digest() && subjectName(a) == subjectName(b) &&
		pa.Status == pb.Status && pa.Timestamp.Equal(pb.Timestamp) &&
		pa.Name == pb.Name && pa.Email == pb.Email && pa.Kind == pb.Kind &&
		pa.MediaType == pb.MediaType && pa.Size == pb.Size &&
		maps.Equal(pa.Attributes, pb.Attributes)
}
