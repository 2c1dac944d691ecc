package notarize_test

import (
	"crypto"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// keyHex returns a fake key ID: 64 hex characters from c.
func keyHex(c byte) string { return strings.Repeat(string(c), 64) }

// revRecord is a key revocation of revoked at log index idx, signed by by.
func revRecord(t testing.TB, idx uint64, by, revoked string, at time.Time) notarize.Record {
	t.Helper()
	st, err := notarize.NewKeyRevocation(revoked, "release", "security", "stolen laptop", at)
	if err != nil {
		t.Fatal(err)
	}
	return notarize.Record{Index: idx, KeyID: by, Statement: st}
}

// TestKeyRevocationStatement: a revocation is a valid statement that
// round-trips; kind "key" allows only status untrusted, so a "trusted" or
// "unsupported" key statement (an attempt to re-trust a key) is refused
// by Validate, Sign's Marshal and ParseStatement.
func TestKeyRevocationStatement(t *testing.T) {
	k := keyHex('a')
	st, err := notarize.NewKeyRevocation(k, "ci-key", "security", "stolen", time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if !notarize.IsKeyRevocation(st) || st.Digest() != notarize.Digest("sha256:"+k) || st.Subject[0].Name != "ci-key" {
		t.Fatalf("revocation = %+v", st)
	}
	b, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := notarize.ParseStatement(b)
	if err != nil || !notarize.IsKeyRevocation(back) || back.Predicate.Attributes[notarize.RevocationReasonAttribute] != "stolen" {
		t.Fatalf("round trip: %v %+v", err, back)
	}
	for _, s := range []notarize.Status{notarize.StatusTrusted, notarize.StatusUnsupported} {
		bad := *st
		bad.Predicate.Status = s
		if err := bad.Validate(); !errors.Is(err, notarize.ErrBadStatement) {
			t.Fatalf("kind key, status %s: Validate = %v, want ErrBadStatement", s, err)
		}
		raw := strings.Replace(string(b), `"status":"untrusted"`, `"status":"`+string(s)+`"`, 1)
		if _, err := notarize.ParseStatement([]byte(raw)); !errors.Is(err, notarize.ErrBadStatement) {
			t.Fatalf("kind key, status %s: ParseStatement = %v, want ErrBadStatement", s, err)
		}
	}
	for _, bad := range []string{"", "ABC", keyHex('A'), keyHex('a')[:63], "sha256:" + k} {
		if _, err := notarize.NewKeyRevocation(bad, "", "", "", time.Now()); !errors.Is(err, notarize.ErrBadStatement) {
			t.Fatalf("key ID %q: %v, want ErrBadStatement", bad, err)
		}
	}
	// An image statement is not a revocation, even about sha256:<key ID>.
	if notarize.IsKeyRevocation(statement(notarize.Digest("sha256:"+k), notarize.StatusUntrusted, time.Now())) {
		t.Fatal("an image statement read as a key revocation")
	}
}

// TestFindKeyRevocation: the revocation that counts is the lowest-indexed
// one signed by the key or one of its revokers; a stranger's (a thief
// revoking a key it does not hold), a revoker not designated, an image
// statement about sha256:<key>, and the key's later "trusted" about
// itself (an un-revoke) change nothing.
func TestFindKeyRevocation(t *testing.T) {
	K, rv, thief := keyHex('a'), keyHex('b'), keyHex('c')
	kd := notarize.Digest("sha256:" + K)
	at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		records  []notarize.Record
		revokers []string
		want     uint64 // 0: not revoked
	}{
		{name: "self", records: []notarize.Record{revRecord(t, 5, K, K, at)}, want: 5},
		{name: "designated revoker", records: []notarize.Record{revRecord(t, 6, rv, K, at)}, revokers: []string{rv}, want: 6},
		{name: "revoker not designated", records: []notarize.Record{revRecord(t, 6, rv, K, at)}},
		{name: "a thief's revocation of a key it does not hold", records: []notarize.Record{revRecord(t, 7, thief, K, at)}, revokers: []string{rv}},
		{name: "lowest index wins, not the oldest timestamp", records: []notarize.Record{
			revRecord(t, 9, K, K, at.Add(-24*time.Hour)), revRecord(t, 5, rv, K, at), revRecord(t, 8, K, K, at.Add(-48*time.Hour))},
			revokers: []string{rv}, want: 5},
		{name: "un-revoke by a later trusted about the key", records: []notarize.Record{
			revRecord(t, 5, K, K, at), rec(6, K, kd, notarize.StatusTrusted, at.Add(time.Hour))}, want: 5},
		{name: "an image untrust about sha256:key is no revocation", records: []notarize.Record{rec(5, K, kd, notarize.StatusUntrusted, at)}},
		{name: "a revocation of another key", records: []notarize.Record{revRecord(t, 5, K, rv, at)}, revokers: []string{rv}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := notarize.FindKeyRevocation(tc.records, K, tc.revokers)
			if ok != (tc.want != 0) || ok && (got.Index != tc.want || got.KeyID != K) {
				t.Fatalf("FindKeyRevocation = %+v %v, want index %d", got, ok, tc.want)
			}
		})
	}
}

// TestDecideWithRevocations: after K's revocation at index R, K's
// statements at greater indexes do not count whatever their timestamps
// (a thief's backdated or post-dated "trusted"), its statements before R
// still do, and its current statement is recomputed among those.
func TestDecideWithRevocations(t *testing.T) {
	K, other := keyHex('a'), keyHex('d')
	d := notarize.DigestOf([]byte("image"))
	at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	revs := notarize.Revocations{K: {KeyID: K, Index: 10, By: K}}
	for _, tc := range []struct {
		name    string
		records []notarize.Record
		want    notarize.Verdict
		index   uint64
	}{
		{name: "approved before the theft stays trusted", records: []notarize.Record{rec(3, K, d, notarize.StatusTrusted, at)},
			want: notarize.Trusted, index: 3},
		{name: "a backdated trusted after the revocation", records: []notarize.Record{rec(11, K, d, notarize.StatusTrusted, at.Add(-365*24*time.Hour))},
			want: notarize.Unknown},
		{name: "a newer trusted after the revocation does not override the untrust before it", records: []notarize.Record{
			rec(3, K, d, notarize.StatusUntrusted, at), rec(12, K, d, notarize.StatusTrusted, at.Add(time.Hour))},
			want: notarize.Untrusted, index: 3},
		{name: "a backdated untrust after the revocation does not count either", records: []notarize.Record{
			rec(3, K, d, notarize.StatusTrusted, at), rec(12, K, d, notarize.StatusUntrusted, at.Add(time.Hour))},
			want: notarize.Trusted, index: 3},
		{name: "another signer's statements are unaffected", records: []notarize.Record{rec(20, other, d, notarize.StatusTrusted, at)},
			want: notarize.Trusted, index: 20},
		{name: "the revocation's own index does not count", records: []notarize.Record{rec(10, K, d, notarize.StatusTrusted, at)},
			want: notarize.Unknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dec := notarize.DecideWithRevocations(tc.records, d, []string{K, other}, revs)
			if dec.Verdict != tc.want {
				t.Fatalf("verdict %v, want %v (%s)", dec.Verdict, tc.want, dec.Reason(func(s string) string { return s }))
			}
			if tc.index != 0 && dec.Deciding.Index != tc.index {
				t.Fatalf("decided by %d, want %d", dec.Deciding.Index, tc.index)
			}
			if len(dec.Revoked) != 1 || dec.Revoked[0].KeyID != K {
				t.Fatalf("revoked = %+v", dec.Revoked)
			}
			if r := dec.Reason(func(string) string { return "release" }); !strings.Contains(r, "(release) revoked at log index 10") {
				t.Fatalf("reason %q does not name the revocation", r)
			}
		})
	}
	// Without revocations, Decide is unchanged.
	if dec := notarize.Decide([]notarize.Record{rec(11, K, d, notarize.StatusTrusted, at)}, d, []string{K}); dec.Verdict != notarize.Trusted || len(dec.Revoked) != 0 {
		t.Fatalf("Decide = %+v", dec)
	}
}

const revokerPolicy = `
signers:
  ci: {keys: [keys/ci.pub], revokers: [keys/security.pub]}
  release: {keys: [keys/release.pub]}
rules:
  - match: "**"
    require: [ci, release]
`

// TestEvaluateWithRevocations: the policy's revokers revoke only their
// signer's keys; a revoker of another signer, or a key outside the policy,
// does not; a revoked key's later "trusted" on the digest or on an index
// listing it is refused, while its earlier statements still count.
func TestEvaluateWithRevocations(t *testing.T) {
	p, err := notarize.ParsePolicy([]byte(revokerPolicy))
	if err != nil {
		t.Fatal(err)
	}
	ci, release, security, thief := polKey(t), polKey(t), polKey(t), polKey(t)
	if _, err := p.Evaluator(map[string][]crypto.PublicKey{"ci": {ci}, "release": {release}}); !errors.Is(err, notarize.ErrBadPolicy) {
		t.Fatalf("Evaluator without the revokers loaded = %v, want ErrBadPolicy", err)
	}
	keys := map[string][]crypto.PublicKey{"ci": {ci}, "release": {release}}
	if _, err := p.EvaluatorWithRevokers(keys, map[string][]crypto.PublicKey{"ci": {security}, "release": {security}}); !errors.Is(err, notarize.ErrBadPolicy) {
		t.Fatalf("revokers for a signer that names none = %v, want ErrBadPolicy", err)
	}
	ev, err := p.EvaluatorWithRevokers(keys, map[string][]crypto.PublicKey{"ci": {security}})
	if err != nil {
		t.Fatal(err)
	}
	id := func(k crypto.PublicKey) string {
		s, err := notarize.KeyID(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	kci, krel, ksec, kthief := id(ci), id(release), id(security), id(thief)
	if got := ev.Revokers(kci); len(got) != 1 || got[0] != ksec {
		t.Fatalf("Revokers(ci) = %v", got)
	}
	at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	revs := ev.Revocations([]notarize.Record{
		revRecord(t, 10, ksec, kci, at),      // counts: ci's revoker
		revRecord(t, 11, ksec, krel, at),     // does not: security is not release's revoker
		revRecord(t, 12, kthief, krel, at),   // does not: a key outside the policy
		revRecord(t, 13, kthief, kthief, at), // not a policy key: ignored
	})
	if len(revs) != 1 || revs[kci].Index != 10 || revs[kci].By != ksec {
		t.Fatalf("Revocations = %+v", revs)
	}
	d, idx := notarize.DigestOf([]byte("child")), notarize.DigestOf([]byte("index"))
	before := polRecord(t, 3, ci, d, notarize.StatusTrusted, at)
	after := polRecord(t, 14, ci, d, notarize.StatusTrusted, at.Add(-time.Hour)) // backdated
	if e := ev.EvaluateWithRevocations("x/y", d, []notarize.Record{before}, nil, revs); !e.Allow {
		t.Fatalf("before the revocation: %s", e.Reason())
	}
	e := ev.EvaluateWithRevocations("x/y", d, []notarize.Record{after}, nil, revs)
	if e.Allow || e.Verdict != notarize.Unknown || !strings.Contains(e.Reason(), "(ci) revoked at log index 10") {
		t.Fatalf("after the revocation: allow=%v %s", e.Allow, e.Reason())
	}
	parent := notarize.Parent{Digest: idx, Records: []notarize.Record{asIndex(polRecord(t, 15, ci, idx, notarize.StatusTrusted, at))}}
	if e := ev.EvaluateWithRevocations("x/y", d, nil, []notarize.Parent{parent}, revs); e.Allow {
		t.Fatalf("an index trusted after the revocation lent its trust: %s", e.Reason())
	}
	// The release key is not revoked: its statement counts.
	if e := ev.EvaluateWithRevocations("x/y", d, []notarize.Record{polRecord(t, 20, release, d, notarize.StatusTrusted, at)}, nil, revs); !e.Allow {
		t.Fatalf("release: %s", e.Reason())
	}
}

// TestPolicyRevokersValidated: revoker references are bounded like keys.
func TestPolicyRevokersValidated(t *testing.T) {
	for _, doc := range []string{
		"signers: {ci: {keys: [a], revokers: ['']}}\nrules: [{match: '**', require: [ci]}]\n",
		"signers: {ci: {keys: [a], revokers: ['" + strings.Repeat("x", 17<<10) + "']}}\nrules: [{match: '**', require: [ci]}]\n",
		"signers: {ci: {keys: [a], revokers: [" + strings.Repeat("k,", notarize.MaxSignerKeys) + "k]}}\nrules: [{match: '**', require: [ci]}]\n",
	} {
		if _, err := notarize.ParsePolicy([]byte(doc)); !errors.Is(err, notarize.ErrBadPolicy) {
			t.Fatalf("ParsePolicy(%.60q) = %v, want ErrBadPolicy", doc, err)
		}
	}
}
