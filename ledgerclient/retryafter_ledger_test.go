package ledgerclient_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// TestSubmitRateLimitedRetryAfter: a real ledger's rate limit refuses a
// key's second statement (429 RATE_LIMITED with Retry-After: one statement
// per 90 s); the client's error carries the wait the ledger asked for and
// says it, and the refused statement is not sent again.
func TestSubmitRateLimitedRetryAfter(t *testing.T) {
	srv := ledgertest.Start(t, ledgertest.WithRateLimits(ledger.RateLimits{KeyPerSecond: 1.0 / 90, KeyBurst: 1}))
	c, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: srv.URL, Home: t.TempDir(), VerifierKey: srv.VerifierKey})
	if err != nil {
		t.Fatal(err)
	}
	s := notarizetest.NewSigner(t)
	sign := func(content string) *notarize.Entry {
		t.Helper()
		st := notarize.NewStatement(notarize.DigestOf([]byte(content)), content, notarize.Predicate{
			Status: notarize.StatusTrusted, Kind: notarize.KindFile, Timestamp: time.Now().UTC().Truncate(time.Second),
		})
		e, err := notarize.Sign(t.Context(), s, st)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	if _, err := c.Submit(t.Context(), sign("first")); err != nil {
		t.Fatal(err)
	}
	_, err = c.Submit(t.Context(), sign("second"))
	ae, ok := errors.AsType[*ledgerclient.APIError](err)
	if !ok || ae.StatusCode != http.StatusTooManyRequests || ae.Code != api.CodeRateLimited {
		t.Fatalf("the key's second statement: %v, want 429 %s", err, api.CodeRateLimited)
	}
	if ae.RetryAfter != 90*time.Second {
		t.Fatalf("RetryAfter = %v, want the ledger's 90s", ae.RetryAfter)
	}
	if !strings.Contains(err.Error(), "try again in 1m30s") {
		t.Fatalf("the message does not say when to try again: %v", err)
	}
}
