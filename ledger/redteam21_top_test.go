package ledger

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/vindex"
)

// redteam21: probes of topNodes (mapstore_top.go).

// memMap is a byte-keyed node store, as pebble and bbolt are, with a
// position; commit applies a MapCommit as MapUpdate does.
type memMap struct {
	pos   uint64
	nodes map[string][]byte
	asked int
}

func (m *memMap) MapNodes(_ context.Context, ids [][]byte) ([][]byte, error) {
	out := make([][]byte, len(ids))
	for i, id := range ids {
		if v, ok := m.nodes[string(id)]; ok {
			out[i] = bytes.Clone(v)
		}
		m.asked++
	}
	return out, nil
}

// ReadNode implements vindex.NodeReader (for building the map).
func (m *memMap) ReadNode(id vindex.NodeID) (vindex.Node, bool, error) {
	v, ok := m.nodes[string(id.Bytes())]
	if !ok {
		return vindex.Node{}, false, nil
	}
	n, err := vindex.UnmarshalNode(v)
	return n, err == nil, err
}

func (m *memMap) commit(c *storage.MapCommit) {
	for _, w := range c.Writes {
		if w.Delete {
			delete(m.nodes, string(w.ID))
		} else {
			m.nodes[string(w.ID)] = bytes.Clone(w.Node)
		}
	}
	m.pos = c.Position
}

func rt21Keys(t testing.TB, n int) []vindex.Key {
	keys := make([]vindex.Key, n)
	for i := range keys {
		if _, err := rand.Read(keys[i][:]); err != nil {
			t.Fatal(err)
		}
	}
	slices.SortFunc(keys, func(a, b vindex.Key) int { return bytes.Compare(a[:], b[:]) })
	return keys
}

// rt21Fold folds keys into the map read through r, as mapFollower.fold
// does (reserve, prefetch, a Get of each key, Apply), and returns the
// commit from from to to and the node IDs the fold's cache asked r for.
func rt21Fold(t testing.TB, r storage.MapNodeReader, from, to uint64, keys []vindex.Key) (*storage.MapCommit, int) {
	t.Helper()
	nodes := newNodeCache(t.Context(), r)
	nodes.reserve(from, len(keys))
	if err := nodes.prefetch(keys); err != nil {
		t.Fatal(err)
	}
	value := vindex.Value{Count: 1}.Marshal()
	ups := make([]vindex.Update, len(keys))
	for i, k := range keys {
		if _, _, err := vindex.Get(nodes, k); err != nil {
			t.Fatal(err)
		}
		ups[i] = vindex.Update{Key: k, Value: value}
	}
	_, writes, err := vindex.Apply(nodes, ups)
	if err != nil {
		t.Fatal(err)
	}
	c := &storage.MapCommit{From: from, Position: to}
	for _, w := range writes {
		c.Writes = append(c.Writes, storage.MapNodeWrite{ID: w.ID.Bytes(), Node: w.Node.Marshal(), Delete: w.Delete})
	}
	return c, nodes.ids
}

// TestRedteam21TopNodesDocClaim measures what the type comment claims
// (folds of 1,024 keys into a map of 1,000,000 read about 20 node IDs a
// statement from the store, about 9 with the kept levels warm), and
// requires the warm kept levels to answer at least a third of a fold's
// reads. The map is of RT21_KEYS keys (default 40,000, small for the
// race detector; topDepth keeps the same gap to log2(n) at 1,000,000),
// one key per position.
func TestRedteam21TopNodesDocClaim(t *testing.T) {
	n := 40_000
	if s := os.Getenv("RT21_KEYS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	m := &memMap{nodes: make(map[string][]byte)}
	for done := 0; done < n; {
		b := min(65536, n-done)
		c, _ := rt21Fold(t, m, m.pos, m.pos+uint64(b), rt21Keys(t, b))
		m.commit(c)
		done += b
	}
	top := &topNodes{}
	// One fold warms the kept levels (partly); then every stored node at a
	// kept level is read once (as a long-running follower has); the next
	// folds are measured.
	c, _ := rt21Fold(t, top.over(m, m.pos), m.pos, m.pos+1024, rt21Keys(t, 1024))
	m.commit(c)
	top.committed(c)
	var kept [][]byte
	for id := range m.nodes {
		if d, _ := idDepth([]byte(id)); d <= topDepth(m.pos) {
			kept = append(kept, []byte(id))
		}
	}
	if _, err := top.over(m, m.pos).MapNodes(t.Context(), kept); err != nil {
		t.Fatal(err)
	}
	var fromStore, fromCache, missed, hit int
	for range 4 {
		before, misses, hits := m.asked, top.misses, top.hits
		c, asked := rt21Fold(t, top.over(m, m.pos), m.pos, m.pos+1024, rt21Keys(t, 1024))
		fromStore += m.asked - before
		fromCache += asked
		missed += top.misses - misses
		hit += top.hits - hits
		m.commit(c)
		top.committed(c)
	}
	t.Logf("map of %d keys, topDepth %d, pathsEnd %d, %d kept nodes: a fold of 1,024 keys asks %.1f node IDs a key; %.1f answered from memory, %.1f read from the store (%.2f of them kept-level misses)",
		n, topDepth(m.pos), pathsEnd(m.pos), len(top.nodes), float64(fromCache)/4096, float64(hit)/4096, float64(fromStore)/4096, float64(missed)/4096)
	if 3*hit < fromCache {
		t.Fatalf("the kept levels answered %d of %d node IDs", hit, fromCache)
	}
}

// TestRedteam21TopNodesDepthGrows: a commit that moves the map past a
// power of two makes one more level kept; the writes at that level are not
// kept by committed, and a read of them after it must give the store's.
func TestRedteam21TopNodesDepthGrows(t *testing.T) {
	ctx := t.Context()
	id := func(depth int, prefix byte) []byte {
		return append(binary.BigEndian.AppendUint16(nil, uint16(depth)), prefix)
	}
	m := &memMap{pos: 127, nodes: map[string][]byte{string(id(4, 0x10)): []byte("old4")}}
	top := &topNodes{}
	if d := topDepth(127); d != 3 {
		t.Fatalf("topDepth(127) = %d", d)
	}
	if _, err := top.over(m, 127).MapNodes(ctx, [][]byte{id(3, 0x10), id(4, 0x10)}); err != nil {
		t.Fatal(err)
	}
	c := &storage.MapCommit{From: 127, Position: 128, Writes: []storage.MapNodeWrite{{ID: id(4, 0x10), Node: []byte("new4")}, {ID: id(3, 0x10), Node: []byte("new3")}}}
	m.commit(c)
	top.committed(c)
	if top.depth != 4 {
		t.Fatalf("depth %d after the commit to 128", top.depth)
	}
	got, err := top.over(m, 128).MapNodes(ctx, [][]byte{id(4, 0x10), id(3, 0x10)})
	if err != nil {
		t.Fatal(err)
	}
	if string(got[0]) != "new4" || string(got[1]) != "new3" {
		t.Fatalf("after the depth grew: %q", got)
	}
	// and the level-4 node read now is kept, with the store's value
	asked := m.asked
	got, _ = top.over(m, 128).MapNodes(ctx, [][]byte{id(4, 0x10)})
	if string(got[0]) != "new4" || m.asked != asked {
		t.Fatalf("second read: %q, %d asked", got, m.asked-asked)
	}
}

// TestRedteam21TopNodesConcurrentReadersAndCommit: readers of the
// position before a commit, racing with it, never leave a node of the old
// position in the cache for the new one (run with -race).
func TestRedteam21TopNodesConcurrentReadersAndCommit(t *testing.T) {
	ctx := t.Context()
	root := []byte{0, 0}
	for round := range 200 {
		old := &countNodes{nodes: map[string][]byte{string(root): []byte("old")}}
		top := &topNodes{}
		r := top.over(old, 100)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if _, err := r.MapNodes(ctx, [][]byte{root}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		top.committed(&storage.MapCommit{From: 100, Position: 200}) // a commit that does not write the root: only possible if the root was not changed
		wg.Wait()
		fresh := &countNodes{nodes: map[string][]byte{string(root): []byte("old")}}
		got, _ := top.over(fresh, 200).MapNodes(ctx, [][]byte{root})
		if string(got[0]) != "old" {
			t.Fatalf("round %d: %q", round, got[0])
		}
		// A root written by the commit is never overwritten by the old reader.
		top2 := &topNodes{}
		r2 := top2.over(old, 100)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				r2.MapNodes(ctx, [][]byte{root})
			}
		}()
		top2.committed(&storage.MapCommit{From: 100, Position: 200, Writes: []storage.MapNodeWrite{{ID: root, Node: []byte("new")}}})
		wg.Wait()
		newStore := &countNodes{nodes: map[string][]byte{string(root): []byte("new")}}
		got, _ = top2.over(newStore, 200).MapNodes(ctx, [][]byte{root})
		if string(got[0]) != "new" {
			t.Fatalf("round %d: an old reader left %q in the cache after the commit", round, got[0])
		}
	}
}

// TestRedteam21TopNodesHitsAreShared: a MapNodeReader of a store hands out
// fresh slices (boltNodes and pebbleNodes copy every value), but topReader
// hands out the slice it keeps: a caller that writes into a value it was
// given changes what every later fold reads at that node, without the
// store changing. No caller writes into one today (nodeCache.fetch
// unmarshals, vindex.UnmarshalNode copies); this test fails to show the
// contract differs from the store's. Failed on be25aea; a hit is now a
// copy.
func TestRedteam21TopNodesHitsAreShared(t *testing.T) {
	ctx := t.Context()
	root := []byte{0, 0}
	store := &countNodes{nodes: map[string][]byte{string(root): []byte("root@100")}}
	top := &topNodes{}
	if _, err := top.over(store, 100).MapNodes(ctx, [][]byte{root}); err != nil { // fills
		t.Fatal(err)
	}
	got, err := top.over(store, 100).MapNodes(ctx, [][]byte{root}) // a hit
	if err != nil {
		t.Fatal(err)
	}
	got[0][0] = 'X' // a caller scribbles on what it was given
	again, _ := top.over(store, 100).MapNodes(ctx, [][]byte{root})
	if string(again[0]) != "root@100" {
		t.Fatalf("the kept node now reads %q; the store holds %q", again[0], store.nodes[string(root)])
	}
}

// TestRedteam21TopNodesMemory measures the heap of a full topNodes at
// maxTopDepth (2^18-1 IDs, every one an inner node): topDepth's comment
// says ~38 MiB (it said ~25 when this test was written; 38.0 measured).
func TestRedteam21TopNodesMemory(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	top := &topNodes{valid: true, depth: maxTopDepth, nodes: make(map[string][]byte)}
	inner := vindex.Node{}
	for d := 0; d <= maxTopDepth; d++ {
		for i := range 1 << d {
			id := vindex.NodeID{Depth: d}
			binary.BigEndian.PutUint32(id.Prefix[:4], uint32(i)<<(32-max(d, 1)))
			top.nodes[string(id.Bytes())] = inner.Marshal()
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	mib := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
	runtime.KeepAlive(top)
	if mib > 42 {
		t.Fatalf("%d IDs take %.1f MiB; topDepth's comment says ~38 MiB", len(top.nodes), mib)
	}
}

// TestRedteam21TopOldReaderReadsItsSnapshot: a reader made before a
// commit, still used after it, reads its own snapshot, not the nodes the
// commit moved topNodes to (the hit path's generation check; without it
// the reader would mix two positions). Passes on the current code; kills
// the mutant that drops `live &&` from the hit path, which
// TestTopNodesHoldOnlyTheirPosition lets live.
func TestRedteam21TopOldReaderReadsItsSnapshot(t *testing.T) {
	ctx := t.Context()
	root := []byte{0, 0}
	snap100 := &countNodes{nodes: map[string][]byte{string(root): []byte("root@100")}}
	top := &topNodes{}
	old := top.over(snap100, 100)
	if _, err := old.MapNodes(ctx, [][]byte{root}); err != nil { // fills at 100
		t.Fatal(err)
	}
	top.committed(&storage.MapCommit{From: 100, Position: 120, Writes: []storage.MapNodeWrite{{ID: root, Node: []byte("root@120")}}})
	got, err := old.MapNodes(ctx, [][]byte{root})
	if err != nil {
		t.Fatal(err)
	}
	if string(got[0]) != "root@100" {
		t.Fatalf("a reader of the snapshot at 100 read %q after the commit to 120", got[0])
	}
}
