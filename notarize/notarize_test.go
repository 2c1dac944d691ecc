package notarize_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

var (
	digestA = notarize.DigestOf([]byte("a"))
	digestB = notarize.DigestOf([]byte("b"))
	t0      = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
)

func statement(d notarize.Digest, s notarize.Status, at time.Time) *notarize.Statement {
	return notarize.NewStatement(d, "registry.example/app:1", notarize.Predicate{
		Status: s, Kind: notarize.KindImage, MediaType: "application/vnd.oci.image.manifest.v1+json",
		Size: 1234, Name: "release", Timestamp: at, Attributes: map[string]string{"ticket": "REL-1"},
	})
}

func sign(t testing.TB, s signature.Signer, st *notarize.Statement) *notarize.Entry {
	t.Helper()
	e, err := notarize.Sign(context.Background(), s, st)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestParseDigest(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{digestA.String(), true},
		{"sha256:" + strings.Repeat("A", 64), false},
		{"sha512:" + strings.Repeat("a", 64), false},
		{"sha256:" + strings.Repeat("a", 63), false},
		{"sha256:" + strings.Repeat("g", 64), false},
		{strings.Repeat("a", 64), false},
		{"", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, err := notarize.ParseDigest(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseDigest(%q) error = %v, want ok=%v", tc.in, err, tc.ok)
			}
			if err != nil && !errors.Is(err, notarize.ErrBadDigest) {
				t.Fatalf("error %v is not ErrBadDigest", err)
			}
		})
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	sv := notarizetest.NewSigner(t)
	e := sign(t, sv, statement(digestA, notarize.StatusTrusted, t0))
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := notarize.ParseEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	v, err := parsed.Verify()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := sv.PublicKey()
	wantID, _ := notarize.KeyID(pub)
	if v.KeyID != wantID || v.Statement.Digest() != digestA || v.Statement.Predicate.Status != notarize.StatusTrusted {
		t.Fatalf("verified = %+v, want key %s digest %s trusted", v, wantID, digestA)
	}
	again, _ := parsed.Marshal()
	if !bytes.Equal(again, b) {
		t.Fatalf("marshal is not canonical:\n%s\n%s", b, again)
	}
}

func TestVerifyEd25519(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	sv, err := signature.LoadED25519SignerVerifier(priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sign(t, sv, statement(digestA, notarize.StatusTrusted, t0)).Verify(); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyRefusesTampering(t *testing.T) {
	sv, other := notarizetest.NewSigner(t), notarizetest.NewSigner(t)
	otherPub, _ := other.PublicKey()
	otherEntry := sign(t, other, statement(digestB, notarize.StatusTrusted, t0))

	for _, tc := range []struct {
		name   string
		mutate func(e *notarize.Entry)
		want   error
	}{
		{"wrong key", func(e *notarize.Entry) { e.PublicKey = otherEntry.PublicKey }, notarize.ErrBadSignature},
		{"payload swapped", func(e *notarize.Entry) { e.Envelope.Payload = otherEntry.Envelope.Payload }, notarize.ErrBadSignature},
		{"status flipped", func(e *notarize.Entry) {
			p, _ := base64.StdEncoding.DecodeString(e.Envelope.Payload)
			p = bytes.Replace(p, []byte(`"trusted"`), []byte(`"untrusted"`), 1)
			e.Envelope.Payload = base64.StdEncoding.EncodeToString(p)
		}, notarize.ErrBadSignature},
		{"signature bit flip", func(e *notarize.Entry) {
			s, _ := base64.StdEncoding.DecodeString(e.Envelope.Signatures[0].Sig)
			s[len(s)/2] ^= 1
			e.Envelope.Signatures[0].Sig = base64.StdEncoding.EncodeToString(s)
		}, notarize.ErrBadSignature},
		{"payload type", func(e *notarize.Entry) { e.Envelope.PayloadType = "text/plain" }, notarize.ErrBadEntry},
		{"no signature", func(e *notarize.Entry) { e.Envelope.Signatures = nil }, notarize.ErrBadSignature},
		{"two signatures", func(e *notarize.Entry) {
			e.Envelope.Signatures = append(e.Envelope.Signatures, e.Envelope.Signatures[0])
		}, notarize.ErrBadSignature},
		{"keyid of another key", func(e *notarize.Entry) {
			id, _ := notarize.KeyID(otherPub)
			e.Envelope.Signatures[0].KeyID = id
		}, notarize.ErrBadSignature},
		{"garbage key", func(e *notarize.Entry) { e.PublicKey = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n" }, notarize.ErrBadSignature},
		{"url base64 payload", func(e *notarize.Entry) {
			p, _ := base64.StdEncoding.DecodeString(e.Envelope.Payload)
			e.Envelope.Payload = base64.URLEncoding.EncodeToString(append(p, 0xff, 0xfe))
		}, notarize.ErrBadEntry},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := sign(t, sv, statement(digestA, notarize.StatusTrusted, t0))
			tc.mutate(e)
			if _, err := e.Verify(); !errors.Is(err, tc.want) {
				t.Fatalf("Verify() = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSignRefusesBadStatement(t *testing.T) {
	sv := notarizetest.NewSigner(t)
	for name, st := range map[string]*notarize.Statement{
		"bad status":   statement(digestA, "maybe", t0),
		"no timestamp": statement(digestA, notarize.StatusTrusted, time.Time{}),
		"bad digest":   notarize.NewStatement("sha256:zz", "x", notarize.Predicate{Status: notarize.StatusTrusted, Timestamp: t0}),
		"too many attributes": func() *notarize.Statement {
			s := statement(digestA, notarize.StatusTrusted, t0)
			for i := range notarize.MaxAttributes + 1 {
				s.Predicate.Attributes[strings.Repeat("k", i+1)] = "v"
			}
			return s
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := notarize.Sign(t.Context(), sv, st); !errors.Is(err, notarize.ErrBadStatement) {
				t.Fatalf("Sign() = %v, want ErrBadStatement", err)
			}
		})
	}
}

func TestParseStatementStrict(t *testing.T) {
	good, err := statement(digestA, notarize.StatusTrusted, t0).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := notarize.ParseStatement(good); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"unknown field":   bytes.Replace(good, []byte(`"_type"`), []byte(`"extra":1,"_type"`), 1),
		"trailing data":   append(append([]byte{}, good...), []byte(`{}`)...),
		"two subjects":    bytes.Replace(good, []byte(`"subject":[`), []byte(`"subject":[{"digest":{"sha256":"`+digestB.Hex()+`"}},`), 1),
		"wrong type":      bytes.Replace(good, []byte(notarize.StatementType), []byte("https://in-toto.io/Statement/v0.1"), 1),
		"not json":        []byte("nope"),
		"oversized":       bytes.Repeat([]byte(" "), notarize.MaxStatementSize+1),
		"sha512 digest":   bytes.Replace(good, []byte(`"sha256":`), []byte(`"sha512":`), 1),
		"other predicate": bytes.Replace(good, []byte(notarize.PredicateType), []byte("https://slsa.dev/provenance/v1"), 1),
		// encoding/json keeps the last of two equal names, other readers the
		// first: a verifier in Go and an auditor elsewhere would disagree.
		"predicate twice": bytes.Replace(good, []byte(`"predicate":{`), []byte(`"predicate":{"status":"untrusted"},"predicate":{`), 1),
		"status twice":    bytes.Replace(good, []byte(`"status":"trusted"`), []byte(`"status":"untrusted","status":"trusted"`), 1),
		"attribute twice": bytes.Replace(good, []byte(`"ticket":"REL-1"`), []byte(`"ticket":"REL-0","ticket":"REL-1"`), 1),
		// encoding/json matches names case-insensitively; others do not.
		"field in other case": bytes.Replace(good, []byte(`"predicate":`), []byte(`"Predicate":`), 1),
		"nested other case":   bytes.Replace(good, []byte(`"status":`), []byte(`"STATUS":`), 1),
		"kelvin sign":         bytes.Replace(good, []byte(`"kind":`), []byte(`"\u212aind":`), 1),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := notarize.ParseStatement(b); !errors.Is(err, notarize.ErrBadStatement) {
				t.Fatalf("ParseStatement() = %v, want ErrBadStatement", err)
			}
		})
	}
}

func TestParseEntryStrict(t *testing.T) {
	e := sign(t, notarizetest.NewSigner(t), statement(digestA, notarize.StatusTrusted, t0))
	good, _ := e.Marshal()
	for name, b := range map[string][]byte{
		"unknown field":  bytes.Replace(good, []byte(`{"envelope"`), []byte(`{"x":1,"envelope"`), 1),
		"missing key":    []byte(`{"envelope":{"payloadType":"a","payload":"b","signatures":[]}}`),
		"oversized":      bytes.Repeat([]byte(" "), notarize.MaxEntrySize+1),
		"array":          []byte(`[]`),
		"envelope twice": bytes.Replace(good, []byte(`{"envelope"`), []byte(`{"envelope":{},"envelope"`), 1),
		"other case":     bytes.Replace(good, []byte(`"publicKey"`), []byte(`"PublicKey"`), 1),
		"sig twice":      bytes.Replace(good, []byte(`"sig":`), []byte(`"sig":"AA==","sig":`), 1),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := notarize.ParseEntry(b); !errors.Is(err, notarize.ErrBadEntry) {
				t.Fatalf("ParseEntry() = %v, want ErrBadEntry", err)
			}
		})
	}
}

// TestParseStrictKeepsFreeFormMembers checks the member checks leave what
// maps may hold alone: attribute names that differ only in case, and names
// that look like fields.
func TestParseStrictKeepsFreeFormMembers(t *testing.T) {
	st := statement(digestA, notarize.StatusTrusted, t0)
	st.Predicate.Attributes = map[string]string{"Team": "a", "team": "b", "status": "x", "Predicate": "y"}
	b, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := notarize.ParseStatement(b)
	if err != nil {
		t.Fatalf("ParseStatement() = %v", err)
	}
	if len(got.Predicate.Attributes) != 4 || got.Predicate.Attributes["Team"] != "a" || got.Predicate.Attributes["team"] != "b" {
		t.Fatalf("attributes %v", got.Predicate.Attributes)
	}
	e := sign(t, notarizetest.NewSigner(t), st)
	eb, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	pe, err := notarize.ParseEntry(eb)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pe.Verify(); err != nil {
		t.Fatal(err)
	}
}

func TestHashFor(t *testing.T) {
	for _, tc := range []struct {
		curve elliptic.Curve
		want  crypto.Hash
	}{{elliptic.P256(), crypto.SHA256}, {elliptic.P384(), crypto.SHA384}, {elliptic.P521(), crypto.SHA512}} {
		t.Run(tc.curve.Params().Name, func(t *testing.T) {
			priv, err := ecdsa.GenerateKey(tc.curve, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			if got := notarize.HashFor(priv.Public()); got != tc.want {
				t.Fatalf("HashFor = %v, want %v", got, tc.want)
			}
			sv, err := signature.LoadSignerVerifier(priv, notarize.HashFor(priv.Public()))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sign(t, sv, statement(digestA, notarize.StatusTrusted, t0)).Verify(); err != nil {
				t.Fatalf("a signature made with HashFor does not verify: %v", err)
			}
		})
	}
}

func rec(idx uint64, key string, d notarize.Digest, s notarize.Status, at time.Time) notarize.Record {
	return notarize.Record{Index: idx, KeyID: key, Statement: statement(d, s, at)}
}

func TestDecide(t *testing.T) {
	const k1, k2, k3 = "k1", "k2", "k3"
	T, U, X := notarize.StatusTrusted, notarize.StatusUntrusted, notarize.StatusUnsupported
	for _, tc := range []struct {
		name     string
		records  []notarize.Record
		accepted []string
		want     notarize.Verdict
		deciding uint64
	}{
		{"never signed", nil, []string{k1}, notarize.Unknown, 0},
		{"trusted", []notarize.Record{rec(0, k1, digestA, T, t0)}, []string{k1}, notarize.Trusted, 0},
		{"unknown signer", []notarize.Record{rec(0, k2, digestA, T, t0)}, []string{k1}, notarize.Unknown, 0},
		{"other digest", []notarize.Record{rec(0, k1, digestB, T, t0)}, []string{k1}, notarize.Unknown, 0},
		{"untrust later", []notarize.Record{rec(0, k1, digestA, T, t0), rec(1, k1, digestA, U, t0.Add(time.Minute))}, []string{k1}, notarize.Untrusted, 1},
		{"replayed old trusted after untrust", []notarize.Record{
			rec(0, k1, digestA, T, t0), rec(1, k1, digestA, U, t0.Add(time.Minute)), rec(2, k1, digestA, T, t0),
		}, []string{k1}, notarize.Untrusted, 1},
		{"re-trust with newer timestamp", []notarize.Record{
			rec(0, k1, digestA, T, t0), rec(1, k1, digestA, U, t0.Add(time.Minute)), rec(2, k1, digestA, T, t0.Add(2*time.Minute)),
		}, []string{k1}, notarize.Trusted, 2},
		{"timestamp tie broken by index", []notarize.Record{rec(0, k1, digestA, U, t0), rec(1, k1, digestA, T, t0)}, []string{k1}, notarize.Trusted, 1},
		{"unsupported", []notarize.Record{rec(0, k1, digestA, T, t0), rec(1, k1, digestA, X, t0.Add(time.Second))}, []string{k1}, notarize.Unsupported, 1},
		{"one signer untrusts", []notarize.Record{rec(0, k1, digestA, T, t0), rec(1, k2, digestA, U, t0)}, []string{k1, k2}, notarize.Untrusted, 1},
		{"untrusted beats unsupported", []notarize.Record{rec(0, k1, digestA, X, t0), rec(1, k2, digestA, U, t0), rec(2, k3, digestA, T, t0)}, []string{k1, k2, k3}, notarize.Untrusted, 1},
		{"not-accepted untrust ignored", []notarize.Record{rec(0, k1, digestA, T, t0), rec(1, k2, digestA, U, t0)}, []string{k1}, notarize.Trusted, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := notarize.Decide(tc.records, digestA, tc.accepted)
			if d.Verdict != tc.want {
				t.Fatalf("verdict = %v, want %v", d.Verdict, tc.want)
			}
			if tc.want == notarize.Unknown {
				if d.Deciding != nil {
					t.Fatalf("unknown verdict with deciding record %+v", d.Deciding)
				}
				return
			}
			if d.Deciding == nil || d.Deciding.Index != tc.deciding {
				t.Fatalf("deciding = %+v, want index %d", d.Deciding, tc.deciding)
			}
		})
	}
}

func TestVerdictExitCodes(t *testing.T) {
	for v, want := range map[notarize.Verdict]struct {
		code int
		s    string
	}{notarize.Trusted: {0, "TRUSTED"}, notarize.Untrusted: {1, "UNTRUSTED"}, notarize.Unknown: {2, "UNKNOWN"}, notarize.Unsupported: {3, "UNSUPPORTED"}} {
		if v.ExitCode() != want.code || v.String() != want.s {
			t.Errorf("%v: exit %d %q, want %d %q", int(v), v.ExitCode(), v.String(), want.code, want.s)
		}
	}
}

func FuzzParseEntry(f *testing.F) {
	sv := notarizetest.NewSigner(f)
	e := sign(f, sv, statement(digestA, notarize.StatusTrusted, t0))
	good, _ := e.Marshal()
	f.Add(good)
	f.Add([]byte(`{"envelope":{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"","sig":"AA=="}]},"publicKey":"x"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := notarize.ParseEntry(b)
		if err != nil {
			return
		}
		v, err := e.Verify()
		if err != nil {
			return
		}
		// Anything that verifies must be a valid statement that re-marshals and re-verifies.
		if err := v.Statement.Validate(); err != nil {
			t.Fatalf("verified entry holds invalid statement: %v", err)
		}
		again, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		e2, err := notarize.ParseEntry(again)
		if err != nil {
			t.Fatalf("canonical form does not parse: %v", err)
		}
		if _, err := e2.Verify(); err != nil {
			t.Fatalf("canonical form does not verify: %v", err)
		}
	})
}

func FuzzParseStatement(f *testing.F) {
	good, _ := statement(digestA, notarize.StatusTrusted, t0).Marshal()
	f.Add(good)
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := notarize.ParseStatement(b)
		if err != nil {
			return
		}
		out, err := st.Marshal()
		if err != nil {
			t.Fatalf("parsed statement does not marshal: %v", err)
		}
		var back notarize.Statement
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatal(err)
		}
		if _, err := notarize.ParseDigest(st.Digest().String()); err != nil {
			t.Fatalf("parsed statement has bad digest: %v", err)
		}
	})
}
