package notarize_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/notarize"
)

// newKey returns a fresh ECDSA P-256 signer, the kind `docker notarize key
// generate` makes.
func newKey() signature.SignerVerifier {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	sv, err := signature.LoadSignerVerifier(priv, notarize.HashFor(priv.Public()))
	if err != nil {
		panic(err)
	}
	return sv
}

// A signer records that a digest is trusted; a verifier checks the entry on
// its own (the signature under the key it carries) and folds the verified
// records of the signers it accepts into a verdict.
func Example() {
	ctx := context.Background()
	release := newKey()
	d := notarize.DigestOf([]byte(`{"schemaVersion":2}`)) // a manifest's bytes, hashed here

	// Sign: the statement "d is TRUSTED", in a DSSE envelope, with the public key.
	st := notarize.NewStatement(d, "registry.example/app:1", notarize.Predicate{
		Status: notarize.StatusTrusted, Kind: notarize.KindImage, Name: "release",
		Timestamp: time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC),
	})
	entry, err := notarize.Sign(ctx, release, st)
	if err != nil {
		panic(err)
	}
	raw, _ := entry.Marshal() // the bytes the ledger stores

	// Verify: parse, check the signature, fold.
	parsed, err := notarize.ParseEntry(raw)
	if err != nil {
		panic(err)
	}
	v, err := parsed.Verify()
	if err != nil {
		panic(err)
	}
	records := []notarize.Record{{Index: 0, KeyID: v.KeyID, Statement: v.Statement}}
	pub, _ := release.PublicKey()
	accepted, _ := notarize.KeyID(pub)
	dec := notarize.Decide(records, d, []string{accepted})
	fmt.Println(dec.Verdict, dec.Verdict.ExitCode())
	// Output: TRUSTED 0
}

// The newest signed statement of each accepted signer counts: replaying an
// older "trusted" cannot undo a later "untrusted".
func ExampleDecide() {
	d := notarize.DigestOf([]byte("an artifact"))
	at := func(h int) time.Time { return time.Date(2026, 11, 30, h, 0, 0, 0, time.UTC) }
	rec := func(index uint64, s notarize.Status, h int) notarize.Record {
		return notarize.Record{Index: index, KeyID: "k1", Statement: notarize.NewStatement(d, "", notarize.Predicate{Status: s, Timestamp: at(h)})}
	}
	records := []notarize.Record{
		rec(0, notarize.StatusTrusted, 9),
		rec(1, notarize.StatusUntrusted, 10),
		rec(2, notarize.StatusTrusted, 9), // a replay of the first, logged later
	}
	dec := notarize.Decide(records, d, []string{"k1"})
	fmt.Println(dec.Verdict, "by the statement at log index", dec.Deciding.Index)
	// Output: UNTRUSTED by the statement at log index 1
}

// A stolen key is revoked at a log index; the thief's statements after it
// do not count, however they are dated, and those before it still do.
func ExampleDecideWithRevocations() {
	key := strings.Repeat("ab", 32) // the stolen key's ID
	approved, stolen := notarize.DigestOf([]byte("approved")), notarize.DigestOf([]byte("stolen"))
	at := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	revocation, _ := notarize.NewKeyRevocation(key, "ci", "security", "laptop stolen", at)
	records := []notarize.Record{
		{Index: 3, KeyID: key, Statement: notarize.NewStatement(approved, "", notarize.Predicate{Status: notarize.StatusTrusted, Timestamp: at})},
		{Index: 7, KeyID: key, Statement: revocation},
		{Index: 9, KeyID: key, Statement: notarize.NewStatement(stolen, "", notarize.Predicate{Status: notarize.StatusTrusted, Timestamp: at.AddDate(-1, 0, 0)})},
	}
	rev, _ := notarize.FindKeyRevocation(records, key, nil)
	revs := notarize.Revocations{key: rev}
	for _, d := range []notarize.Digest{approved, stolen} {
		fmt.Println(notarize.DecideWithRevocations(records, d, []string{key}, revs).Verdict)
	}
	// Output:
	// TRUSTED
	// UNKNOWN
}

// A policy names signers and says, per "UPSTREAM/REPO" pattern, whose
// statements count and what happens to a digest that is not trusted.
func ExamplePolicy_Evaluator() {
	pol, err := notarize.ParsePolicy([]byte(`
version: 1
signers:
  release: {keys: [release.pub]}
rules:
  - match: "ghcr.io/acme/sandbox/**"
    require: [release]
    mode: audit
  - match: "**"
    require: [release]
`))
	if err != nil {
		panic(err)
	}
	release := newKey()
	pub, _ := release.PublicKey()
	ev, err := pol.Evaluator(map[string][]crypto.PublicKey{"release": {pub}}) // the caller loads release.pub
	if err != nil {
		panic(err)
	}
	d := notarize.DigestOf([]byte("unsigned manifest"))
	for _, target := range []string{"docker.io/library/alpine", "ghcr.io/acme/sandbox/tool"} {
		e := ev.Evaluate(target, d, nil, nil)
		fmt.Printf("%s: %s, mode %s, served %v\n", target, e.Verdict, e.Mode, e.Allow)
	}
	// Output:
	// docker.io/library/alpine: UNKNOWN, mode enforce, served false
	// ghcr.io/acme/sandbox/tool: UNKNOWN, mode audit, served true
}
