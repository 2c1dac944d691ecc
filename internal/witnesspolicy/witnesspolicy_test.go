package witnesspolicy

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"filippo.io/edwards25519"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/tessera"
)

// vkey returns the verifier key of pub named name, typed alg (0x01 an
// Ed25519 note key, 0x04 a cosignature/v1 key), with its key hash.
func vkey(t *testing.T, name string, alg byte, pub ed25519.PublicKey) string {
	t.Helper()
	k := append([]byte{alg}, pub...)
	sum := sha256.Sum256(append([]byte(name+"\n"), k...))
	return fmt.Sprintf("%s+%08x+%s", name, binary.BigEndian.Uint32(sum[:]), base64.StdEncoding.EncodeToString(k))
}

// renamed returns vkey's key under the key name name, with that name's
// key hash.
func renamed(t *testing.T, vkey, name string) string {
	t.Helper()
	_, rest, _ := strings.Cut(vkey, "+")
	_, b64, _ := strings.Cut(rest, "+")
	v, err := fnote.NewVerifierForCosignatureV1(fmt.Sprintf("%s+%08x+%s", name, 0, b64))
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s+%08x+%s", name, v.KeyHash(), b64)
}

func newKey(t *testing.T) ed25519.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// TestLines: every witness line is read as Tessera reads it, and one key
// is refused however it is named twice.
func TestLines(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	line := func(label, vkey string) string {
		return fmt.Sprintf("witness %s %s https://%s.test/\n", label, vkey, label)
	}
	w1 := vkey(t, "witness1.test", 0x04, k1)
	w2 := vkey(t, "witness2.test", 0x04, k2)
	// An ML-DSA-44 cosignature covers the key's name, but whoever holds the
	// key can sign under either name: still one witness.
	_, m1, err := fnote.GenerateMLDSAKey("mldsa1.test")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, policy, wantErr string
		want                  int
	}{
		{"two keys", line("w1", w1) + line("w2", w2) + "# witness w3 " + w1 + " https://w3.test/\n", "", 2},
		{"one key two policy names", line("w1", w1) + line("w1bis", w1), "same key", 0},
		{"one key two key names", line("w1", w1) + line("w1bis", renamed(t, w1, "witness1b.test")), "same key", 0},
		{"one key as a note key, another name", line("w1", w1) + line("w1bis", vkey(t, "witness1b.test", 0x01, k1)), "same key", 0},
		{"one key as a note key, the same name", line("w1", w1) + line("w1bis", vkey(t, "witness1.test", 0x01, k1)), "same key", 0},
		{"a bad key", "witness w1 nokey https://w1.test/\n", "witness \"w1\"", 0},
		{"an ML-DSA key beside Ed25519 ones", line("w1", w1) + line("w2", w2) + line("m1", m1), "", 3},
		{"one ML-DSA key two key names", line("w1", m1) + line("w1bis", renamed(t, m1, "mldsa1b.test")), "same key", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Lines([]byte(tc.policy + "quorum w1\n"))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Fatalf("%d lines, want %d: %v", len(got), tc.want, got)
			}
			for id, l := range got {
				v, err := fnote.NewVerifierForCosignatureV1(l.VKey)
				if err != nil || IDOf(v) != id {
					t.Fatalf("line %q under %v: %v", l.VKey, id, err)
				}
			}
		})
	}
}

// TestLinesRefusesWeakAndMistypedKeys: a witness line whose key hash is
// not its key's, and an Ed25519 key that is no point of the curve or is of
// small order, are refused. Under a small-order key anyone forges the
// witness's cosignatures: the test first shows Go's Ed25519 accepting a
// forged signature under the identity key.
func TestLinesRefusesWeakAndMistypedKeys(t *testing.T) {
	identity := make([]byte, 32)
	identity[0] = 1
	forged := make([]byte, 64)
	copy(forged, identity) // R = the identity point, S = 0
	if !ed25519.Verify(identity, []byte("any checkpoint"), forged) {
		t.Fatal("the premise: Ed25519 accepts a forged signature under a small-order key")
	}
	hexKey := func(s string) ed25519.PublicKey {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	notPoint := make([]byte, 32)
	for i := range 256 {
		notPoint[0] = byte(i)
		if _, err := new(edwards25519.Point).SetBytes(notPoint); err != nil {
			break
		}
	}
	good := vkey(t, "witness1.test", 0x04, newKey(t))
	name, rest, _ := strings.Cut(good, "+")
	hash, key, _ := strings.Cut(rest, "+")
	wrongHash := fmt.Sprintf("%s+%08x+%s", name, mustParseHex(t, hash)^1, key)
	// The hash of the key typed 0x01, stated on the key typed 0x04.
	k1 := newKey(t)
	noteHash, _, _ := strings.Cut(strings.SplitN(vkey(t, "witness2.test", 0x01, k1), "+", 2)[1], "+")
	crossed := "witness2.test+" + noteHash + "+" + base64.StdEncoding.EncodeToString(append([]byte{0x04}, k1...))
	for _, tc := range []struct {
		name, vkey, wantErr string
	}{
		{"a mistyped key hash", wrongHash, "is not its key's"},
		{"a note key's hash on a cosignature/v1 key", crossed, "is not its key's"},
		{"the identity point", vkey(t, "weak.test", 0x04, identity), "small order"},
		{"the identity point as a note key", vkey(t, "weak.test", 0x01, identity), "small order"},
		{"the point of order 2", vkey(t, "weak.test", 0x04, hexKey("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")), "small order"},
		{"a point of order 4", vkey(t, "weak.test", 0x04, make([]byte, 32)), "small order"},
		{"a point of order 8", vkey(t, "weak.test", 0x04, hexKey("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")), "small order"},
		{"no point of the curve", vkey(t, "weak.test", 0x04, notPoint), "not a point"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			policy := fmt.Sprintf("witness w1 %s https://w1.test/\nquorum w1\n", tc.vkey)
			if _, err := Lines([]byte(policy)); err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), `witness "w1"`) {
				t.Fatalf("err = %v, want %q naming the witness", err, tc.wantErr)
			}
		})
	}
	if _, err := Lines([]byte("witness w1 " + good + " https://w1.test/\nquorum w1\n")); err != nil {
		t.Fatalf("a good key refused: %v", err)
	}
}

func mustParseHex(t *testing.T, s string) uint32 {
	t.Helper()
	var v uint32
	if _, err := fmt.Sscanf(s, "%08x", &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestGroups: a quorum in which one witness can count twice, or a group
// counts with no witness, is refused; a tree of groups, each witness in
// one place, is not.
func TestGroups(t *testing.T) {
	var lines strings.Builder
	for _, n := range []string{"w1", "w2", "w3"} {
		fmt.Fprintf(&lines, "witness %s %s https://%s.test/\n", n, vkey(t, n+".test", 0x04, newKey(t)), n)
	}
	for _, tc := range []struct{ name, groups, wantErr string }{
		{"a tree", "group a 1 w1 w2\ngroup q 2 a w3\nquorum q\n", ""},
		{"quorum none", "quorum none\n", ""},
		{"a witness twice", "group q 2 w1 w1 w2\nquorum q\n", "twice"},
		{"a group twice", "group g any w1 w2\ngroup q 2 g g\nquorum q\n", "twice"},
		{"a witness beside its group", "group g any w1 w2\ngroup q 2 w1 g\nquorum q\n", "twice"},
		{"two groups sharing a witness", "group a any w1 w2\ngroup b any w1 w3\ngroup q all a b\nquorum q\n", "twice"},
		{"a group shared deeper", "group a 1 w1\ngroup b 1 a w2\ngroup q 2 a b\nquorum q\n", "twice"},
		{"a nested group of threshold 0", "group z 0 w1\ngroup q 1 z w2\nquorum q\n", "threshold 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := tessera.NewWitnessGroupFromPolicy([]byte(lines.String() + tc.groups))
			if err != nil {
				t.Fatal(err)
			}
			err = Groups(g)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestLogKeys: a policy's "log" lines are the ledger keys its clients take
// (red team 15), each once and in order; one the client cannot read, or
// under which anyone could sign checkpoints, is refused rather than
// skipped as Tessera's parser skips it.
func TestLogKeys(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub2, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a, b := vkey(t, "ledger.test/a", 0x01, pub), vkey(t, "ledger.test/b", 0x01, pub2)
	identity := make([]byte, 32)
	identity[0] = 1
	witness := "witness w1 " + vkey(t, "w1.test", 0x04, pub2) + " http://w1.test/\nquorum w1\n"
	keys, err := LogKeys([]byte("# logs\nlog " + a + " https://a.test/\nlog " + b + "   # the second\nlog " + a + "\n" + witness))
	if err != nil || len(keys) != 2 || keys[0] != a || keys[1] != b {
		t.Fatalf("LogKeys = %q, %v; want [a b]", keys, err)
	}
	if keys, err := LogKeys([]byte(witness)); err != nil || keys != nil {
		t.Fatalf("no log line: %q, %v", keys, err)
	}
	for _, tc := range []struct{ name, line, want string }{
		{"a raw key (Sigsum's form)", "log " + hex.EncodeToString(pub), "log key"},
		{"a cosignature/v1 key", "log " + vkey(t, "ledger.test/a", 0x04, pub), "log key"},
		{"a key hash that is not its key's", "log " + renamedHash(a), "log key"},
		{"the identity point", "log " + vkey(t, "ledger.test/weak", 0x01, identity), "small order"},
		{"no key", "log", "want log VKEY"},
		{"too many fields", "log " + a + " https://a.test/ more", "want log VKEY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := LogKeys([]byte(tc.line + "\n" + witness)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LogKeys: %v, want an error about %q", err, tc.want)
			}
		})
	}
}

// renamedHash returns vkey with its key hash changed.
func renamedHash(vkey string) string {
	name, rest, _ := strings.Cut(vkey, "+")
	_, b64, _ := strings.Cut(rest, "+")
	return name + "+00000000+" + b64
}
