package notarize

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"math/big"
	"testing"
)

// sigForms returns an ECDSA key and signatures in and out of the accepted
// form: its own low-S and high-S signatures, and encodings of them that
// BER or encoding/asn1 would read but DER does not allow.
func sigForms(t testing.TB, c elliptic.Curve) (*ecdsa.PublicKey, [][]byte) {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256([]byte("m"))
	var forms [][]byte
	for range 4 {
		sig, err := ecdsa.SignASN1(rand.Reader, k, h[:])
		if err != nil {
			t.Fatal(err)
		}
		var es ecdsaSignature
		if _, err := asn1.Unmarshal(sig, &es); err != nil {
			t.Fatal(err)
		}
		n := c.Params().N
		twin, _ := asn1.Marshal(ecdsaSignature{es.R, new(big.Int).Sub(n, es.S)})
		zeroR, _ := asn1.Marshal(ecdsaSignature{big.NewInt(0), es.S})
		nS, _ := asn1.Marshal(ecdsaSignature{es.R, n})
		negS, _ := asn1.Marshal(ecdsaSignature{es.R, new(big.Int).Neg(es.S)})
		longLen := append([]byte{0x30, 0x81, sig[1]}, sig[2:]...) // a non-minimal length
		padded := append([]byte{0x30, sig[1] + 1, 0x02, sig[3] + 1, 0x00}, sig[4:]...)
		forms = append(forms, sig, twin, zeroR, nS, negS, longLen, padded,
			append(append([]byte{}, sig...), 0), sig[:len(sig)-1], nil, []byte{0x30, 0x00})
	}
	return &k.PublicKey, forms
}

// TestSignatureFormAgrees: the fast path accepts exactly what
// checkSignatureForm accepts, for signatures in and out of form.
func TestSignatureFormAgrees(t *testing.T) {
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		k, forms := sigForms(t, c)
		for i, sig := range forms {
			for _, lowS := range []bool{true, false} {
				fast, slow := signatureFormOK(k, sig, lowS), checkSignatureForm(k, sig, lowS) == nil
				if fast != slow {
					t.Errorf("%s form %d lowS=%v: fast path %v, checkSignatureForm %v (%x)", c.Params().Name, i, lowS, fast, slow, sig)
				}
			}
		}
	}
}

// FuzzSignatureForm: whatever the fast path accepts, checkSignatureForm
// accepts too.
func FuzzSignatureForm(f *testing.F) {
	k, forms := sigForms(f, elliptic.P256())
	for _, sig := range forms {
		f.Add(sig, true)
	}
	f.Fuzz(func(t *testing.T, sig []byte, lowS bool) {
		if signatureFormOK(k, sig, lowS) {
			if err := checkSignatureForm(k, sig, lowS); err != nil {
				t.Fatalf("fast path accepted %x (lowS=%v), checkSignatureForm refuses it: %v", sig, lowS, err)
			}
		}
	})
}
