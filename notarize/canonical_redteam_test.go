package notarize_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// Red team: more spellings of one signed entry that an outsider can make
// without the key. Each must be refused, or (where the signature bytes
// differ) carry the same statement identity, so the ledger answers it as
// the existing entry.
func TestRedTeamEntrySpellings(t *testing.T) {
	sv := notarizetest.NewSigner(t)
	honest := notarizetest.Entry(t, sv, digestA, notarize.StatusTrusted, t0)
	good, err := honest.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	_, want, err := parseAndVerify(good)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.StdEncoding.DecodeString(honest.Envelope.Signatures[0].Sig)
	var es struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(sig, &es); err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString
	mut := func(f func(m *notarize.Entry)) []byte {
		m := *honest
		m.Envelope.Signatures = append(m.Envelope.Signatures[:0:0], honest.Envelope.Signatures...)
		f(&m)
		b, err := json.Marshal(&m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	rawSig := func(r, s []byte) []byte { // DER SEQUENCE of two INTEGERs given as raw content bytes
		integer := func(c []byte) []byte { return append([]byte{0x02, byte(len(c))}, c...) }
		body := append(integer(r), integer(s)...)
		return append([]byte{0x30, byte(len(body))}, body...)
	}
	rb, sb := es.R.Bytes(), es.S.Bytes()
	pad := func(b []byte) []byte { return append([]byte{0x00, 0x00}, b...) }
	keyID := honest.Envelope.Signatures[0].KeyID
	cases := map[string][]byte{
		"keyid in upper case":       mut(func(m *notarize.Entry) { m.Envelope.Signatures[0].KeyID = strings.ToUpper(keyID) }),
		"keyid with sha256: prefix": mut(func(m *notarize.Entry) { m.Envelope.Signatures[0].KeyID = "sha256:" + keyID }),
		"signature twice": mut(func(m *notarize.Entry) {
			m.Envelope.Signatures = append(m.Envelope.Signatures, m.Envelope.Signatures[0])
		}),
		"r with leading zero bytes (BER)": mut(func(m *notarize.Entry) { m.Envelope.Signatures[0].Sig = b64(rawSig(pad(rb), sb)) }),
		"s with leading zero bytes (BER)": mut(func(m *notarize.Entry) { m.Envelope.Signatures[0].Sig = b64(rawSig(rb, pad(sb))) }),
		"signature with trailing byte":    mut(func(m *notarize.Entry) { m.Envelope.Signatures[0].Sig = b64(append(append([]byte{}, sig...), 0)) }),
		"payloadType with parameters":     mut(func(m *notarize.Entry) { m.Envelope.PayloadType += "; charset=utf-8" }),
		"payloadType in upper case":       mut(func(m *notarize.Entry) { m.Envelope.PayloadType = strings.ToUpper(m.Envelope.PayloadType) }),
		"PEM with a trailing space":       mut(func(m *notarize.Entry) { m.PublicKey = strings.Replace(m.PublicKey, "-----\n", "----- \n", 1) }),
		"PEM as EC PUBLIC KEY block":      mut(func(m *notarize.Entry) { m.PublicKey = strings.ReplaceAll(m.PublicKey, "PUBLIC KEY", "EC PUBLIC KEY") }),
		"escaped solidus in the key":      bytes.Replace(good, []byte("/"), []byte(`\/`), 1),
		"\\u002d in the PEM armour":       bytes.Replace(good, []byte("-----BEGIN"), []byte(`\u002d----BEGIN`), 1),
		"member Envelope in other case":   bytes.Replace(good, []byte(`"envelope"`), []byte(`"Envelope"`), 1),
		"member repeated":                 bytes.Replace(good, []byte(`{"envelope":`), []byte(`{"publicKey":"x","envelope":`), 1),
		"unknown member":                  bytes.Replace(good, []byte(`{"envelope":`), []byte(`{"x":1,"envelope":`), 1),
		"BOM":                             append([]byte("\ufeff"), good...),
		"trailing whitespace":             append(append([]byte{}, good...), ' '),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if bytes.Equal(b, good) {
				t.Skip("coincides with the canonical entry")
			}
			_, v, err := parseAndVerify(b)
			if err == nil && v.Identity() != want.Identity() {
				t.Fatalf("accepted with another statement identity: %s", b)
			}
			if err == nil {
				t.Fatalf("accepted (same identity, so a duplicate, but a second encoding): %s", b)
			}
		})
	}
}

// TestRedTeamEd25519Malleability: an Ed25519 signature with S + L (the
// classic malleation) is refused; Ed25519 entries have one encoding too.
func TestRedTeamEd25519Malleability(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	sv, err := signature.LoadED25519SignerVerifier(key)
	if err != nil {
		t.Fatal(err)
	}
	e := notarizetest.Entry(t, sv, digestA, notarize.StatusTrusted, t0)
	eb, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := parseAndVerify(eb); err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.StdEncoding.DecodeString(e.Envelope.Signatures[0].Sig)
	l, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	le := func(b []byte) *big.Int { // little-endian
		r := make([]byte, len(b))
		for i := range b {
			r[len(b)-1-i] = b[i]
		}
		return new(big.Int).SetBytes(r)
	}
	s := new(big.Int).Add(le(sig[32:]), l)
	sb := s.FillBytes(make([]byte, 32))
	for i, j := 0, len(sb)-1; i < j; i, j = i+1, j-1 {
		sb[i], sb[j] = sb[j], sb[i]
	}
	m := *e
	m.Envelope.Signatures = append(m.Envelope.Signatures[:0:0], e.Envelope.Signatures...)
	m.Envelope.Signatures[0].Sig = base64.StdEncoding.EncodeToString(append(append([]byte{}, sig[:32]...), sb...))
	b, _ := json.Marshal(&m)
	if _, _, err := parseAndVerify(b); err == nil {
		t.Fatal("Ed25519 signature with S+L accepted")
	}
}
