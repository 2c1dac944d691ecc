package notarize

import (
	"crypto"
	"crypto/ecdsa"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// signatureFormOK reports whether sig, by pub, is an ECDSA signature in its
// one accepted form: ASN.1 DER (minimal lengths and integers, nothing
// after), 0 < r, s < n, and s <= n/2 when lowS is set. It is the check's
// fast path (a replica checks every entry of a log; encoding/asn1's
// reflection cost more than the rest of the parse): false says only that
// checkSignatureForm must decide, and explain a refusal, so a mistake here
// can refuse nothing. FuzzSignatureForm checks that it accepts nothing
// checkSignatureForm refuses.
func signatureFormOK(pub crypto.PublicKey, sig []byte, lowS bool) bool {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return false
	}
	var r, s big.Int
	in, seq := cryptobyte.String(sig), cryptobyte.String(nil)
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) || !seq.Empty() {
		return false
	}
	n := k.Params().N
	if r.Sign() <= 0 || s.Sign() <= 0 || r.Cmp(n) >= 0 || s.Cmp(n) >= 0 {
		return false
	}
	if lowS {
		var half big.Int
		if s.Cmp(half.Rsh(n, 1)) > 0 {
			return false
		}
	}
	return true
}
