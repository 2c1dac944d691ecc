package notarize

import (
	"reflect"
	"testing"
	"unicode/utf8"
)

// FuzzScanCanonicalEntry: whatever ParseEntry's fast path reads, encoding/json
// (the general path's decoder) reads the same, and ParseEntry's answer is
// the same with the fast path or without it.
func FuzzScanCanonicalEntry(f *testing.F) {
	f.Add([]byte(`{"envelope":{"payloadType":"a","payload":"b","signatures":[{"keyid":"k","sig":"c"}]},"publicKey":"p"}`))
	f.Add([]byte(`{"envelope":{"payloadType":"a","payload":"b","signatures":[{"keyid":"k","sig":"c"},{"keyid":"","sig":"d"}]},"publicKey":"-----BEGIN\nx\n"}`))
	f.Add([]byte(`{"envelope":{"payloadType":"a","payload":"b","signatures":[{"keyid":"k","sig":"c"}]},"publicKey":"p\u003c\t\\"}`))
	f.Add([]byte(`{"envelope":{"payloadType":"a","payload":"é\u2028","signatures":[]},"publicKey":"p"}`))
	f.Fuzz(func(t *testing.T, b []byte) { scanAgrees(t, b, scanCanonicalEntry) })
}

// scanAgrees fails t when a parser's fast path (scan) reads b, valid
// UTF-8, otherwise than encoding/json (the general path's decoder).
func scanAgrees[T any](t *testing.T, b []byte, scan func([]byte) (T, bool)) {
	if !utf8.Valid(b) {
		return // the parsers refuse it before either path
	}
	got, ok := scan(b)
	if !ok {
		return
	}
	var want T
	if err := decodeOne(b, &want); err != nil {
		t.Fatalf("fast path read %q, encoding/json refuses it: %v", b, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fast path read %q as %+v, encoding/json as %+v", b, got, want)
	}
}

// TestScanCanonicalEntry: the fast path reads real entries, with their PEM
// newlines, and leaves anything else to the general path.
func TestScanCanonicalEntry(t *testing.T) {
	canon := `{"envelope":{"payloadType":"t","payload":"cA==","signatures":[{"keyid":"k","sig":"cw=="}]},"publicKey":"-----BEGIN PUBLIC KEY-----\nAAA\n-----END PUBLIC KEY-----\n"}`
	e, ok := scanCanonicalEntry([]byte(canon))
	if !ok || e.PublicKey != "-----BEGIN PUBLIC KEY-----\nAAA\n-----END PUBLIC KEY-----\n" || e.Envelope.Signatures[0].Sig != "cw==" {
		t.Fatalf("scanCanonicalEntry(canonical) = %+v, %v", e, ok)
	}
	for _, b := range []string{
		` ` + canon,
		canon + ` `,
		canon[:len(canon)-1],
		`{"envelope":{"payload":"cA==","payloadType":"t","signatures":[{"keyid":"k","sig":"cw=="}]},"publicKey":"p"}`,
		`{"envelope":{"payloadType":"t","payload":"cA==","signatures":[]},"publicKey":"p"}`,
		`{"envelope":{"payloadType":"t","payload":"c\u0041==","signatures":[{"keyid":"k","sig":"cw=="}]},"publicKey":"p"}`,
		`{"envelope":{"payloadType":"t","payload":"cA==","signatures":[{"keyid":"k","sig":"cw=="}]},"publicKey":"p\r"}`,
		`{"envelope":{"payloadType":"t","payload":"cA==","signatures":[{"keyid":"k","sig":"cw=="}],"x":1},"publicKey":"p"}`,
		`{"envelope":{"payloadType":"t","payload":"cA==","signatures":[{"keyid":"k","sig":"cw=="}]},"publicKey":"p\"}`,
	} {
		if e, ok := scanCanonicalEntry([]byte(b)); ok {
			t.Errorf("scanCanonicalEntry(%q) = %+v, want the general path", b, e)
		}
	}
}
