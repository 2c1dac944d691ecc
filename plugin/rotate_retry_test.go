package plugin

import (
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/notarize/docker-notarize/ledgerclient"
)

// TestRetry429HonoursRetryAfter: rotate waits the ledger's Retry-After
// when it asks for longer than rotate's own backoff (bounded by
// rotateMaxRetryAfter), and its backoff when the ledger asks for less or
// nothing (review: retry429 ignored Retry-After and retried a busy
// ledger every second).
func TestRetry429HonoursRetryAfter(t *testing.T) {
	for _, c := range []struct {
		name       string
		retryAfter time.Duration
		want       time.Duration
	}{
		{"longer than the backoff", 30 * time.Second, 30 * time.Second},
		{"past the cap", time.Hour, rotateMaxRetryAfter},
		{"shorter than the backoff", time.Millisecond, rotateBackoff},
		{"none", 0, rotateBackoff},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				calls := 0
				err := retry429(t.Context(), func() error {
					if calls++; calls == 1 {
						return &ledgerclient.APIError{StatusCode: http.StatusTooManyRequests, Code: "RATE_LIMITED", RetryAfter: c.retryAfter}
					}
					return nil
				})
				if err != nil || calls != 2 {
					t.Fatalf("retry429: %v after %d calls, want success on the second", err, calls)
				}
				if got := time.Since(start); got != c.want {
					t.Fatalf("waited %v before the second try, want %v", got, c.want)
				}
			})
		})
	}
}
