package notarize_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// parseAndVerify runs what the ledger and every replica run on entry bytes.
func parseAndVerify(b []byte) (*notarize.Entry, *notarize.Verified, error) {
	e, err := notarize.ParseEntry(b)
	if err != nil {
		return nil, nil, err
	}
	v, err := e.Verify()
	if err != nil {
		return nil, nil, err
	}
	return e, v, nil
}

// TestReEncodingsRefused checks that an honest entry has one accepted
// encoding: each way an outsider re-spelled an enrolled signer's entry into
// new log entries (issue 8, class 3) is refused, as not canonical.
func TestReEncodingsRefused(t *testing.T) {
	honest := notarizetest.Entry(t, notarizetest.NewSigner(t), digestA, notarize.StatusTrusted, t0)
	good, err := honest.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := parseAndVerify(good); err != nil {
		t.Fatalf("honest entry refused: %v", err)
	}
	variants := notarizetest.ReEncodings(t, honest)
	for i, b := range notarizetest.PaddedReEncodings(t, honest, 3) {
		variants = append(variants, notarizetest.ReEncoding{Name: "padded " + string(rune('a'+i)), Body: b})
	}
	for _, re := range variants {
		t.Run(re.Name, func(t *testing.T) {
			if bytes.Equal(re.Body, good) {
				t.Fatal("not a re-encoding: same bytes as the canonical entry")
			}
			_, _, err := parseAndVerify(re.Body)
			if !errors.Is(err, notarize.ErrNotCanonical) {
				t.Fatalf("ParseEntry+Verify = %v, want ErrNotCanonical", err)
			}
			if !errors.Is(err, notarize.ErrBadEntry) && !errors.Is(err, notarize.ErrBadSignature) {
				t.Fatalf("error %v is neither ErrBadEntry nor ErrBadSignature (the ledger's 400)", err)
			}
			t.Log(err)
		})
	}
}

// TestHighSTwinVerifiesButIsRefused shows the high-S twin is a valid ECDSA
// signature (so only the canonical-form rule stops it) and that
// CanonicalSignature turns it back into the accepted one.
func TestHighSTwinVerifiesButIsRefused(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("message"))
	low, err := ecdsa.SignASN1(rand.Reader, priv, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	low, err = notarize.CanonicalSignature(priv.Public(), low)
	if err != nil {
		t.Fatal(err)
	}
	var es struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(low, &es); err != nil {
		t.Fatal(err)
	}
	n := elliptic.P256().Params().N
	if es.S.Cmp(new(big.Int).Rsh(n, 1)) > 0 {
		t.Fatal("CanonicalSignature returned a high-S signature")
	}
	es.S.Sub(n, es.S)
	high, err := asn1.Marshal(es)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(&priv.PublicKey, digest[:], high) {
		t.Fatal("the high-S twin does not verify: the test is wrong")
	}
	back, err := notarize.CanonicalSignature(priv.Public(), high)
	if err != nil || !bytes.Equal(back, low) {
		t.Fatalf("CanonicalSignature(high) = %x, %v; want the low-S %x", back, err, low)
	}
	if _, err := notarize.CanonicalSignature(priv.Public(), []byte("not DER")); !errors.Is(err, notarize.ErrBadSignature) {
		t.Fatalf("CanonicalSignature(garbage) = %v, want ErrBadSignature", err)
	}
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	edSig := ed25519.Sign(edPriv, []byte("m"))
	if got, err := notarize.CanonicalSignature(edPriv.Public(), edSig); err != nil || !bytes.Equal(got, edSig) {
		t.Fatalf("CanonicalSignature(ed25519) = %x, %v; want it unchanged", got, err)
	}
}

// TestSignMakesLowS checks that notarize.Sign normalises ECDSA signatures:
// Go's crypto/ecdsa makes a high-S one about half of the time, which Verify
// now refuses, so without the normalisation most of these would fail.
func TestSignMakesLowS(t *testing.T) {
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		t.Run(curve.Params().Name, func(t *testing.T) {
			priv, err := ecdsa.GenerateKey(curve, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			sv, err := signature.LoadSignerVerifier(priv, notarize.HashFor(priv.Public()))
			if err != nil {
				t.Fatal(err)
			}
			half := new(big.Int).Rsh(curve.Params().N, 1)
			for i := range 24 {
				e := sign(t, sv, statement(digestA, notarize.StatusTrusted, t0.Add(time.Duration(i))))
				sig, _ := base64.StdEncoding.DecodeString(e.Envelope.Signatures[0].Sig)
				var es struct{ R, S *big.Int }
				if _, err := asn1.Unmarshal(sig, &es); err != nil {
					t.Fatal(err)
				}
				if es.S.Cmp(half) > 0 {
					t.Fatalf("signature %d is high-S", i)
				}
				b, _ := e.Marshal()
				if _, _, err := parseAndVerify(b); err != nil {
					t.Fatalf("signature %d: %v", i, err)
				}
			}
		})
	}
}

// TestHonestEntriesAccepted checks every kind of key signers may use, and
// statements with non-ASCII text and characters Go's JSON escapes, still
// sign, parse and verify, and re-marshal to the same bytes.
func TestHonestEntriesAccepted(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	signers := map[string]crypto.Signer{"RSA 2048": rsaKey, "Ed25519": edKey, "ECDSA P-384": p384}
	st := statement(digestA, notarize.StatusTrusted, t0)
	st.Subject[0].Name = "registry.example/ÄPP:<1>&"
	st.Predicate.Name = "Zoë \u2028 release"
	st.Predicate.Attributes["ticket"] = `"quoted" <b>\ 日本`
	for name, k := range signers {
		t.Run(name, func(t *testing.T) {
			sv, err := signature.LoadSignerVerifier(k, notarize.HashFor(k.Public()))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := sign(t, sv, st).Marshal()
			e, v, err := parseAndVerify(b)
			if err != nil {
				t.Fatal(err)
			}
			if again, _ := e.Marshal(); !bytes.Equal(again, b) {
				t.Fatal("re-marshal differs")
			}
			if v.Statement.Predicate.Attributes["ticket"] != st.Predicate.Attributes["ticket"] || v.Statement.Subject[0].Name != st.Subject[0].Name {
				t.Fatalf("statement read back differently: %+v", v.Statement)
			}
		})
	}
	t.Run("notarizetest.Entry", func(t *testing.T) {
		b, _ := notarizetest.Entry(t, notarizetest.NewSigner(t), digestB, notarize.StatusUntrusted, t0).Marshal()
		if _, _, err := parseAndVerify(b); err != nil {
			t.Fatal(err)
		}
	})
}

// TestStatementEncodingRefused checks payloads the signer itself signed but
// in a spelling other than the statement's canonical JSON, or holding
// invalid UTF-8 (encoding/json reads it as U+FFFD, so the statement would
// read differently in another language), are refused as bad statements.
func TestStatementEncodingRefused(t *testing.T) {
	sv := notarizetest.NewSigner(t)
	good, err := statement(digestA, notarize.StatusTrusted, t0).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := notarize.ParseStatement(good); err != nil {
		t.Fatal(err)
	}
	repl := func(old, new string) []byte {
		t.Helper()
		if !bytes.Contains(good, []byte(old)) {
			t.Fatalf("%q not in %s", old, good)
		}
		return bytes.Replace(good, []byte(old), []byte(new), 1)
	}
	var indented bytes.Buffer
	if err := json.Indent(&indented, good, "", "  "); err != nil {
		t.Fatal(err)
	}
	// The same members, predicateType moved first.
	ptMember := `,"predicateType":"` + notarize.PredicateType + `"`
	reordered := bytes.Replace(repl(ptMember, ""), []byte(`{"_type":`), []byte(`{`+ptMember[1:]+`,"_type":`), 1)
	for _, tc := range []struct {
		name      string
		payload   []byte
		canonical bool // refused as not canonical (else as invalid UTF-8)
	}{
		{"invalid UTF-8 in the subject name", repl(`"name":"registry.example/app:1"`, "\"name\":\"registry.example/app:\xff\""), false},
		{"invalid UTF-8 in an attribute", repl(`"REL-1"`, "\"REL-\xc3\x28\""), false},
		{"overlong UTF-8 encoding", repl(`"release"`, "\"rel\xc1\xa5ase\""), false},
		{"lone surrogate escape", repl(`"release"`, `"release\ud800"`), true},
		{"indented", indented.Bytes(), true},
		{"space after a colon", repl(`"status":"trusted"`, `"status": "trusted"`), true},
		{"members reordered", reordered, true},
		{"explicit zero size", repl(`"size":1234`, `"size":0`), true},
		{"empty attributes", repl(`"attributes":{"ticket":"REL-1"}`, `"attributes":{}`), true},
		{"timestamp +00:00", repl(`"2026-11-27T10:00:00Z"`, `"2026-11-27T10:00:00+00:00"`), true},
		{"timestamp trailing zero fraction", repl(`"2026-11-27T10:00:00Z"`, `"2026-11-27T10:00:00.000Z"`), true},
		{"\\u escape of a letter", repl(`"release"`, `"rel\u0065ase"`), true},
		{"escaped solidus", repl(`"registry.example/app:1"`, `"registry.example\/app:1"`), true},
		{"trailing newline", append(append([]byte{}, good...), '\n'), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, perr := notarize.ParseStatement(tc.payload)
			b, _ := notarizetest.Envelope(t, sv, notarize.PayloadType, tc.payload).Marshal()
			_, _, verr := parseAndVerify(b)
			for _, err := range []error{perr, verr} {
				if !errors.Is(err, notarize.ErrBadStatement) {
					t.Fatalf("ParseStatement / ParseEntry+Verify = %v, want ErrBadStatement", err)
				}
				if got := errors.Is(err, notarize.ErrNotCanonical); got != tc.canonical {
					t.Fatalf("error %v: ErrNotCanonical %v, want %v", err, got, tc.canonical)
				}
				if !tc.canonical && !strings.Contains(err.Error(), "UTF-8") {
					t.Fatalf("error %v does not name UTF-8", err)
				}
			}
			t.Log(verr)
		})
	}
}

// TestEntryEncodingRefused checks invalid UTF-8 and non-canonical JSON in
// the entry itself are refused by ParseEntry.
func TestEntryEncodingRefused(t *testing.T) {
	good, _ := notarizetest.Entry(t, notarizetest.NewSigner(t), digestA, notarize.StatusTrusted, t0).Marshal()
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"invalid UTF-8 in the keyid", bytes.Replace(good, []byte(`"keyid":"`), []byte("\"keyid\":\"\xff"), 1)},
		{"invalid UTF-8 after the key", bytes.Replace(good, []byte(`-----END PUBLIC KEY-----`), []byte("-----END PUBLIC KEY-----\xfe"), 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := notarize.ParseEntry(tc.b)
			if !errors.Is(err, notarize.ErrBadEntry) || !strings.Contains(err.Error(), "UTF-8") {
				t.Fatalf("ParseEntry = %v, want ErrBadEntry naming UTF-8", err)
			}
		})
	}
}

// FuzzEntryOneEncoding checks one accepted encoding per entry: whatever
// ParseEntry and Verify accept is exactly its own canonical Marshal, and the
// only accepted entry carrying a seed's statement under the seed's key (its
// Identity) is that seed itself, since the fuzzer cannot sign anew.
func FuzzEntryOneEncoding(f *testing.F) {
	ecdsaEntry := notarizetest.Entry(f, notarizetest.NewSigner(f), digestA, notarize.StatusTrusted, t0)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edSigner, err := signature.LoadED25519SignerVerifier(edKey)
	if err != nil {
		f.Fatal(err)
	}
	seeds := map[[32]byte][]byte{}
	for _, e := range []*notarize.Entry{ecdsaEntry, sign(f, edSigner, statement(digestB, notarize.StatusUntrusted, t0))} {
		b, err := e.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		_, v, err := parseAndVerify(b)
		if err != nil {
			f.Fatal(err)
		}
		seeds[v.Identity()] = b
		f.Add(b)
	}
	for _, re := range notarizetest.ReEncodings(f, ecdsaEntry) {
		f.Add(re.Body)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, v, err := parseAndVerify(b)
		if err != nil {
			return
		}
		again, err := e.Marshal()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted bytes are not their canonical form (%v):\n%q\n%q", err, b, again)
		}
		if seed, ok := seeds[v.Identity()]; ok && !bytes.Equal(seed, b) {
			t.Fatalf("a second accepted encoding of a seed's statement:\n%q\n%q", b, seed)
		}
	})
}

// TestVerifyLoggedAcceptsOnlyTheHighSTwin: an entry read from a log may
// carry an ECDSA signature in high-S form (earlier ledgers logged either
// form): VerifyLogged accepts it, as the same statement (same identity),
// while Verify, which the ledger applies to submissions, refuses it. Every
// other re-encoding is refused by both.
func TestVerifyLoggedAcceptsOnlyTheHighSTwin(t *testing.T) {
	signer := notarizetest.NewSigner(t)
	e := notarizetest.Entry(t, signer, notarize.DigestOf([]byte("m")), notarize.StatusTrusted, time.Now())
	honest, err := e.Verify()
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range notarizetest.ReEncodings(t, e) {
		parsed, perr := notarize.ParseEntry(re.Body)
		var verr, lerr error
		var logged *notarize.Verified
		if perr == nil {
			_, verr = parsed.Verify()
			logged, lerr = parsed.VerifyLogged()
		}
		if perr == nil && verr == nil {
			t.Errorf("%s: Verify accepted it", re.Name)
		}
		if re.Name == "signature's high-S twin" {
			if perr != nil || lerr != nil {
				t.Errorf("%s: VerifyLogged refused a logged high-S signature: parse %v, verify %v", re.Name, perr, lerr)
			} else if logged.Identity() != honest.Identity() {
				t.Errorf("%s: another statement identity than the low-S entry's", re.Name)
			}
			if !errors.Is(verr, notarize.ErrNotCanonical) {
				t.Errorf("%s: Verify = %v, want ErrNotCanonical", re.Name, verr)
			}
			continue
		}
		if perr == nil && lerr == nil {
			t.Errorf("%s: VerifyLogged accepted it", re.Name)
		}
	}
}
