package ledger

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// TestRedteam11SelfRevokedOtherEncodings tries to get a new statement by a
// self-revoked key K admitted by presenting K's public key in another
// encoding, hoping for another key ID: a compressed EC point in the
// SubjectPublicKeyInfo, PEM headers and CRLF line ends, and an envelope
// signature keyid naming another key. Held: the key ID is the SHA-256 of
// the re-marshalled DER, so every form that parses is K (403 KEY_REVOKED)
// and the others are refused as bad input (4xx); none is logged.
func TestRedteam11SelfRevokedOtherEncodings(t *testing.T) {
	tl := startLedger(t, Config{RateLimits: RateLimits{Off: true}})
	k, other := newTestSigner(t), newTestSigner(t)
	now := time.Now().Add(-time.Hour)
	tl.submit(t, k.revoke(t, k.keyID, "stolen", now), http.StatusCreated)

	der, err := x509.MarshalPKIXPublicKey(k.pub)
	if err != nil {
		t.Fatal(err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		t.Fatal(err)
	}
	ec := k.pub.(*ecdsa.PublicKey)
	comp := elliptic.MarshalCompressed(ec.Curve, ec.X, ec.Y)
	spki.PublicKey = asn1.BitString{Bytes: comp, BitLength: 8 * len(comp)}
	compDER, err := asn1.Marshal(spki)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(typ string, b []byte, h map[string]string) string {
		return string(pem.EncodeToMemory(&pem.Block{Type: typ, Headers: h, Bytes: b}))
	}
	forms := map[string]func(e *notarize.Entry){
		"compressed point": func(e *notarize.Entry) { e.PublicKey = pemOf("PUBLIC KEY", compDER, nil) },
		"pem headers":      func(e *notarize.Entry) { e.PublicKey = pemOf("PUBLIC KEY", der, map[string]string{"Comment": "x"}) },
		"crlf":             func(e *notarize.Entry) { e.PublicKey = strings.ReplaceAll(e.PublicKey, "\n", "\r\n") },
		"leading junk":     func(e *notarize.Entry) { e.PublicKey = "junk\n" + e.PublicKey },
		"envelope keyid": func(e *notarize.Entry) {
			for i := range e.Envelope.Signatures {
				e.Envelope.Signatures[i].KeyID = other.keyID
			}
		},
	}
	probe := func() uint64 {
		return tl.submit(t, other.sign(t, randomDigest(t), notarize.StatusTrusted, now.Add(time.Hour)), http.StatusCreated).Index
	}
	before := probe()
	i := 0
	for name, mutate := range forms {
		i++
		e := k.sign(t, randomDigest(t), notarize.StatusTrusted, now.Add(time.Duration(i)*time.Minute))
		mutate(e)
		status, _, b := do(t, http.MethodPost, tl.url+api.PathEntries, mustMarshal(t, e))
		if status == http.StatusCreated || status == http.StatusOK {
			t.Errorf("DoS: %s: a new statement by self-revoked key %s was admitted (%d): %s", name, k.keyID, status, b)
			continue
		}
		if status < 400 || status >= 500 {
			t.Errorf("%s: status %d, want a 4xx refusal: %s", name, status, b)
		}
		t.Logf("%s: %d %s", name, status, decodeError(t, b).Code)
	}
	if after := probe(); after != before+1 {
		t.Fatalf("DoS: the log grew by %d entries between two probes, want 1: statements by the self-revoked key were logged", after-before)
	}
}
