package notarizetest

import (
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/notarize"
)

// KeyRevocation returns the ledger entry, signed by s, of the revocation
// of keyID (notarize.NewKeyRevocation), dated at: s is the key itself, a
// revoker, or a thief, as the test wants.
func KeyRevocation(t testing.TB, s signature.Signer, keyID string, at time.Time) *notarize.Entry {
	t.Helper()
	st, err := notarize.NewKeyRevocation(keyID, "test key", SignerName, "test revocation", at)
	if err != nil {
		t.Fatal(err)
	}
	e, err := notarize.Sign(t.Context(), s, st)
	if err != nil {
		t.Fatal(err)
	}
	return e
}
