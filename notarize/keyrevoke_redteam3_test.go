package notarize_test

import (
	"bytes"
	"crypto"
	"errors"
	"strings"
	"testing"
	"time"

	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// logged verifies entries as a replica reads a log, in order from index
// first, and returns their records; an entry that does not verify is
// left out, as the replica counts it bad.
func logged(t *testing.T, first uint64, entries ...*notarize.Entry) []notarize.Record {
	t.Helper()
	var recs []notarize.Record
	for i, e := range entries {
		b, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		pe, err := notarize.ParseEntry(b)
		if err != nil {
			continue
		}
		v, err := pe.VerifyLogged()
		if err != nil {
			continue
		}
		recs = append(recs, notarize.Record{Index: first + uint64(i), KeyID: v.KeyID, Statement: v.Statement})
	}
	return recs
}

// rawStatementEntry signs a hand-written statement payload, as a thief
// holding the key can: whatever bytes it likes, under the key.
func rawStatementEntry(t *testing.T, s signature.Signer, payload string) *notarize.Entry {
	t.Helper()
	return notarizetest.Envelope(t, s, notarize.PayloadType, []byte(payload))
}

// TestRedteam3ThiefCannotUnrevoke: the thief holds K after K's
// revocation. Nothing it can sign with K — a kind "key" statement with
// another status (through Sign, or hand-written and signed), the kind in
// another case or with padding, a revocation of K dated before the real
// one (the lowest index counts, not the oldest date), a second subject —
// moves the revocation or brings a later statement back.
func TestRedteam3ThiefCannotUnrevoke(t *testing.T) {
	k := notarizetest.NewSigner(t)
	kid := notarizetest.KeyID(t, k)
	kd, err := notarize.KeyRevocationDigest(kid)
	if err != nil {
		t.Fatal(err)
	}
	img := notarize.DigestOf([]byte("stolen image"))
	at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)

	for _, s := range []notarize.Status{notarize.StatusTrusted, notarize.StatusUnsupported} {
		st := notarize.NewStatement(kd, "", notarize.Predicate{Status: s, Kind: notarize.KindKey, Timestamp: at.Add(time.Hour)})
		if _, err := notarize.Sign(t.Context(), k, st); !errors.Is(err, notarize.ErrBadStatement) {
			t.Fatalf("BYPASS: Sign of kind key, status %s = %v, want ErrBadStatement", s, err)
		}
	}
	rev := notarizetest.KeyRevocation(t, k, kid, at)
	good, err := notarize.NewKeyRevocation(kid, "", "thief", "", at)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := good.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	swap := func(from, to string) string {
		if !bytes.Contains(payload, []byte(from)) {
			t.Fatalf("payload %s lacks %s", payload, from)
		}
		return strings.Replace(string(payload), from, to, 1)
	}
	thief := []*notarize.Entry{
		rawStatementEntry(t, k, swap(`"status":"untrusted"`, `"status":"trusted"`)),
		rawStatementEntry(t, k, swap(`"status":"untrusted"`, `"status":"Untrusted"`)),
		rawStatementEntry(t, k, swap(`"kind":"key"`, `"kind":"Key"`)),
		rawStatementEntry(t, k, swap(`"subject":[{`, `"subject":[{"digest":{"sha256":"`+img.Hex()+`"}},{`)),
		rawStatementEntry(t, k, swap(kid, strings.ToUpper(kid))),
		notarizetest.KeyRevocation(t, k, kid, at.Add(-365*24*time.Hour)), // backdated, but logged later
		notarizetest.Entry(t, k, kd, notarize.StatusTrusted, at.Add(time.Hour)),
		notarizetest.Entry(t, k, img, notarize.StatusTrusted, at.Add(-time.Hour)),
	}
	// Kind "Key" with status trusted is a valid statement of another kind:
	// it must not read as a revocation nor undo one.
	thief = append(thief, rawStatementEntry(t, k, strings.Replace(swap(`"kind":"key"`, `"kind":"Key"`), `"status":"untrusted"`, `"status":"trusted"`, 1)))

	recs := logged(t, 10, append([]*notarize.Entry{rev}, thief...)...)
	r, ok := notarize.FindKeyRevocation(recs, kid, nil)
	if !ok || r.Index != 10 || r.By != kid {
		t.Fatalf("BYPASS: the revocation that counts is %+v %v, want index 10 by the key", r, ok)
	}
	for _, rec := range recs[1:] {
		if notarize.IsKeyRevocation(rec.Statement) && rec.Statement.Digest() != kd {
			t.Fatalf("BYPASS: a statement about %s reads as a revocation", rec.Statement.Digest())
		}
	}
	revs := notarize.Revocations{kid: r}
	for _, d := range []notarize.Digest{img, kd} {
		if dec := notarize.DecideWithRevocations(recs, d, []string{kid}, revs); dec.Verdict == notarize.Trusted {
			t.Fatalf("BYPASS: %s is TRUSTED after K's revocation: %s", d, dec.Reason(func(s string) string { return s }))
		}
	}
}

// TestRedteam3WhoRevokes: with real keys, a revocation counts only when
// signed by the key or a revoker designated for it. A thief's envelope
// that names the revoker's key ID, or carries the revoker's public key
// with the thief's signature, does not verify, so it can never be
// counted as the revoker's.
func TestRedteam3WhoRevokes(t *testing.T) {
	k, revoker, thief := notarizetest.NewSigner(t), notarizetest.NewSigner(t), notarizetest.NewSigner(t)
	kid, rid := notarizetest.KeyID(t, k), notarizetest.KeyID(t, revoker)
	at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	byRevoker := notarizetest.KeyRevocation(t, revoker, kid, at)
	byThief := notarizetest.KeyRevocation(t, thief, kid, at)
	namesRevoker := *byThief
	namesRevoker.Envelope.Signatures = []ssldsse.Signature{{KeyID: rid, Sig: byThief.Envelope.Signatures[0].Sig}}
	carriesRevoker := *byThief
	carriesRevoker.PublicKey = byRevoker.PublicKey
	carriesRevoker.Envelope.Signatures = []ssldsse.Signature{{KeyID: rid, Sig: byThief.Envelope.Signatures[0].Sig}}

	recs := logged(t, 1, byThief, &namesRevoker, &carriesRevoker)
	if r, ok := notarize.FindKeyRevocation(recs, kid, []string{rid}); ok {
		t.Fatalf("BYPASS: a thief's revocation counted as %+v", r)
	}
	recs = append(recs, logged(t, 9, byRevoker)...)
	if r, ok := notarize.FindKeyRevocation(recs, kid, []string{rid}); !ok || r.Index != 9 || r.By != rid {
		t.Fatalf("the revoker's revocation: %+v %v", r, ok)
	}
	if r, ok := notarize.FindKeyRevocation(recs, kid, nil); ok {
		t.Fatalf("BYPASS: a revoker not designated revoked K: %+v", r)
	}
}

// TestRedteam3RevokersAcrossSigners: in a policy, ci's revoker may
// revoke ci's keys only. It cannot revoke release's key, even when the
// revoker is itself a policy signer, nor through a key ci and release
// share (a key both hold is revoked for both: it is one stolen key). A
// revoked key's "trusted" on an index after the revocation lends no trust
// to the index's children, while its statements before the revocation
// still count.
func TestRedteam3RevokersAcrossSigners(t *testing.T) {
	const pol = `
signers:
  ci: {keys: [ci.pub, shared.pub], revokers: [security.pub]}
  release: {keys: [release.pub, shared.pub]}
  security: {keys: [security.pub]}
rules:
  - match: "ci/**"
    require: [ci]
  - match: "**"
    require: [release]
`
	p, err := notarize.ParsePolicy([]byte(pol))
	if err != nil {
		t.Fatal(err)
	}
	ci, release, shared, security := polKey(t), polKey(t), polKey(t), polKey(t)
	ev, err := p.EvaluatorWithRevokers(
		map[string][]crypto.PublicKey{"ci": {ci, shared}, "release": {release, shared}, "security": {security}},
		map[string][]crypto.PublicKey{"ci": {security}})
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
	kci, krel, kshared, ksec := id(ci), id(release), id(shared), id(security)
	at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	revs := ev.Revocations([]notarize.Record{
		revRecord(t, 20, ksec, krel, at),    // security is not release's revoker
		revRecord(t, 21, krel, ksec, at),    // release is not security's revoker
		revRecord(t, 22, kci, krel, at),     // nor is ci
		revRecord(t, 23, ksec, kshared, at), // the shared key: ci's revoker may revoke it
	})
	if _, ok := revs[krel]; ok {
		t.Fatalf("BYPASS: release's key revoked by a key that is not its revoker: %+v", revs[krel])
	}
	if _, ok := revs[ksec]; ok {
		t.Fatalf("BYPASS: security's key revoked by release: %+v", revs[ksec])
	}
	if r, ok := revs[kshared]; !ok || r.Index != 23 {
		t.Fatalf("the shared key's revocation: %+v %v", r, ok)
	}
	d, idx := notarize.DigestOf([]byte("child")), notarize.DigestOf([]byte("index"))
	thiefIndex := asIndex(polRecord(t, 30, shared, idx, notarize.StatusTrusted, at.Add(-time.Hour)))
	for _, tgt := range []string{"ci/app", "docker.io/app"} {
		e := ev.EvaluateWithRevocations(tgt, d, nil, []notarize.Parent{{Digest: idx, Records: []notarize.Record{thiefIndex}}}, revs)
		if e.Allow {
			t.Fatalf("BYPASS: %s: the shared key's index statement after its revocation lent trust: %s", tgt, e.Reason())
		}
		before := asIndex(polRecord(t, 5, shared, idx, notarize.StatusTrusted, at.Add(-2*time.Hour)))
		e = ev.EvaluateWithRevocations(tgt, d, nil, []notarize.Parent{{Digest: idx, Records: []notarize.Record{before, thiefIndex}}}, revs)
		if !e.Allow || e.Via == nil || e.Via.Deciding.Index != 5 {
			t.Fatalf("%s: the index trusted before the revocation: %s", tgt, e.Reason())
		}
	}
	// The child's own statement before the revocation wins over an index.
	untrustedChild := polRecord(t, 6, shared, d, notarize.StatusUntrusted, at)
	before := asIndex(polRecord(t, 5, shared, idx, notarize.StatusTrusted, at.Add(-2*time.Hour)))
	if e := ev.EvaluateWithRevocations("ci/app", d, []notarize.Record{untrustedChild, polRecord(t, 31, shared, d, notarize.StatusTrusted, at.Add(time.Hour))},
		[]notarize.Parent{{Digest: idx, Records: []notarize.Record{before}}}, revs); e.Allow {
		t.Fatalf("BYPASS: the thief's trusted child after the revocation undid the untrust before it: %s", e.Reason())
	}
}
