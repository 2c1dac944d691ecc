package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
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

// lostReceiptWait bounds the look for a submission of unknown outcome. A
// ledger answers a submission only once a checkpoint it published covers
// the entry, so a statement logged before the failure is in the ledger's
// lookups within its publication interval (well under a second) and the
// look ends there; this bound is how long a failed submission that was not
// logged delays the error.
const lostReceiptWait = 5 * time.Second

// lostReceiptPoll is the first pause between the looks, doubled up to
// lostReceiptPollMax.
const (
	lostReceiptPoll    = 100 * time.Millisecond
	lostReceiptPollMax = time.Second
)

// outcomeUnknown reports whether a failed submission may have been logged:
// everything but the ledger's own refusal (a 4xx with a ledger error code,
// which the ledger answers before it logs anything) and a connection never
// made. A front that forges a refusal after forwarding is not looked
// behind; the command then fails, which promises nothing.
func outcomeUnknown(err error) bool {
	if apiErr, ok := errors.AsType[*ledgerclient.APIError](err); ok {
		return apiErr.Code == "" || apiErr.StatusCode >= http.StatusInternalServerError || apiErr.StatusCode < http.StatusBadRequest
	}
	if opErr, ok := errors.AsType[*net.OpError](err); ok && opErr.Op == "dial" {
		return false
	}
	return true
}

// findLost asks find until it reports the submission found, the parent
// context ends, or lostReceiptWait passes. A failed ask is asked again: a
// front that fails lookups too only costs the wait. It returns whether the
// submission was found and the last ask's error.
func findLost(ctx context.Context, find func(context.Context) (bool, error)) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, lostReceiptWait)
	defer cancel()
	pause := lostReceiptPoll
	for {
		found, err := find(ctx)
		if found {
			return true, nil
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, err
		case <-t.C:
		}
		pause = min(2*pause, lostReceiptPollMax)
	}
}

// lostSubmission is the error of a submission of unknown outcome that the
// look did not find: the statement may be logged still, or later.
func lostSubmission(err, lookErr error) error {
	msg := fmt.Sprintf("the statement was not found in the ledger within %s; it may still be logged: run the command again (a repeat is recorded once) or check with docker notarize verify", lostReceiptWait)
	if lookErr != nil {
		return fmt.Errorf("%w (%s; the last lookup failed: %v)", err, msg, lookErr)
	}
	return fmt.Errorf("%w (%s)", err, msg)
}

// submitStatement submits entry, which states st by keyID, and returns its
// verified receipt; after a failure of unknown outcome it looks for st
// among keyID's current statements (Current, proven complete) and, found
// there, returns it as the receipt, with a warning on stderr. A receipt
// found so has its lookup's checkpoint; it is not a Duplicate, as far as
// anyone can tell: this submission (or a repeat of it) logged it.
func submitStatement(ctx context.Context, stderr io.Writer, client *ledgerclient.Client, entry *notarize.Entry, st *notarize.Statement, keyID string, submit func() (*ledgerclient.SubmitResult, error)) (*ledgerclient.SubmitResult, error) {
	res, err := submit()
	if err == nil || ctx.Err() != nil || !outcomeUnknown(err) {
		return res, err
	}
	d := st.Digest()
	var got *ledgerclient.SubmitResult
	found, lookErr := findLost(ctx, func(ctx context.Context) (bool, error) {
		cur, err := client.Current(ctx, d, keyID)
		if err != nil {
			return false, err
		}
		r, ok := notarize.Current(cur.Records, d, keyID)
		if !ok || !sameStatement(r.Statement, st) {
			return false, nil
		}
		got = &ledgerclient.SubmitResult{Index: r.Index, Checkpoint: cur.Checkpoint, Record: r}
		return true, nil
	})
	if !found {
		return nil, lostSubmission(err, lookErr)
	}
	fmt.Fprintf(stderr, "warning: the ledger's answer to the submission of %s was lost (%v); the statement is in the ledger at log index %d\n", d, err, got.Index)
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
