package notarizetest

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"

	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/notarize/docker-notarize/notarize"
)

// ReEncoding is one spelling of a signed entry other than its canonical
// one: the same statement and the same signature by the same key, written
// differently, as anyone holding the entry (not the key) could write it.
// Before each entry had one accepted encoding, every one of these was
// logged as a new entry.
type ReEncoding struct {
	Name string
	Body []byte // the entry bytes as submitted
}

// ReEncodings returns re-encodings of e, an ECDSA-signed entry in canonical
// form (as notarize.Sign makes it): the payload's base64 with line breaks
// (LF and CRLF, which encoding/base64 skips), the URL-safe base64 alphabet,
// base64 with non-zero padding bits (when the signature or payload has
// padding), the signature's high-S twin and its IEEE P1363 (r||s) form, the
// keyid dropped, text around the PEM key, the PEM re-wrapped at 76 columns
// or with CRLF line ends, and the entry JSON indented or with a \u escape.
func ReEncodings(t testing.TB, e *notarize.Entry) []ReEncoding {
	t.Helper()
	pub, err := cryptoutils.UnmarshalPEMToPublicKey([]byte(e.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		t.Fatalf("ReEncodings needs an ECDSA-signed entry, got %T", pub)
	}
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		t.Fatal(err)
	}
	payload := decode(t, e.Envelope.Payload)
	sig := decode(t, e.Envelope.Signatures[0].Sig)
	b64 := base64.StdEncoding.EncodeToString

	out := []ReEncoding{
		{"payload base64 with LF line breaks", mutated(t, e, func(m *notarize.Entry) { m.Envelope.Payload = wrap(b64(payload), 76, "\n") })},
		{"payload base64 with CRLF line breaks", mutated(t, e, func(m *notarize.Entry) { m.Envelope.Payload = wrap(b64(payload), 64, "\r\n") })},
		{"signature base64 with a line break", mutated(t, e, func(m *notarize.Entry) { m.Envelope.Signatures[0].Sig = wrap(b64(sig), 40, "\n") })},
		{"URL-safe base64 alphabet", mutated(t, e, func(m *notarize.Entry) {
			m.Envelope.Payload = base64.URLEncoding.EncodeToString(payload)
			m.Envelope.Signatures[0].Sig = base64.URLEncoding.EncodeToString(sig)
		})},
		{"signature's high-S twin", mutated(t, e, func(m *notarize.Entry) { m.Envelope.Signatures[0].Sig = b64(highS(t, k, sig)) })},
		{"signature as IEEE P1363 r||s", mutated(t, e, func(m *notarize.Entry) { m.Envelope.Signatures[0].Sig = b64(p1363(t, k, sig)) })},
		{"keyid dropped", mutated(t, e, func(m *notarize.Entry) { m.Envelope.Signatures[0].KeyID = "" })},
		{"text around the PEM key", mutated(t, e, func(m *notarize.Entry) { m.PublicKey = "signer: release\n" + e.PublicKey + "-- end --\n" })},
		{"PEM re-wrapped at 76 columns", mutated(t, e, func(m *notarize.Entry) {
			m.PublicKey = "-----BEGIN PUBLIC KEY-----\n" + wrap(b64(der), 76, "\n") + "\n-----END PUBLIC KEY-----\n"
		})},
		{"PEM with CRLF line ends", mutated(t, e, func(m *notarize.Entry) { m.PublicKey = strings.ReplaceAll(e.PublicKey, "\n", "\r\n") })},
		{"PEM with a header", mutated(t, e, func(m *notarize.Entry) {
			m.PublicKey = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: map[string]string{"Comment": "x"}, Bytes: der}))
		})},
		{"PEM without the final newline", mutated(t, e, func(m *notarize.Entry) { m.PublicKey = strings.TrimSuffix(e.PublicKey, "\n") })},
		{"entry JSON indented", indented(t, e)},
		{"entry JSON with a \\u escape", bytes.Replace(canonical(t, e), []byte(`"payloadType":"application`), []byte(`"payloadType":"\u0061pplication`), 1)},
	}
	if v, ok := paddingBits(e.Envelope.Payload); ok {
		out = append(out, ReEncoding{"payload base64 with non-zero padding bits", mutated(t, e, func(m *notarize.Entry) { m.Envelope.Payload = v })})
	}
	if v, ok := paddingBits(e.Envelope.Signatures[0].Sig); ok {
		out = append(out, ReEncoding{"signature base64 with non-zero padding bits", mutated(t, e, func(m *notarize.Entry) { m.Envelope.Signatures[0].Sig = v })})
	}
	// Some spellings coincide with the canonical one for some entries (the
	// URL-safe alphabet differs only where the base64 holds '+' or '/'):
	// those are no re-encoding.
	canon := canonical(t, e)
	kept := out[:0]
	for _, re := range out {
		if !bytes.Equal(re.Body, canon) {
			kept = append(kept, re)
		}
	}
	return kept
}

// PaddedReEncodings returns n distinct re-encodings of e, each with one line
// break at another place in the payload's base64: what an outsider needs to
// log one signed statement n times over.
func PaddedReEncodings(t testing.TB, e *notarize.Entry, n int) [][]byte {
	t.Helper()
	p := e.Envelope.Payload
	if n >= len(p) {
		t.Fatalf("PaddedReEncodings: at most %d variants of this entry", len(p)-1)
	}
	out := make([][]byte, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, mutated(t, e, func(m *notarize.Entry) { m.Envelope.Payload = p[:i] + "\n" + p[i:] }))
	}
	return out
}

// Envelope signs any payload as notarize.Sign would (keyid set, ECDSA
// signature in low-S form, canonical PEM key) but without its statement
// checks, to build entries whose payload must be refused.
func Envelope(t testing.TB, s signature.Signer, payloadType string, payload []byte) *notarize.Entry {
	t.Helper()
	raw, err := dsse.WrapSigner(s, payloadType).SignMessage(bytes.NewReader(payload), options.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := s.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	pemKey, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	keyID, err := notarize.KeyID(pub)
	if err != nil {
		t.Fatal(err)
	}
	e := &notarize.Entry{PublicKey: string(pemKey)}
	if err := json.Unmarshal(raw, &e.Envelope); err != nil {
		t.Fatal(err)
	}
	for i := range e.Envelope.Signatures {
		sig, err := notarize.CanonicalSignature(pub, decode(t, e.Envelope.Signatures[i].Sig))
		if err != nil {
			t.Fatal(err)
		}
		e.Envelope.Signatures[i] = ssldsse.Signature{KeyID: keyID, Sig: base64.StdEncoding.EncodeToString(sig)}
	}
	return e
}

// mutated returns the JSON of a copy of e changed by f.
func mutated(t testing.TB, e *notarize.Entry, f func(m *notarize.Entry)) []byte {
	t.Helper()
	m := *e
	m.Envelope.Signatures = append(m.Envelope.Signatures[:0:0], e.Envelope.Signatures...)
	f(&m)
	b, err := json.Marshal(&m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func canonical(t testing.TB, e *notarize.Entry) []byte {
	t.Helper()
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func indented(t testing.TB, e *notarize.Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, canonical(t, e), "", "  "); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func decode(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wrap inserts sep every n characters of s.
func wrap(s string, n int, sep string) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n])
		b.WriteString(sep)
		s = s[n:]
	}
	b.WriteString(s)
	return b.String()
}

// paddingBits returns s, a padded standard base64 string, with the unused
// low bits of its last data character set: encoding/base64 (not Strict)
// decodes it to the same bytes.
func paddingBits(s string) (string, bool) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	pad := len(s) - len(strings.TrimRight(s, "="))
	if pad == 0 {
		return "", false
	}
	i := len(s) - pad - 1
	v := strings.IndexByte(alphabet, s[i])
	v |= 1 << (2*pad - 1) // one of the 2 (pad 1) or 4 (pad 2) unused bits
	return s[:i] + string(alphabet[v]) + s[i+1:], true
}

type ecdsaSig struct{ R, S *big.Int }

func parseSig(t testing.TB, sig []byte) ecdsaSig {
	t.Helper()
	var es ecdsaSig
	if _, err := asn1.Unmarshal(sig, &es); err != nil {
		t.Fatal(err)
	}
	return es
}

// highS returns the other valid encoding of an ECDSA signature: s -> n-s.
func highS(t testing.TB, k *ecdsa.PublicKey, sig []byte) []byte {
	t.Helper()
	es := parseSig(t, sig)
	es.S = new(big.Int).Sub(k.Params().N, es.S)
	b, err := asn1.Marshal(es)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// p1363 returns the signature as fixed-width r||s, which sigstore's ECDSA
// verifier also accepts.
func p1363(t testing.TB, k *ecdsa.PublicKey, sig []byte) []byte {
	t.Helper()
	es := parseSig(t, sig)
	size := (k.Params().BitSize + 7) / 8
	out := make([]byte, 2*size)
	es.R.FillBytes(out[:size])
	es.S.FillBytes(out[size:])
	return out
}
