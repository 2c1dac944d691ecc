package vindex

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// recReader counts the reads of each node.
type recReader struct {
	NodeReader
	reads map[NodeID]int
}

func (r *recReader) ReadNode(id NodeID) (Node, bool, error) {
	r.reads[id]++
	return r.NodeReader.ReadNode(id)
}

// rtSafe applies writes over a copy of m and requires every updated key
// to prove its last value against root.
func rtSafe(m *MemStore, root Hash, writes []NodeWrite, ups []Update) error {
	mm := NewMemStore()
	for id, n := range m.nodes {
		mm.nodes[id] = n
	}
	mm.Write(writes)
	last := map[Key][]byte{}
	for _, u := range ups {
		last[u.Key] = u.Value
	}
	for k, v := range last {
		p, got, err := Prove(mm, k)
		if err != nil {
			return fmt.Errorf("prove %x: %v", k[:1], err)
		}
		if !bytes.Equal(got, v) || got == nil && v != nil {
			return fmt.Errorf("key %x: value %x want %x", k[:1], got, v)
		}
		if _, err := p.Verify(root, k); err != nil {
			return fmt.Errorf("verify %x: %v", k[:1], err)
		}
	}
	return nil
}

// TestRedteam21CorruptStores: valid trees over a small key pool (keys
// sharing prefixes and 254-255 bits), then 0-2 corruptions (a zero node,
// an inner node with a made-up hash, a leaf of any pool key, maybe off its
// path, at depth 0-6 or 254-256, or a node removed), then a batch. Apply
// never panics, never changes the updates, orders its writes strictly by
// ID, and on an uncorrupted tree matches the reference exactly. On
// corrupt trees the outcomes are counted (see the log), not asserted.
func TestRedteam21CorruptStores(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 1))
	stats := map[string]int{}
	for iter := range 5000 {
		pool := make([]Key, 12)
		for i := range pool {
			pool[i][0] = byte(rng.IntN(256)) & 0xf0
			pool[i][31] = byte(rng.IntN(4))
		}
		m := NewMemStore()
		var base []Update
		for range rng.IntN(6) {
			base = append(base, Update{Key: pool[rng.IntN(len(pool))], Value: []byte{byte(rng.IntN(3))}})
		}
		_, w, err := refApply(m, base)
		if err != nil {
			t.Fatal(err)
		}
		m.Write(w)
		corrupt := rng.IntN(3)
		for range corrupt {
			d := rng.IntN(7)
			if rng.IntN(8) == 0 {
				d = KeyBits - rng.IntN(3)
			}
			id := nodeIDOf(pool[rng.IntN(len(pool))], d)
			switch rng.IntN(4) {
			case 0:
				m.nodes[id] = Node{}
			case 1:
				m.nodes[id] = Node{Hash: Hash{byte(rng.IntN(255) + 1)}}
			case 2:
				lk := pool[rng.IntN(len(pool))]
				m.nodes[id] = Node{Leaf: true, Key: lk, Value: []byte{9}, Hash: HashLeaf(lk, HashValue([]byte{9}))}
			case 3:
				delete(m.nodes, id)
			}
		}
		var ups []Update
		for range rng.IntN(5) {
			var v []byte
			if rng.IntN(3) > 0 {
				v = []byte{byte(10 + rng.IntN(3))}
			}
			ups = append(ups, Update{Key: pool[rng.IntN(len(pool))], Value: v})
		}
		orig := slices.Clone(ups)
		wroot, want, werr := refApply(m, ups)
		var root Hash
		var got []NodeWrite
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("iter %d: panic %v", iter, p)
				}
			}()
			root, got, err = Apply(m, ups)
		}()
		if !slices.EqualFunc(ups, orig, func(a, b Update) bool { return a.Key == b.Key && bytes.Equal(a.Value, b.Value) }) {
			t.Fatalf("iter %d: updates changed", iter)
		}
		for i := 1; err == nil && i < len(got); i++ {
			if compareIDs(got[i-1].ID, got[i].ID) >= 0 {
				t.Fatalf("iter %d: writes not strictly ordered", iter)
			}
		}
		same := (err != nil) == (werr != nil) && root == wroot && slices.EqualFunc(got, want, writeEqual)
		if corrupt == 0 && !same {
			t.Fatalf("iter %d: valid tree, differs from the reference", iter)
		}
		switch {
		case same:
			stats["same"]++
		case err != nil:
			stats["differ: Apply errs"]++
		case werr != nil:
			stats["differ: reference errs"]++
		default:
			vis := map[Key][]byte{}
			misplaced := false
			var walk func(id NodeID)
			walk = func(id NodeID) {
				n, ok := m.nodes[id]
				switch {
				case !ok:
				case n.Leaf:
					vis[n.Key] = n.Value
					misplaced = misplaced || commonPrefix(n.Key, id.Prefix) < id.Depth
				case id.Depth < KeyBits:
					walk(id.child(0))
					walk(id.child(1))
				}
			}
			walk(NodeID{})
			for _, u := range ups {
				vis[u.Key] = u.Value
			}
			canon := refRoot(vis)
			stats[fmt.Sprintf("differ: Apply proves %v canon %v, reference proves %v canon %v, misplaced %v", rtSafe(m, root, got, ups) == nil, root == canon, rtSafe(m, wroot, want, ups) == nil, wroot == canon, misplaced)]++
		}
	}
	t.Logf("%v", stats)
}
