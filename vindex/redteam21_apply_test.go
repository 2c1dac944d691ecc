package vindex

// Red-team review (round 21) of the walking Apply (commit 0d5ce33).

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

// rtBits returns the key whose leading bits are bits, the rest zero.
func rtBits(bits string) Key {
	var k Key
	for i, c := range bits {
		if c == '1' {
			k[i/8] |= 1 << (7 - uint(i%8))
		}
	}
	return k
}

func rtLeafNode(k Key, v []byte) Node {
	return Node{Leaf: true, Key: k, Value: v, Hash: HashLeaf(k, HashValue(v))}
}

// rtCheckSafe applies writes over a copy of m and requires every updated
// key to prove its last value against root.
func rtCheckSafe(m *MemStore, root Hash, writes []NodeWrite, ups []Update) error {
	return rtSafe(m, root, writes, ups)
}

// TestRedteam21MisplacedLeafPutsNewKeyOffItsPath: a stored leaf at a
// position not on its key's path (a corrupt store: leaf of W = 1001... at
// depth 1 prefix 0) and a new key Y = 01... reaching it. The walk inserts W
// among the items in key order, which is then not in the order of the bit
// split's depth (Y has bit 1 set, W not), so split's binary search sends
// both to child 0; Y's leaf is written at depth 4 prefix 0000, off Y's
// path, with no error, and the root signed leaves Y absent. The reference
// put Y on its own path (and here even gets the canonical root). Failed on
// 0d5ce33; Apply now refuses a stored leaf that is not on the path it is
// read on (ErrBadNode), as the reference's result is not worth matching
// either.
func TestRedteam21MisplacedLeafPutsNewKeyOffItsPath(t *testing.T) {
	W, Y := rtBits("1001"), rtBits("01")
	m := NewMemStore()
	m.Write([]NodeWrite{
		{ID: NodeID{}, Node: Node{Hash: HashInner(HashLeaf(W, HashValue([]byte{1})), Empty)}},
		{ID: nodeIDOf(rtBits("0"), 1), Node: rtLeafNode(W, []byte{1})}, // W's path starts with 1
	})
	ups := []Update{{Key: Y, Value: []byte{2}}}
	if r, w, err := refApply(m, ups); err != nil || rtCheckSafe(m, r, w, ups) != nil {
		t.Fatalf("reference: %v / %v", err, rtCheckSafe(m, r, w, ups))
	}
	root, writes, err := Apply(m, ups)
	if err != nil {
		return // refusing the corrupt store is the safe answer
	}
	for _, w := range writes {
		if w.Node.Leaf && commonPrefix(w.Node.Key, w.ID.Prefix) < w.ID.Depth {
			t.Errorf("leaf of key %08b... written at depth %d prefix %08b, not on its path", w.Node.Key[0], w.ID.Depth, w.ID.Prefix[0])
		}
	}
	if e := rtCheckSafe(m, root, writes, ups); e != nil {
		t.Errorf("Apply returned no error, but the updated key does not prove against its root: %v", e)
	}
}

// TestRedteam21StaleNodeBelowLeaf: a node stored below a leaf (corrupt).
// Apply differs from the reference, but safely: its root is the canonical
// one (the stale node ignored), where the reference hashes the stale node
// in. (Its writes leave the stale node as the sibling of the new key's
// path, so a proof read from the store then fails; the next Apply over
// that subtree reads it back in.)
func TestRedteam21StaleNodeBelowLeaf(t *testing.T) {
	K, J, X := rtBits("000"), rtBits("1"), rtBits("001")
	m := NewMemStore()
	_, w, _ := refApply(m, []Update{{Key: K, Value: []byte{1}}, {Key: J, Value: []byte{1}}})
	m.Write(w)
	m.nodes[nodeIDOf(rtBits("01"), 2)] = Node{Hash: Hash{7}}
	ups := []Update{{Key: X, Value: []byte{2}}}
	canon := refRoot(map[Key][]byte{K: {1}, J: {1}, X: {2}})
	root, _, err := Apply(m, ups)
	if err != nil || root != canon {
		t.Fatalf("Apply: %v, canonical %v", err, root == canon)
	}
	if r, _, _ := refApply(m, ups); r == canon {
		t.Log("the reference is canonical too")
	}
}

// TestRedteam21Edges compares Apply with the reference on the edge batches
// of the brief, over a tree holding keys that share 255 bits, and checks
// that Apply neither changes the caller's updates nor shares their values.
func TestRedteam21Edges(t *testing.T) {
	last := func(k Key) Key { k[31] ^= 1; return k }
	a := rtBits("0110")
	a[31] = 0x10
	b, c := last(a), rtBits("1")
	big := bytes.Repeat([]byte{7}, MaxValueSize)
	batches := []struct {
		name string
		ups  []Update
		fail bool
	}{
		{"zero", nil, false},
		{"empty slice", []Update{}, false},
		{"single", []Update{{Key: c, Value: []byte{1}}}, false},
		{"3 times", []Update{{Key: a, Value: []byte{1}}, {Key: b, Value: []byte{1}}, {Key: a, Value: []byte{2}}, {Key: a, Value: nil}, {Key: b, Value: []byte{}}}, false},
		{"255 bits shared", []Update{{Key: a, Value: []byte{3}}, {Key: b, Value: []byte{4}}}, false},
		{"under one leaf", []Update{{Key: rtBits("11"), Value: nil}, {Key: rtBits("101"), Value: big}, {Key: rtBits("1001"), Value: []byte{}}}, false},
		{"max value", []Update{{Key: rtBits("0111"), Value: big}}, false},
		{"oversize mixed", []Update{{Key: rtBits("0111"), Value: big}, {Key: a, Value: append(big, 1)}}, true},
		{"oversize then replaced", []Update{{Key: a, Value: append(big, 1)}, {Key: a, Value: []byte{1}}}, true},
	}
	m := NewMemStore()
	for _, tc := range batches {
		orig := make([]Update, len(tc.ups))
		for i, u := range tc.ups {
			orig[i] = Update{Key: u.Key, Value: bytes.Clone(u.Value)}
		}
		wr, want, werr := refApply(m, tc.ups)
		root, got, err := Apply(m, tc.ups)
		if (err != nil) != tc.fail || (werr != nil) != tc.fail {
			t.Fatalf("%s: error %v, reference %v", tc.name, err, werr)
		}
		if !slices.EqualFunc(tc.ups, orig, func(x, y Update) bool { return x.Key == y.Key && bytes.Equal(x.Value, y.Value) }) {
			t.Fatalf("%s: updates changed", tc.name)
		}
		if tc.fail {
			continue
		}
		if root != wr || !slices.EqualFunc(got, want, writeEqual) || (got == nil) != (want == nil) {
			t.Fatalf("%s: differs from the reference", tc.name)
		}
		for _, w := range got {
			for _, u := range tc.ups {
				if len(w.Node.Value) > 0 && len(u.Value) > 0 && &w.Node.Value[0] == &u.Value[0] {
					t.Fatalf("%s: a write shares an update's value", tc.name)
				}
			}
		}
		m.Write(got)
		leaves := map[Key][]byte{}
		for _, n := range m.nodes {
			if n.Leaf {
				leaves[n.Key] = n.Value
			}
		}
		if root != refRoot(leaves) {
			t.Fatalf("%s: root not canonical", tc.name)
		}
	}
}

// TestRedteam21ReadsWithinReference: on valid trees Apply reads no node
// the reference does not, so no reader error can fail Apply where the
// reference succeeded (the reverse happens: the reference reads the
// children of a stored leaf's position, which Apply knows empty).
func TestRedteam21ReadsWithinReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 2))
	pool := make([]Key, 40)
	for i := range pool {
		pool[i][0] = byte(rng.IntN(256)) & 0xf8
		pool[i][31] = byte(rng.IntN(3))
	}
	m := NewMemStore()
	for range 300 {
		var ups []Update
		for range rng.IntN(6) {
			ups = append(ups, Update{Key: pool[rng.IntN(len(pool))], Value: []byte{byte(rng.IntN(4))}})
		}
		nr := &recReader{NodeReader: m, reads: map[NodeID]int{}}
		rr := &recReader{NodeReader: m, reads: map[NodeID]int{}}
		root, got, err := Apply(nr, ups)
		wr, want, werr := refApply(rr, ups)
		if err != nil || werr != nil || root != wr || !slices.EqualFunc(got, want, writeEqual) {
			t.Fatalf("differs: %v %v", err, werr)
		}
		for id, n := range nr.reads {
			if rr.reads[id] == 0 {
				t.Fatalf("Apply reads %d/%x, the reference does not", id.Depth, id.Prefix[:1])
			}
			if n > 1 {
				t.Fatalf("Apply reads %d/%x %d times", id.Depth, id.Prefix[:1], n)
			}
		}
		m.Write(got)
	}
}

// FuzzRedteam21Apply: a valid tree built from the first batch, a second
// batch applied by Apply and the reference, both from fuzz bytes (keys
// from a small pool sharing long prefixes): same root, writes, order.
func FuzzRedteam21Apply(f *testing.F) {
	f.Add([]byte{1, 2, 3, 0, 4, 5}, []byte{1, 1, 1, 9})
	f.Add([]byte{}, []byte{0, 0, 0})
	f.Add([]byte{255, 254, 128}, []byte{127, 255, 0, 1})
	f.Fuzz(func(t *testing.T, first, second []byte) {
		key := func(b byte) Key {
			var k Key
			k[0] = b & 0xe0
			k[31] = b & 0x07
			return k
		}
		batch := func(bs []byte) []Update {
			var ups []Update
			for i, b := range bs {
				ups = append(ups, Update{Key: key(b), Value: bytes.Repeat([]byte{b}, i%3)})
			}
			return ups
		}
		m := NewMemStore()
		_, w, err := Apply(m, batch(first))
		if err != nil {
			t.Fatal(err)
		}
		m.Write(w)
		ups := batch(second)
		wr, want, werr := refApply(m, ups)
		root, got, err := Apply(m, ups)
		if err != nil || werr != nil || root != wr || !slices.EqualFunc(got, want, writeEqual) {
			t.Fatalf("differs from the reference: %v %v", err, werr)
		}
	})
}
