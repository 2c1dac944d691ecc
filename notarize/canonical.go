package notarize

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// ErrNotCanonical is returned, wrapped together with ErrBadEntry,
// ErrBadSignature or ErrBadStatement, for an entry or statement that is
// refused only because it is not in its one accepted encoding: it may hold a
// valid signature, but in another spelling (base64 with line breaks or of
// another alphabet, JSON with other spacing or member order, a re-wrapped
// PEM key, an ECDSA signature's high-S twin, a missing keyid). Each signed
// statement has exactly one accepted entry, so that nobody but its signer can
// turn it into new log entries.
//
// The accepted encodings are:
//   - entry: the output of Entry.Marshal (Go encoding/json of Entry), valid UTF-8;
//   - envelope payload and signature: standard base64 with padding, no
//     whitespace (the output of base64.StdEncoding.EncodeToString);
//   - public key: one "PUBLIC KEY" PEM block of the DER SubjectPublicKeyInfo,
//     64-column base64 and a final newline, nothing before or after (the
//     output of cryptoutils.MarshalPublicKeyToPEM);
//   - signature keyid: present, equal to the key's KeyID;
//   - ECDSA signature: ASN.1 DER with s <= n/2 (low-S); Ed25519 and RSA
//     PKCS #1 v1.5 signatures have one form already;
//   - payload: the statement's own Marshal output, valid UTF-8.
var ErrNotCanonical = errors.New("not in the one accepted encoding")

// notCanonical returns an error wrapping kind and ErrNotCanonical.
func notCanonical(kind error, format string, a ...any) error {
	return fmt.Errorf("%w: %w: %s", kind, ErrNotCanonical, fmt.Sprintf(format, a...))
}

// decodeStdBase64 decodes s, which must be exactly the standard base64
// encoding of its bytes. base64.StdEncoding alone would also accept line
// breaks anywhere (it skips \r and \n) and non-zero padding bits, which
// would give one byte string many accepted spellings.
func decodeStdBase64(kind error, what, s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil && !otherBase64(s) {
		return nil, fmt.Errorf("%w: %s is not base64: %v", kind, what, err)
	}
	if err != nil || base64.StdEncoding.EncodeToString(b) != s {
		return nil, notCanonical(kind, "%s must be standard base64 with padding and without whitespace", what)
	}
	return b, nil
}

// otherBase64 reports whether s is base64 in the URL-safe alphabet or
// without padding: a re-encoding rather than garbage.
func otherBase64(s string) bool {
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if _, err := enc.DecodeString(s); err == nil {
			return true
		}
	}
	return false
}

// checkCanonicalPEM checks that pemKey is exactly the PEM encoding the
// package writes for pub: the same key may be spelled with other line
// widths, headers, a PKCS #1 block or text around the block, and each
// spelling would be another entry.
func checkCanonicalPEM(pub crypto.PublicKey, pemKey string) error {
	want, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return fmt.Errorf("%w: public key: %v", ErrBadSignature, err)
	}
	if string(want) != pemKey {
		return notCanonical(ErrBadEntry, "public key must be one PEM \"PUBLIC KEY\" block of its DER, base64 in 64 columns, ending in one newline, with nothing before or after")
	}
	return nil
}

// ecdsaSignature is the ASN.1 form of an ECDSA signature (SEC 1, RFC 5480).
type ecdsaSignature struct {
	R, S *big.Int
}

// parseECDSASignature parses sig, which must be ASN.1 DER (the sigstore
// verifier would also take IEEE P1363 r||s, and encoding/asn1 trailing data).
func parseECDSASignature(k *ecdsa.PublicKey, sig []byte) (*ecdsaSignature, error) {
	var es ecdsaSignature
	rest, err := asn1.Unmarshal(sig, &es)
	if err != nil || len(rest) != 0 {
		return nil, notCanonical(ErrBadSignature, "ECDSA signature must be ASN.1 DER")
	}
	if der, err := asn1.Marshal(es); err != nil || !bytes.Equal(der, sig) {
		return nil, notCanonical(ErrBadSignature, "ECDSA signature must be ASN.1 DER")
	}
	if n := k.Params().N; es.R.Sign() <= 0 || es.S.Sign() <= 0 || es.R.Cmp(n) >= 0 || es.S.Cmp(n) >= 0 {
		return nil, fmt.Errorf("%w: ECDSA signature values out of range", ErrBadSignature)
	}
	return &es, nil
}

// checkSignatureForm checks that sig, by pub, is in its one accepted form.
// (r, s) and (r, n-s) are both valid ECDSA signatures of the same message,
// so anyone could turn one into the other: only s <= n/2 is accepted when
// lowS is set (see Entry.VerifyLogged for when it is not).
func checkSignatureForm(pub crypto.PublicKey, sig []byte, lowS bool) error {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil
	}
	es, err := parseECDSASignature(k, sig)
	if err != nil {
		return err
	}
	if lowS && es.S.Cmp(halfOrder(k)) > 0 {
		return notCanonical(ErrBadSignature, "ECDSA signature is in high-S form (s > n/2); only its low-S twin is accepted")
	}
	return nil
}

// halfOrder returns n/2 for k's curve.
func halfOrder(k *ecdsa.PublicKey) *big.Int {
	return new(big.Int).Rsh(k.Params().N, 1)
}

// CanonicalSignature returns the one accepted encoding of sig, a signature
// made by the private key of pub: an ECDSA signature in ASN.1 DER becomes its
// low-S form (s replaced by n-s when s > n/2, which verifies just the same);
// other kinds of signature are returned as they are. Sign applies it; a
// signer that builds envelopes by other means must too.
func CanonicalSignature(pub crypto.PublicKey, sig []byte) ([]byte, error) {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return sig, nil
	}
	es, err := parseECDSASignature(k, sig)
	if err != nil {
		return nil, err
	}
	if es.S.Cmp(halfOrder(k)) <= 0 {
		return sig, nil
	}
	es.S = new(big.Int).Sub(k.Params().N, es.S)
	der, err := asn1.Marshal(*es)
	if err != nil {
		return nil, fmt.Errorf("%w: encode low-S signature: %v", ErrBadSignature, err)
	}
	return der, nil
}
