package ledger

import (
	"crypto/rand"
	"fmt"

	"github.com/notarize/docker-notarize/ledger/storage"
	"golang.org/x/mod/sumdb/note"
)

// NewSignerKey generates a checkpoint signing key for a log named origin:
// a sumdb/note Ed25519 signer key ("PRIVATE+KEY+…") and its verifier key,
// the string clients pin. Every instance of a ledger on shared storage
// signs with the same key.
func NewSignerKey(origin string) (signerKey, verifierKey string, err error) {
	if !storage.ValidOrigin(origin) {
		return "", "", fmt.Errorf("new signer key: origin %q: must be non-empty UTF-8 without spaces or '+'", origin)
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		return "", "", fmt.Errorf("new signer key: %w", err)
	}
	return skey, vkey, nil
}
