package ledgerclient

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// strictSubject is the subject the strict path (verifyLeaf: ParseEntry,
// the payload's one base64 form, ParseStatement) reads in leaf, without
// the payload type and signature checks, so that it reads one in at least
// every leaf verifyLeaf accepts; ok is false when it refuses leaf.
func strictSubject(leaf []byte) (d notarize.Digest, ok bool) {
	e, err := notarize.ParseEntry(leaf)
	if err != nil {
		return "", false
	}
	payload, err := base64.StdEncoding.DecodeString(e.Envelope.Payload)
	if err != nil || base64.StdEncoding.EncodeToString(payload) != e.Envelope.Payload {
		return "", false
	}
	st, err := notarize.ParseStatement(payload)
	if err != nil {
		return "", false
	}
	return st.Digest(), true
}

// wrapStatement is a leaf in Entry.Marshal's one layout around payload
// (unsigned: strictSubject does not check signatures).
func wrapStatement(t testing.TB, payload []byte, pem string) []byte {
	e := notarize.Entry{
		Envelope: ssldsse.Envelope{
			PayloadType: notarize.PayloadType,
			Payload:     base64.StdEncoding.EncodeToString(payload),
			Signatures:  []ssldsse.Signature{{KeyID: strings.Repeat("ab", 32), Sig: "c2ln"}},
		},
		PublicKey: pem,
	}
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mayConcernSeeds are leaves and statements that try to hide their subject
// from mayConcern: the digest spelled with JSON escapes or in capitals, a
// second digest member, a subject name or attribute holding another
// digest or the "payload" member's spelling.
func mayConcernSeeds(t testing.TB) (leaves [][]byte, statements [][]byte) {
	s := notarizetest.NewSigner(t)
	d := notarize.DigestOf([]byte("seed"))
	other := notarize.DigestOf([]byte("other"))
	for _, st := range []notarize.Status{notarize.StatusTrusted, notarize.StatusUntrusted} {
		leaves = append(leaves, marshal(t, notarizetest.Entry(t, s, d, st, t0)))
	}
	// Subject names of 1, 2 and 3 bytes (the subject's name comes before
	// its digest) put the digest's hex at each of the three base64
	// alignments of the payload, so the seeds catch a test that drops one.
	for _, name := range []string{"a", "ab", "abc"} {
		e, err := notarize.Sign(t.Context(), s, notarize.NewStatement(d, name, notarize.Predicate{Status: notarize.StatusTrusted, Timestamp: t0}))
		if err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, marshal(t, e))
	}
	st := notarize.NewStatement(d, `x","payload":"`+other.Hex(), notarize.Predicate{
		Status: notarize.StatusTrusted, Attributes: map[string]string{"digest": other.String()}, Timestamp: t0,
	})
	e, err := notarize.Sign(t.Context(), s, st)
	if err != nil {
		t.Fatal(err)
	}
	leaves = append(leaves, marshal(t, e))
	canon, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	hex := d.Hex()
	escaped := fmt.Sprintf(`\u%04x`, hex[0]) + hex[1:] // the first hex digit spelled as a JSON escape
	statements = append(statements, canon,
		[]byte(strings.Replace(string(canon), hex, escaped, 1)),
		[]byte(strings.Replace(string(canon), hex, strings.ToUpper(hex), 1)),
		[]byte(strings.Replace(string(canon), `"sha256":"`+hex+`"`, `"sha256":"`+other.Hex()+`","sha256":"`+hex+`"`, 1)),
		[]byte(strings.Replace(string(canon), `{"_type"`, `{ "_type"`, 1)),
	)
	return leaves, statements
}

// FuzzMayConcernLeaf: mayConcern, the tail's cheap subject test, never says
// "not about d" of a leaf the strict path reads as a statement about d.
func FuzzMayConcernLeaf(f *testing.F) {
	leaves, _ := mayConcernSeeds(f)
	for _, l := range leaves {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, leaf []byte) {
		if d, ok := strictSubject(leaf); ok && !mayConcern(leaf, d) {
			t.Fatalf("mayConcern misses a statement about %s: %q", d, leaf)
		}
	})
}

// FuzzMayConcernStatement: the same, the fuzzer's bytes the statement (the
// signed payload, where a subject could hide in JSON escapes, repeated
// members or other spellings) of an entry in its canonical layout.
func FuzzMayConcernStatement(f *testing.F) {
	_, statements := mayConcernSeeds(f)
	for _, s := range statements {
		f.Add(s)
	}
	pem := "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
	f.Fuzz(func(t *testing.T, payload []byte) {
		leaf := wrapStatement(t, payload, pem)
		if d, ok := strictSubject(leaf); ok && !mayConcern(leaf, d) {
			t.Fatalf("mayConcern misses a statement about %s: %q", d, payload)
		}
	})
}

// TestMayConcernSeeds: the seeds the strict path reads (the canonical
// ones) are found by mayConcern, and those it refuses (escaped, capitals,
// two digests, spacing) are refused by it, so the fuzzers start on both
// sides of the line.
func TestMayConcernSeeds(t *testing.T) {
	leaves, statements := mayConcernSeeds(t)
	d := notarize.DigestOf([]byte("seed"))
	for i, l := range leaves {
		got, ok := strictSubject(l)
		if !ok || got != d || !mayConcern(l, d) {
			t.Errorf("leaf seed %d: strict %v %s, mayConcern %v", i, ok, got, mayConcern(l, d))
		}
	}
	pem := "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
	for i, s := range statements {
		leaf := wrapStatement(t, s, pem)
		_, ok := strictSubject(leaf)
		if ok != (i == 0) {
			t.Errorf("statement seed %d: strict path reads it: %v", i, ok)
		}
		if i == 0 && !mayConcern(leaf, d) {
			t.Errorf("statement seed %d: mayConcern misses it", i)
		}
	}
	if other := notarize.DigestOf([]byte("elsewhere")); mayConcern(leaves[0], other) {
		t.Error("mayConcern says a statement about one digest may concern another")
	}
}
