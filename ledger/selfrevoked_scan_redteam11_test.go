package ledger

import (
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// TestRedteam11SelfRevokedScanBound tries to get statements by a
// self-revoked key admitted past the refusal's scan bound. A thief holding
// K writes more than selfRevokedScan statements by K about K's own
// revocation digest (sha256:<K>) that are not revocations, before the
// owner revokes K. After a restart (the scan position is kept in memory
// only), the first new statement by K scans selfRevokedScan rows, does not
// reach the revocation, and is admitted: each selfRevokedScan rows bought
// beforehand buy one statement after the revocation, and each of those
// submissions costs the ledger selfRevokedScan record reads.
//
// Held since the fix: a scan that stops at its bound refuses the
// statement as unavailable (503, retry) and the next submission reads on,
// so no statement is admitted and the revocation is found.
func TestRedteam11SelfRevokedScanBound(t *testing.T) {
	tl := startLedger(t, Config{RateLimits: RateLimits{Off: true}})
	k := newTestSigner(t)
	kd, err := notarize.KeyRevocationDigest(k.keyID)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-2 * time.Hour)
	entries := make([]*notarize.Entry, selfRevokedScan+8)
	for i := range entries {
		entries[i] = k.sign(t, kd, notarize.StatusTrusted, now.Add(time.Duration(i)*time.Second))
	}
	errs := make([]error, len(entries))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i, e := range entries {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			_, errs[i] = tl.Submit(t.Context(), e)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	rev := tl.submit(t, k.revoke(t, k.keyID, "stolen", now.Add(time.Hour)), http.StatusCreated)
	tl.restart(t)

	admitted, refused := 0, 0
	for i := range 3 {
		e := k.sign(t, randomDigest(t), notarize.StatusTrusted, now.Add(time.Hour+time.Duration(i+1)*time.Minute))
		status, _, b := do(t, http.MethodPost, tl.url+api.PathEntries, mustMarshal(t, e))
		switch {
		case status == http.StatusCreated || status == http.StatusOK:
			admitted++
		case status == http.StatusForbidden && decodeError(t, b).Code == api.CodeKeyRevoked:
			refused++
		case status != http.StatusServiceUnavailable || decodeError(t, b).Code != api.CodeUnavailable:
			t.Fatalf("statement %d after the revocation: status %d, want 403 %s or 503 %s: %s", i, status, api.CodeKeyRevoked, api.CodeUnavailable, b)
		}
	}
	if admitted == 0 && refused == 0 {
		t.Errorf("three statements after the revocation were all answered 503: the scan does not go on from where it stopped")
	}
	if admitted > 0 {
		t.Fatalf("DoS: %d of 3 new statements by key %s were admitted after its self-revocation at %d was indexed: %d earlier statements by it about its revocation digest pushed the revocation past the scan bound (%d), which answers \"not revoked\"",
			admitted, k.keyID, rev.Index, len(entries), selfRevokedScan)
	}
}
