package ledgerclient

import (
	"testing"
	"time"

	"github.com/notarize/docker-notarize/internal/witnesstest"
)

// FuzzParseWitnessPolicy: any policy file parses or is refused, without a
// panic; a policy that parses names at least one witness and needs one.
func FuzzParseWitnessPolicy(f *testing.F) {
	w1 := witnesstest.New(f, "w1", "witness1.test")
	w2 := witnesstest.New(f, "w2", "witness2.test")
	f.Add(witnesstest.Policy(2, w1, w2))
	f.Add(witnesstest.Policy(1, w1))
	f.Add([]byte("witness a " + w1.VKey + " https://a/\ngroup g any a a\ngroup h all g g\nquorum h\n"))
	f.Add([]byte("quorum none\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseWitnessPolicy(b)
		if err != nil {
			return
		}
		if len(p.Witnesses()) == 0 || p.group.N <= 0 {
			t.Fatalf("policy %q parsed with %d witnesses and threshold %d", b, len(p.Witnesses()), p.group.N)
		}
	})
}

// FuzzWitnessed: any note is accepted or refused under a 2-of-2 policy
// without a panic, and accepted only with both cosignatures.
func FuzzWitnessed(f *testing.F) {
	w1 := witnesstest.New(f, "w1", "witness1.test")
	w2 := witnesstest.New(f, "w2", "witness2.test")
	p, err := ParseWitnessPolicy(witnesstest.Policy(2, w1, w2))
	if err != nil {
		f.Fatal(err)
	}
	raw := []byte("example.test/log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— example.test/log AAAAAAAA\n")
	now := time.Unix(1_800_000_000, 0)
	f.Add(raw)
	f.Add(w2.Cosign(w1.Cosign(raw, now), now))
	f.Add(w1.Cosign(w1.Cosign(raw, now), now))
	f.Fuzz(func(t *testing.T, b []byte) {
		cp, err := p.Witnessed(Checkpoint{Raw: b})
		if err != nil {
			return
		}
		if _, err := cosignedAt(b, w1.Verifier()); err != nil {
			t.Fatalf("accepted without w1's cosignature: %q", b)
		}
		if _, err := cosignedAt(b, w2.Verifier()); err != nil {
			t.Fatalf("accepted without w2's cosignature: %q", b)
		}
		if cp.WitnessedAt.IsZero() {
			t.Fatal("accepted without a time")
		}
	})
}
