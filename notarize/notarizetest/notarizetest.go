// Package notarizetest holds test helpers for the packages that build on
// package notarize: throwaway signing keys and signed ledger entries.
package notarizetest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/notarize"
)

// SubjectName is the subject name of the statements Entry signs.
const SubjectName = "registry.test/app:1"

// SignerName is the signer display name of the statements Entry signs.
const SignerName = "test"

// NewSigner returns a fresh ECDSA P-256 signer, the kind of key `docker
// notarize key generate` makes.
func NewSigner(t testing.TB) signature.SignerVerifier {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadSignerVerifier(priv, notarize.HashFor(priv.Public()))
	if err != nil {
		t.Fatal(err)
	}
	return sv
}

// Entry returns the ledger entry, signed by s, of a statement that image
// digest d has status st, dated at.
func Entry(t testing.TB, s signature.Signer, d notarize.Digest, st notarize.Status, at time.Time) *notarize.Entry {
	t.Helper()
	e, err := notarize.Sign(t.Context(), s, notarize.NewStatement(d, SubjectName, notarize.Predicate{
		Status: st, Kind: notarize.KindImage, Name: SignerName, Timestamp: at,
	}))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// KeyID returns the key ID of s's public key.
func KeyID(t testing.TB, s interface {
	PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error)
}) string {
	t.Helper()
	pub, err := s.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	id, err := notarize.KeyID(pub)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
