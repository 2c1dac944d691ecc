package ledger

import (
	"crypto"
	"net/http"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// TestStrangersEarnNoKeyTables: keys that are not enrolled, whose every
// submission is refused (403 NOT_ENROLLED), earn no table of their key's
// multiples (notarize.KeyCache), so they cannot take every place from the
// enrolled signers (review: VerifyWith counted a signature before the
// ledger's own checks, and 64 strangers took all 64 places).
func TestStrangersEarnNoKeyTables(t *testing.T) {
	enrolled := newTestSigner(t)
	tl := startLedger(t, Config{Signers: []crypto.PublicKey{enrolled.pub}})
	for range 64 {
		stranger := newTestSigner(t)
		body := mustMarshal(t, stranger.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()))
		for range 16 { // one signed entry, replayed
			status, _, b := do(t, http.MethodPost, tl.url+api.PathEntries, body)
			if er := decodeError(t, b); status != http.StatusForbidden || er.Code != api.CodeNotEnrolled {
				t.Fatalf("got %d %+v, want 403 NOT_ENROLLED", status, er)
			}
		}
	}
	if got := tl.store.keys.Tables(); got != 0 {
		t.Fatalf("64 strangers' refused submissions built %d tables", got)
	}
	entry := enrolled.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())
	tl.submit(t, entry, http.StatusCreated)
	for range 20 { // replays are not new entries
		tl.submit(t, entry, http.StatusOK)
	}
	if got := tl.store.keys.Tables(); got != 0 {
		t.Fatalf("one entry replayed 20 times built %d tables", got)
	}
	for range 20 {
		tl.submit(t, enrolled.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
	}
	if got := tl.store.keys.Tables(); got != 1 {
		t.Fatalf("the enrolled signer's 20 entries: %d tables, want 1", got)
	}
}
