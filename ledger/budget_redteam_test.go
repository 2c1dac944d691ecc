package ledger

import (
	"net/http"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// Red team: can a stranger spend the owner's (key, digest) budget and so
// delay its revocation? Not with the owner's statements logged here (a
// replay is free), nor with forged ones. But a statement signs no ledger:
// the owner's statements about the digest logged on another ledger (a
// staging or mirror ledger signed with the same key, or any collection of
// them) are new here, verify, and are charged to the owner's key. A
// stranger who posted DefaultKeyDigestPerMinute of them first made the
// owner's revocation 429 for up to a minute. A statement that changes the
// key's current status for the digest is now never refused by that cap.
func TestRedTeamStrangerSpendsOwnerDigestBudget(t *testing.T) {
	elsewhere := startLedger(t, Config{})
	here := startLedger(t, Config{RateLimits: RateLimits{Tracked: DefaultRateLimitTracked}}) // the defaults
	owner := newTestSigner(t)
	d := randomDigest(t)
	now := time.Now()
	var stash [][]byte
	for i := range DefaultKeyDigestPerMinute {
		e := owner.signAt(t, d, notarize.StatusTrusted, now.Add(-time.Hour+time.Duration(i)*time.Second))
		elsewhere.submit(t, e, http.StatusCreated) // public, on the other ledger
		stash = append(stash, mustMarshal(t, e))
	}
	// The stranger copies them here.
	for _, b := range stash {
		if status, _, _ := here.submitStatus(t, b, ""); status != http.StatusCreated {
			t.Fatalf("copied statement: %d", status)
		}
	}
	// The owner revokes here.
	status, retry, code := here.submitStatus(t, mustMarshal(t, owner.sign(t, d, notarize.StatusUntrusted, now)), "")
	if status == http.StatusTooManyRequests {
		t.Errorf("BYPASS (budget): the owner's revocation is %d %s (Retry-After %s) after a stranger posted %d of the owner's statements from another ledger",
			status, code, retry, DefaultKeyDigestPerMinute)
	} else if status != http.StatusCreated {
		t.Fatalf("revocation: %d %s", status, code)
	}
}

// TestRedTeamKeyStatementsAreGlobal pins a property of the design, not a
// defence (SECURITY.md, "Known properties"): a statement does not name the
// ledger it is for, and a key's newest statement about a digest is its
// word on every ledger. The owner revoked the digest here; on another
// ledger with the same key it later re-trusted it (a test, staging). A
// stranger copies that statement here, and the owner's current statement
// here becomes that TRUSTED one. Copying statements between ledgers is a
// feature; the defence is operational: separate keys for separate
// environments, and no production policy accepting a staging key.
func TestRedTeamKeyStatementsAreGlobal(t *testing.T) {
	elsewhere, here := startLedger(t, Config{}), startLedger(t, Config{})
	owner := newTestSigner(t)
	d := randomDigest(t)
	now := time.Now()
	revoked := here.submit(t, owner.signAt(t, d, notarize.StatusUntrusted, now.Add(-time.Minute)), http.StatusCreated)
	staging := owner.signAt(t, d, notarize.StatusTrusted, now)
	elsewhere.submit(t, staging, http.StatusCreated)

	copied := here.submit(t, staging, http.StatusCreated) // the stranger's copy
	resp, err := here.Ledger.Current(t.Context(), d, []string{owner.keyID})
	if err != nil || len(resp.Entries) != 1 {
		t.Fatalf("current: %v", err)
	}
	if resp.Entries[0].Index != copied.Index || copied.Index == revoked.Index {
		t.Errorf("the owner's current statement here is index %d, want the newer statement copied from another ledger (index %d; the revocation is %d): "+
			"if statements are now bound to a ledger, update SECURITY.md \"Known properties\" and this test", resp.Entries[0].Index, copied.Index, revoked.Index)
	}
}
