// Package p256 verifies ECDSA P-256 signatures under a public key that
// signs many of them, as a ledger's signers do: a table of the key's
// multiples, built once, replaces the multiplication by the key that is
// about 70 % of each crypto/ecdsa verification.
//
// It accepts exactly the signatures crypto/ecdsa.VerifyASN1 accepts for
// the same key and digest: the same ASN.1 form, the same range checks and
// the same equation, R = (e/s)·G + (r/s)·Q with R's x coordinate equal to r
// modulo the group order (FuzzVerifyMatchesStdlib; TestVerifyEdgeCases).
// Only the way (r/s)·Q is computed differs. Nothing here is constant
// time, and nothing needs to be: every input of a verification is public.
package p256

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"math/big"
	"runtime"
	"unsafe"

	"filippo.io/nistec"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// window is the width in bits of the scalar's signed digits: (r/s)·Q is
// the sum of rows terms d·2^(window·row)·Q with each digit d in
// [1-2^(window-1), 2^(window-1)], so each row of the table holds the
// multiples 1..2^(window-1) of Q·2^(window·row) (a negative digit adds the
// negation of its multiple) and the product is at most rows point
// additions, no doublings. Seven bits: 37 rows of 64 points (the last row,
// bits 252-255, also takes the carry of the row below), 222 KiB, built in
// about 0.6 ms.
const (
	window  = 7
	rows    = (256 + window) / window // enough rows for 256 bits and the last digit's carry
	perRow  = 1 << (window - 1)
	scalarN = 32
)

// TableBytes is the memory one Key's table takes (222 KiB).
const TableBytes = rows * perRow * int(unsafe.Sizeof(nistec.P256Point{}))

// n is the order of P-256's group.
var n = elliptic.P256().Params().N

// Key is a P-256 public key with its table of multiples. It is immutable
// once made and safe for concurrent use.
type Key struct {
	table []nistec.P256Point // rows × perRow: table[row*perRow+d-1] = d·2^(window·row)·Q
}

// ErrNotP256 is the error of NewKey for a key that is not a valid P-256
// ECDSA public key.
var ErrNotP256 = errors.New("p256: not a P-256 ECDSA public key")

// NewKey builds pub's table. pub must be a P-256 key on the curve.
func NewKey(pub *ecdsa.PublicKey) (*Key, error) {
	if pub == nil || pub.Curve != elliptic.P256() {
		return nil, ErrNotP256
	}
	enc, err := pub.Bytes()
	if err != nil {
		return nil, ErrNotP256
	}
	q, err := nistec.NewP256Point().SetBytes(enc)
	if err != nil {
		return nil, ErrNotP256
	}
	k := &Key{table: make([]nistec.P256Point, rows*perRow)}
	base := nistec.NewP256Point().Set(q)
	for row := range rows {
		t := k.table[row*perRow : (row+1)*perRow]
		t[0].Set(base)
		for m := 2; m <= perRow; m++ { // t[m-1] = m·base
			if m%2 == 0 {
				t[m-1].Double(&t[m/2-1]) // a doubling costs about a third of an addition
			} else {
				t[m-1].Add(&t[m-2], base)
			}
		}
		base.Double(&t[perRow-1]) // 2^window·base
	}
	return k, nil
}

// mult returns u·Q for u, 32 bytes big-endian (any value: Q's order is n).
func (k *Key) mult(u *[scalarN]byte) *nistec.P256Point {
	// Recode u into signed digits in [1-2^(window-1), 2^(window-1)]: a
	// digit above half the window's range becomes d - 2^window and
	// carries one into the next row's digit.
	var digits [rows]int
	carry := 0
	for row := range rows {
		d := digit(u, row*window) + carry
		carry = 0
		if d > perRow {
			d -= 1 << window
			carry = 1
		}
		digits[row] = d
	}
	k.touch(&digits)
	acc := nistec.NewP256Point() // the point at infinity
	var neg nistec.P256Point
	for row, d := range digits {
		switch {
		case d > 0:
			acc.Add(acc, &k.table[row*perRow+d-1])
		case d < 0:
			acc.Add(acc, neg.Negate(&k.table[row*perRow-d-1]))
		}
	}
	return acc
}

// touch reads the first and the last word of every table point mult is
// about to add, so that their cache misses overlap instead of stalling
// each addition in turn: a replica's catch-up takes turns among many
// keys, whose tables do not stay in the CPU's caches (BenchmarkVerify's
// table-64-keys). The words read are discarded. In nistec v0.0.4 both
// the assembly and the pure-Go builds keep the coordinates inline (96
// bytes); a layout that held them behind pointers would make the reads
// touch only the point itself: harmless, and no help. A point smaller than
// 8 bytes does not compile (last would overflow).
func (k *Key) touch(digits *[rows]int) {
	const last = unsafe.Sizeof(nistec.P256Point{}) - 8
	var sink uint64
	for row, d := range digits {
		if d != 0 {
			p := unsafe.Pointer(&k.table[row*perRow+max(d, -d)-1])
			sink ^= *(*uint64)(p) ^ *(*uint64)(unsafe.Add(p, last))
		}
	}
	runtime.KeepAlive(sink) // keeps the compiler from dropping the reads
}

// digit returns the window bits of u starting at bit (0: least
// significant), bits past 255 zero.
func digit(u *[scalarN]byte, bit int) int {
	d := 0
	for i := window - 1; i >= 0; i-- {
		d <<= 1
		if b := bit + i; b < 8*scalarN {
			d |= int(u[scalarN-1-b/8]>>(b%8)) & 1
		}
	}
	return d
}

// VerifyASN1 reports whether sig, an ASN.1 DER ECDSA signature, is a
// valid signature of digest under the key: what crypto/ecdsa.VerifyASN1
// reports for the same key, digest and signature.
func (k *Key) VerifyASN1(digest, sig []byte) bool {
	// crypto/ecdsa's parseSignature.
	var r, s big.Int
	in, seq := cryptobyte.String(sig), cryptobyte.String(nil)
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&r) || !seq.ReadASN1Integer(&s) || !seq.Empty() {
		return false
	}
	// FIPS 186-5, 6.4.2: 0 < r, s < n.
	if r.Sign() <= 0 || s.Sign() <= 0 || r.Cmp(n) >= 0 || s.Cmp(n) >= 0 {
		return false
	}
	// e: the digest's leftmost 256 bits (n's length), reduced modulo n.
	if len(digest) > scalarN {
		digest = digest[:scalarN]
	}
	e := new(big.Int).SetBytes(digest)
	e.Mod(e, n)
	w := new(big.Int).ModInverse(&s, n) // n is prime and 0 < s < n
	if w == nil {
		return false
	}
	var u1, u2 [scalarN]byte
	new(big.Int).Mod(new(big.Int).Mul(e, w), n).FillBytes(u1[:])
	new(big.Int).Mod(new(big.Int).Mul(&r, w), n).FillBytes(u2[:])
	p1, err := nistec.NewP256Point().ScalarBaseMult(u1[:])
	if err != nil {
		return false
	}
	// BytesX fails for the point at infinity.
	x, err := p1.Add(p1, k.mult(&u2)).BytesX()
	if err != nil {
		return false
	}
	v := new(big.Int).SetBytes(x)
	return v.Mod(v, n).Cmp(&r) == 0
}
