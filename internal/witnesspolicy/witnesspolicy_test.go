package witnesspolicy

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/tessera"
)

// vkey returns the verifier key of pub named name, typed alg (0x01 an
// Ed25519 note key, 0x04 a cosignature/v1 key), with its key hash.
func vkey(t *testing.T, name string, alg byte, pub ed25519.PublicKey) string {
	t.Helper()
	k := base64.StdEncoding.EncodeToString(append([]byte{alg}, pub...))
	v, err := fnote.NewVerifierForCosignatureV1(fmt.Sprintf("%s+%08x+%s", name, 0, k))
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s+%08x+%s", name, v.KeyHash(), k)
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
