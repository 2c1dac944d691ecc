package vindex

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// The reference below is Apply as it was before it walked subtrees (a
// key inserted at a time, the inner nodes on the changed paths rehashed
// after): TestApplyMatchesInsertion holds the walk to its roots and writes.

type refOverlay struct {
	base    NodeReader
	pending map[NodeID]*NodeWrite
}

func (o *refOverlay) read(id NodeID) (Node, bool, error) {
	if w, ok := o.pending[id]; ok {
		return w.Node, !w.Delete, nil
	}
	n, ok, err := o.base.ReadNode(id)
	if err != nil {
		return Node{}, false, fmt.Errorf("read map node %d/%x: %w", id.Depth, id.Prefix[:(id.Depth+7)/8], err)
	}
	return n, ok, nil
}

func (o *refOverlay) put(id NodeID, n Node) { o.pending[id] = &NodeWrite{ID: id, Node: n} }

func (o *refOverlay) hashOf(id NodeID) (Hash, error) {
	n, ok, err := o.read(id)
	if err != nil || !ok {
		return Empty, err
	}
	return n.Hash, nil
}

func refApply(r NodeReader, updates []Update) (Hash, []NodeWrite, error) {
	o := &refOverlay{base: r, pending: make(map[NodeID]*NodeWrite)}
	last := make(map[Key][]byte, len(updates))
	for _, u := range updates {
		if len(u.Value) > MaxValueSize {
			return Empty, nil, fmt.Errorf("map update: value of %d bytes, at most %d", len(u.Value), MaxValueSize)
		}
		last[u.Key] = u.Value
	}
	keys := make([]Key, 0, len(last))
	for k := range last {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b Key) int { return bytes.Compare(a[:], b[:]) })
	dirty := make(map[NodeID]bool)
	for _, k := range keys {
		if err := o.insert(k, last[k], dirty); err != nil {
			return Empty, nil, err
		}
	}
	ids := make([]NodeID, 0, len(dirty))
	for id := range dirty {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b NodeID) int { return b.Depth - a.Depth })
	for _, id := range ids {
		l, err := o.hashOf(id.child(0))
		if err != nil {
			return Empty, nil, err
		}
		rh, err := o.hashOf(id.child(1))
		if err != nil {
			return Empty, nil, err
		}
		o.put(id, Node{Hash: HashInner(l, rh)})
	}
	root, err := o.hashOf(NodeID{})
	if err != nil {
		return Empty, nil, err
	}
	writes := make([]NodeWrite, 0, len(o.pending))
	for _, w := range o.pending {
		writes = append(writes, *w)
	}
	slices.SortFunc(writes, func(a, b NodeWrite) int { return compareIDs(a.ID, b.ID) })
	return root, writes, nil
}

// insert places key's leaf in the overlay and marks the inner nodes above
// it dirty.
func (o *refOverlay) insert(key Key, value []byte, dirty map[NodeID]bool) error {
	leaf := Node{Leaf: true, Key: key, Value: bytes.Clone(value)}
	leaf.Hash = HashLeaf(key, HashValue(value))
	for d := 0; d <= KeyBits; d++ {
		id := nodeIDOf(key, d)
		n, ok, err := o.read(id)
		if err != nil {
			return err
		}
		switch {
		case !ok || n.Leaf && n.Key == key:
			o.put(id, leaf)
			return nil
		case n.Leaf:
			// Another key's leaf: push both down to where their paths part.
			c := commonPrefix(key, n.Key)
			for i := d; i < c; i++ {
				dirty[nodeIDOf(key, i)] = true
				o.put(nodeIDOf(key, i), Node{}) // rehashed below
			}
			dirty[nodeIDOf(key, c)] = true
			o.put(nodeIDOf(key, c), Node{})
			o.put(nodeIDOf(n.Key, c+1), n)
			o.put(nodeIDOf(key, c+1), leaf)
			return nil
		}
		dirty[id] = true
	}
	return fmt.Errorf("map update: no place for key %x", key[:])
}

// TestApplyMatchesInsertion folds batches into one growing tree with Apply
// and with the reference, and requires the same root and the same writes,
// in the same order: random keys, keys sharing up to 255 bits with stored
// or new ones (leaves pushed down many levels, several new keys under one
// stored leaf), stored keys updated, a key given twice in a batch, and
// empty batches.
func TestApplyMatchesInsertion(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	m := NewMemStore()
	var known []Key
	randKey := func() Key {
		var k Key
		for i := range k {
			k[i] = byte(rng.Uint32())
		}
		return k
	}
	near := func(k Key) Key { // shares exactly p bits with k
		p := rng.IntN(64)
		if rng.IntN(4) == 0 {
			p = 255 - rng.IntN(64)
		}
		k[p/8] ^= 1 << (7 - uint(p%8))
		for i := p + 1; i < KeyBits; i++ {
			if rng.IntN(2) == 0 {
				k[i/8] ^= 1 << (7 - uint(i%8))
			}
		}
		return k
	}
	value := func() []byte {
		v := make([]byte, rng.IntN(MaxValueSize+1))
		for i := range v {
			v[i] = byte(rng.Uint32())
		}
		return v
	}
	batches, moved := 0, 0
	for round := range 200 {
		n := rng.IntN(200)
		if round%10 == 0 {
			n = rng.IntN(3)
		}
		var ups []Update
		for range n {
			var k Key
			switch c := rng.IntN(10); {
			case len(known) == 0 || c < 4:
				k = randKey()
			case c < 7:
				k = near(known[rng.IntN(len(known))])
			case c < 8 && len(ups) > 0:
				k = near(ups[rng.IntN(len(ups))].Key)
			case c < 9 && len(ups) > 0:
				k = ups[rng.IntN(len(ups))].Key // twice in one batch
			default:
				k = known[rng.IntN(len(known))] // a stored key updated
			}
			ups = append(ups, Update{Key: k, Value: value()})
		}
		wantRoot, want, werr := refApply(m, ups)
		root, got, err := Apply(m, ups)
		if werr != nil || err != nil {
			t.Fatalf("round %d: reference error %v, Apply error %v", round, werr, err)
		}
		if root != wantRoot {
			t.Fatalf("round %d: root %x, reference %x", round, root, wantRoot)
		}
		if !slices.EqualFunc(got, want, writeEqual) {
			t.Fatalf("round %d: %d writes differ from the reference's %d", round, len(got), len(want))
		}
		for _, w := range got {
			if w.Node.Leaf && !slices.ContainsFunc(ups, func(u Update) bool { return u.Key == w.Node.Key }) {
				moved++
			}
		}
		m.Write(got)
		for _, u := range ups {
			known = append(known, u.Key)
		}
		if (round == 99 || round == 199) && root != refRootOf(t, m) {
			t.Fatalf("round %d: root is not the tree's by definition", round)
		}
		batches++
	}
	if moved < 100 {
		t.Fatalf("only %d stored leaves moved down: the test does not exercise pushing down", moved)
	}
	t.Logf("%d batches, %d keys, %d stored leaves moved", batches, len(known), moved)
}

func writeEqual(a, b NodeWrite) bool {
	return a.ID == b.ID && a.Delete == b.Delete && a.Node.Leaf == b.Node.Leaf && a.Node.Hash == b.Node.Hash &&
		a.Node.Key == b.Node.Key && bytes.Equal(a.Node.Value, b.Node.Value)
}

// refRootOf computes the root of m's leaves by definition (refRoot).
func refRootOf(t *testing.T, m *MemStore) Hash {
	t.Helper()
	leaves := make(map[Key][]byte)
	for _, n := range m.nodes {
		if n.Leaf {
			if _, dup := leaves[n.Key]; dup {
				t.Fatalf("key %x stored in two leaves", n.Key[:])
			}
			leaves[n.Key] = n.Value
		}
	}
	return refRoot(leaves)
}

// failingReader fails its nth read.
type failingReader struct {
	NodeReader
	n, reads int
}

var errRead = errors.New("disk on fire")

func (f *failingReader) ReadNode(id NodeID) (Node, bool, error) {
	f.reads++
	if f.reads == f.n {
		return Node{}, false, errRead
	}
	return f.NodeReader.ReadNode(id)
}

// TestApplyFailsOnEveryRead: whichever read fails, Apply returns its error
// and no writes.
func TestApplyFailsOnEveryRead(t *testing.T) {
	m := NewMemStore()
	var ups []Update
	for i := range uint64(500) {
		ups = append(ups, Update{Key: keyOf(i), Value: []byte{byte(i)}})
	}
	apply(t, m, ups)
	ups = ups[:0]
	for i := range uint64(50) {
		ups = append(ups, Update{Key: keyOf(1000 + i), Value: []byte{1}}, Update{Key: keyOf(i * 7), Value: []byte{2}})
	}
	count := &failingReader{NodeReader: m}
	if _, _, err := Apply(count, ups); err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= count.reads; n++ {
		_, w, err := Apply(&failingReader{NodeReader: m, n: n}, ups)
		if !errors.Is(err, errRead) || w != nil {
			t.Fatalf("read %d of %d failing: error %v, %d writes", n, count.reads, err, len(w))
		}
	}
}

// TestApplyRefusesAnInnerNodeAtTheBottom: a stored tree with an inner node
// where only a leaf can be (depth 256, a corrupt store) gets an error, not
// a walk past the key's last bit.
func TestApplyRefusesAnInnerNodeAtTheBottom(t *testing.T) {
	k := keyOf(1)
	m := NewMemStore()
	var w []NodeWrite
	for d := 0; d <= KeyBits; d++ {
		w = append(w, NodeWrite{ID: nodeIDOf(k, d), Node: Node{Hash: Hash{1}}})
	}
	m.Write(w)
	if _, _, err := Apply(m, []Update{{Key: k, Value: []byte{1}}}); err == nil || !strings.Contains(err.Error(), "no place for key") {
		t.Fatalf("error %v, want no place for the key", err)
	}
}
