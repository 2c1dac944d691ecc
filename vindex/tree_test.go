package vindex

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
)

// refRoot computes the root of the tree holding leaves, by the definition
// in the package comment, with no storage and no proofs: the reference the
// stored tree is checked against.
func refRoot(leaves map[Key][]byte) Hash {
	keys := make([]Key, 0, len(leaves))
	for k := range leaves {
		keys = append(keys, k)
	}
	var sub func(keys []Key, depth int) Hash
	sub = func(keys []Key, depth int) Hash {
		switch len(keys) {
		case 0:
			return Empty
		case 1:
			return HashLeaf(keys[0], HashValue(leaves[keys[0]]))
		}
		var l, r []Key
		for _, k := range keys {
			if k.bit(depth) == 0 {
				l = append(l, k)
			} else {
				r = append(r, k)
			}
		}
		return HashInner(sub(l, depth+1), sub(r, depth+1))
	}
	return sub(keys, 0)
}

func keyOf(i uint64) Key {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], i)
	return sha256.Sum256(b[:])
}

func apply(t testing.TB, m *MemStore, ups []Update) Hash {
	t.Helper()
	root, w, err := Apply(m, ups)
	if err != nil {
		t.Fatal(err)
	}
	m.Write(w)
	if got, _ := Root(m); got != root {
		t.Fatalf("stored root %x, Apply returned %x", got, root)
	}
	return root
}

func TestEmptyTree(t *testing.T) {
	m := NewMemStore()
	if r, _ := Root(m); r != Empty {
		t.Fatalf("empty root %x", r)
	}
	p, v, err := Prove(m, keyOf(1))
	if err != nil || v != nil {
		t.Fatal(err, v)
	}
	if got, err := p.Verify(Empty, keyOf(1)); err != nil || got != nil {
		t.Fatalf("absence in the empty tree: %v %v", got, err)
	}
}

// TestTreeMatchesReference inserts keys in batches, in random order, and
// checks the root against the reference after each batch, and every key's
// proof (present ones and absent ones).
func TestTreeMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	m := NewMemStore()
	leaves := map[Key][]byte{}
	for batch := range 30 {
		var ups []Update
		for range 1 + rng.IntN(40) {
			k := keyOf(uint64(rng.IntN(500)))
			v := []byte{byte(batch), byte(rng.IntN(256))}
			ups = append(ups, Update{Key: k, Value: v})
			leaves[k] = v
		}
		root := apply(t, m, ups)
		if want := refRoot(leaves); root != want {
			t.Fatalf("batch %d: root %x, reference %x", batch, root, want)
		}
	}
	root, _ := Root(m)
	for i := range uint64(600) {
		k := keyOf(i)
		p, v, err := Prove(m, k)
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.Verify(root, k)
		if err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
		want, present := leaves[k]
		switch {
		case present && (got == nil || *got != HashValue(want) || !bytes.Equal(v, want)):
			t.Fatalf("key %d: proof says %v, value %x, want %x", i, got, v, want)
		case !present && (got != nil || v != nil):
			t.Fatalf("key %d absent, proof says present", i)
		}
	}
}

// TestOrderIndependent: the same set of leaves gives the same root however
// it was inserted (one batch, one by one, reversed).
func TestOrderIndependent(t *testing.T) {
	var ups []Update
	for i := range uint64(200) {
		ups = append(ups, Update{Key: keyOf(i), Value: []byte{byte(i)}})
	}
	a := apply(t, NewMemStore(), ups)
	m := NewMemStore()
	var b Hash
	for i := len(ups) - 1; i >= 0; i-- {
		b = apply(t, m, ups[i:i+1])
	}
	if a != b {
		t.Fatalf("roots differ: %x %x", a, b)
	}
}

// TestProofAdversarial: a proof does not verify for another key, another
// value, another root, or when any part of it is changed.
func TestProofAdversarial(t *testing.T) {
	m := NewMemStore()
	var ups []Update
	for i := range uint64(300) {
		ups = append(ups, Update{Key: keyOf(i), Value: []byte{byte(i), 1}})
	}
	root := apply(t, m, ups)
	k := keyOf(7)
	p, _, _ := Prove(m, k)
	if got, err := p.Verify(root, k); err != nil || got == nil || *got != HashValue([]byte{7, 1}) {
		t.Fatalf("honest proof: %v %v", got, err)
	}
	// A membership proof for key 7 proves nothing about key 8.
	if got, err := p.Verify(root, keyOf(8)); err == nil {
		t.Fatalf("key 7's proof verified for key 8: %v", got)
	}
	// Another value.
	bad := *p
	vh := HashValue([]byte{7, 2})
	bad.LeafValueHash = &vh
	if _, err := bad.Verify(root, k); !errors.Is(err, ErrBadProof) {
		t.Fatalf("changed value: %v", err)
	}
	// A membership proof turned into an absence proof.
	bad = *p
	bad.LeafKey, bad.LeafValueHash = nil, nil
	if _, err := bad.Verify(root, k); !errors.Is(err, ErrBadProof) {
		t.Fatalf("dropped leaf: %v", err)
	}
	// A flipped sibling, a dropped sibling, a bitmap bit, a shallower depth.
	for i := range p.Siblings {
		bad = *p
		bad.Siblings = append([]Hash(nil), p.Siblings...)
		bad.Siblings[i][0] ^= 1
		if _, err := bad.Verify(root, k); !errors.Is(err, ErrBadProof) {
			t.Fatalf("flipped sibling %d: %v", i, err)
		}
	}
	bad = *p
	bad.Siblings = p.Siblings[1:]
	if _, err := bad.Verify(root, k); !errors.Is(err, ErrBadProof) {
		t.Fatalf("dropped sibling: %v", err)
	}
	bad = *p
	bad.Bitmap = append([]byte(nil), p.Bitmap...)
	bad.Bitmap[0] ^= 0x80
	if _, err := bad.Verify(root, k); !errors.Is(err, ErrBadProof) {
		t.Fatalf("flipped bitmap: %v", err)
	}
	bad = *p
	bad.Depth--
	if _, err := bad.Verify(root, k); !errors.Is(err, ErrBadProof) {
		t.Fatalf("shallower: %v", err)
	}
	// Another root.
	other := root
	other[5] ^= 1
	if _, err := p.Verify(other, k); !errors.Is(err, ErrBadProof) {
		t.Fatalf("other root: %v", err)
	}
	// An absence proof of an absent key cannot be used for a present one
	// (the other leaf's key must share the path).
	absent := keyOf(100000)
	pa, _, _ := Prove(m, absent)
	if got, err := pa.Verify(root, absent); err != nil || got != nil {
		t.Fatalf("absence: %v %v", got, err)
	}
	if _, err := pa.Verify(root, k); err == nil {
		t.Fatal("an absence proof for one key verified for a present key")
	}
}

func TestNodeEncoding(t *testing.T) {
	for _, n := range []Node{{Hash: Hash{1, 2}}, {Leaf: true, Key: Key{3}, Value: []byte("v")}} {
		got, err := UnmarshalNode(n.Marshal())
		if err != nil || got.Leaf != n.Leaf || got.Key != n.Key || !bytes.Equal(got.Value, n.Value) {
			t.Fatalf("%+v → %+v %v", n, got, err)
		}
	}
	for _, b := range [][]byte{nil, {1}, {2, 0}, make([]byte, 1+KeySize+MaxValueSize+1)} {
		if _, err := UnmarshalNode(b); !errors.Is(err, ErrBadNode) {
			t.Fatalf("%x: %v", b, err)
		}
	}
}

// FuzzProof: for any set of keys and any asked key, the proof verifies, it
// says present exactly when the key was inserted (with its value), and a
// proof with one bit flipped does not verify.
func FuzzProof(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4}, uint16(2), uint16(0))
	f.Add([]byte{0, 0, 0}, uint16(9), uint16(3))
	f.Fuzz(func(t *testing.T, ks []byte, ask uint16, flip uint16) {
		if len(ks) > 200 {
			ks = ks[:200]
		}
		m := NewMemStore()
		leaves := map[Key][]byte{}
		var ups []Update
		for i, b := range ks {
			k := keyOf(uint64(b) % 64)
			v := []byte{byte(i)}
			ups = append(ups, Update{Key: k, Value: v})
			leaves[k] = v
		}
		root := apply(t, m, ups)
		if root != refRoot(leaves) {
			t.Fatal("root differs from the reference")
		}
		k := keyOf(uint64(ask) % 80)
		p, _, err := Prove(m, k)
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.Verify(root, k)
		if err != nil {
			t.Fatal(err)
		}
		want, present := leaves[k]
		if present != (got != nil) || present && *got != HashValue(want) {
			t.Fatalf("present %v, proof says %v", present, got)
		}
		if len(p.Siblings) > 0 {
			bad := *p
			bad.Siblings = append([]Hash(nil), p.Siblings...)
			i := int(flip) % len(bad.Siblings)
			bad.Siblings[i][int(flip/7)%32] ^= 1 << (flip % 8)
			if _, err := bad.Verify(root, k); err == nil {
				t.Fatal("a flipped sibling verified")
			}
		}
	})
}

// TestCompareIDsOrdersAsBytes: the writes' order (compareIDs) is the order
// of their storage keys (NodeID.Bytes), at every depth, prefixes sharing
// and differing in the last partial byte included.
func TestCompareIDsOrdersAsBytes(t *testing.T) {
	var ids []NodeID
	for _, k := range []Key{{}, {0x80}, {0xff, 0xff}, {0x12, 0x34, 0x56}, {0x12, 0x35}} {
		for _, d := range []int{0, 1, 7, 8, 9, 15, 16, 17, 24, 255, 256} {
			ids = append(ids, nodeIDOf(k, d))
		}
	}
	for _, a := range ids {
		for _, b := range ids {
			if got, want := compareIDs(a, b), bytes.Compare(a.Bytes(), b.Bytes()); got != want {
				t.Fatalf("compareIDs(%d/%x, %d/%x) = %d, Bytes order %d", a.Depth, a.Prefix[:4], b.Depth, b.Prefix[:4], got, want)
			}
		}
	}
}
