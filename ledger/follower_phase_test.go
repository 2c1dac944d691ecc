package ledger

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// TestWaitIndexedReportsFollowerPhase: a wait for the index that times out
// says what the follower was doing, and for how long, so that a stall can
// be told from a log that did not grow.
func TestWaitIndexedReportsFollowerPhase(t *testing.T) {
	tl := startLedger(t, Config{})
	tl.submit(t, newTestSigner(t).sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	err := tl.store.waitIndexed(ctx, tl.store.processed.Load()+1)
	if err == nil || !strings.Contains(err.Error(), "follower caught up with the log's 1 integrated entries for ") {
		t.Fatalf("waitIndexed past the log: %v; want the follower's phase", err)
	}
}
