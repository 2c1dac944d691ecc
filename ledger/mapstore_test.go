package ledger

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"reflect"
	"testing"

	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/vindex"
)

// byteNodes is a storage.MapNodeReader over nodes stored by ID bytes, as a
// driver keeps them; it counts its reads.
type byteNodes struct {
	nodes map[string][]byte
	reads int
}

func (b *byteNodes) MapNodes(_ context.Context, ids [][]byte) ([][]byte, error) {
	b.reads++
	out := make([][]byte, len(ids))
	for i, id := range ids {
		out[i] = b.nodes[string(id)]
	}
	return out, nil
}

func (b *byteNodes) write(writes []vindex.NodeWrite) {
	for _, w := range writes {
		if w.Delete {
			delete(b.nodes, string(w.ID.Bytes()))
		} else {
			b.nodes[string(w.ID.Bytes())] = w.Node.Marshal()
		}
	}
}

func randomUpdates(t *testing.T, n int) []vindex.Update {
	t.Helper()
	out := make([]vindex.Update, n)
	for i := range out {
		if _, err := rand.Read(out[i].Key[:]); err != nil {
			t.Fatal(err)
		}
		out[i].Value = []byte{byte(i), byte(i >> 8)}
	}
	return out
}

// TestNodeCacheAgreesAndBatches: the map read through nodeCache (a
// driver's node store, read in batches) gives the same roots, writes and
// proofs as the tree read node by node, and once the paths of the keys
// are prefetched, folding or proving them reads nothing more: a fold is a
// few batched reads per tree level, a lookup's proof one or two reads,
// not one database round trip per node.
func TestNodeCacheAgreesAndBatches(t *testing.T) {
	ctx := t.Context()
	mem, store := vindex.NewMemStore(), &byteNodes{nodes: map[string][]byte{}}
	for round, n := range []int{1, 500, 3000, 1000} {
		updates := randomUpdates(t, n)
		if round == 3 {
			updates = append(updates, vindex.Update{Key: updates[0].Key, Value: []byte("again")})
		}
		wantRoot, wantWrites, err := vindex.Apply(mem, updates)
		if err != nil {
			t.Fatal(err)
		}
		cache := newNodeCache(ctx, store)
		keys := make([]vindex.Key, len(updates))
		for i, u := range updates {
			keys[i] = u.Key
		}
		if err := cache.prefetch(keys); err != nil {
			t.Fatal(err)
		}
		prefetched := cache.reads
		root, writes, err := vindex.Apply(cache, updates)
		if err != nil {
			t.Fatal(err)
		}
		if root != wantRoot || len(writes) != len(wantWrites) {
			t.Fatalf("round %d: root %x with %d writes, want %x with %d", round, root, len(writes), wantRoot, len(wantWrites))
		}
		if cache.reads != prefetched {
			t.Fatalf("round %d: %d reads after the prefetch of %d keys (%d before)", round, cache.reads-prefetched, n, prefetched)
		}
		mem.Write(wantWrites)
		store.write(writes)
	}
	// A lookup's proof of one key, present or absent.
	for i, key := range append([]vindex.Key{randomUpdates(t, 1)[0].Key}, randomUpdates(t, 1)[0].Key) {
		want, _, err := vindex.Prove(mem, key)
		if err != nil {
			t.Fatal(err)
		}
		cache := newNodeCache(ctx, store)
		if err := cache.prefetch([]vindex.Key{key}); err != nil {
			t.Fatal(err)
		}
		got, _, err := vindex.Prove(cache, key)
		if err != nil {
			t.Fatal(err)
		}
		if got.Depth != want.Depth || len(got.Siblings) != len(want.Siblings) {
			t.Fatalf("proof %d: depth %d with %d siblings, want %d with %d", i, got.Depth, len(got.Siblings), want.Depth, len(want.Siblings))
		}
		if cache.reads > 2 {
			t.Fatalf("a proof in a map of 4,500 keys took %d reads, want at most 2", cache.reads)
		}
	}
}

// TestProofCacheReadsWherePathsEnd: a lookup's proofs read their keys'
// paths down to where a map of its size has them end (pathsEnd), not 32
// levels of which most are below every leaf: on a map of 20,000 keys
// about 40 node IDs a proof where a read of 32 levels asks for 63. Paths
// that go deeper, present keys and absent ones, keys made to share long
// prefixes with a stored key among them, give the proofs the map gives,
// in at most one read more than 32 levels a read took, however deep.
func TestProofCacheReadsWherePathsEnd(t *testing.T) {
	ctx := t.Context()
	const n = 20_000
	mem, store := vindex.NewMemStore(), &byteNodes{nodes: map[string][]byte{}}
	updates := randomUpdates(t, n)
	// Keys sharing their first 40, 64 and 200 bits with a stored key: the
	// deepest paths an attacker grinding keys could make, and deeper.
	for i, bits := range []int{40, 64, 200} {
		k := updates[i].Key
		k[bits/8] ^= 0x80 >> (bits % 8)
		updates = append(updates, vindex.Update{Key: k, Value: []byte("deep")})
	}
	_, writes, err := vindex.Apply(mem, updates)
	if err != nil {
		t.Fatal(err)
	}
	mem.Write(writes)
	store.write(writes)

	var keys []vindex.Key
	for i := range 3 {
		keys = append(keys, updates[i].Key, updates[n+i].Key) // the deep pairs
	}
	for _, u := range updates[3:203] {
		keys = append(keys, u.Key) // present
	}
	for _, u := range randomUpdates(t, 200) {
		keys = append(keys, u.Key) // absent
	}
	ids, reads := 0, 0
	for i, key := range keys {
		want, wantValue, err := vindex.Prove(mem, key)
		if err != nil {
			t.Fatal(err)
		}
		cache := newProofCache(ctx, store, n, 1)
		if err := cache.prefetch([]vindex.Key{key}); err != nil {
			t.Fatal(err)
		}
		prefetched := cache.reads
		got, value, err := vindex.Prove(cache, key)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) || !bytes.Equal(value, wantValue) {
			t.Fatalf("key %d: the proof read through the cache differs from the map's", i)
		}
		if cache.reads != prefetched {
			t.Fatalf("key %d (depth %d): %d reads after the prefetch", i, want.Depth, cache.reads-prefetched)
		}
		if i < 6 {
			old := newNodeCache(ctx, store) // 32 levels a read
			if err := old.prefetch([]vindex.Key{key}); err != nil {
				t.Fatal(err)
			}
			t.Logf("a path %d levels deep: %d reads (32 levels a read: %d)", want.Depth, cache.reads, old.reads)
			if cache.reads > old.reads+1 {
				t.Errorf("a path %d levels deep took %d reads, 32 levels a read %d", want.Depth, cache.reads, old.reads)
			}
			continue
		}
		ids += cache.ids
		reads += cache.reads
	}
	perProof := float64(ids) / float64(len(keys)-6)
	t.Logf("pathsEnd(%d) = %d: %.1f node IDs and %.2f reads a proof", n, pathsEnd(n), perProof, float64(reads)/float64(len(keys)-6))
	if perProof > 45 {
		t.Errorf("%.1f node IDs read a proof, want about 2×%d", perProof, pathsEnd(n))
	}
}

// viewOnly is a MapStore that only answers MapView: st, and its nodes from
// r, counting the node IDs read.
type viewOnly struct {
	storage.MapStore
	st  storage.MapState
	r   storage.MapNodeReader
	ids *int
}

func (v viewOnly) MapView(_ context.Context, fn func(storage.MapState, storage.MapNodeReader) error) error {
	return fn(v.st, countIDs{v.r, v.ids})
}

type countIDs struct {
	r   storage.MapNodeReader
	ids *int
}

func (c countIDs) MapNodes(ctx context.Context, ids [][]byte) ([][]byte, error) {
	*c.ids += len(ids)
	return c.r.MapNodes(ctx, ids)
}

// TestProofsReadWherePathsEnd: a verify's lookup (proofs) reads its keys'
// paths to where a map of the stored state's size has them end, as
// TestProofCacheReadsWherePathsEnd has the cache do (helper-100: lookups
// built as before, or told the map is empty, passed every test).
func TestProofsReadWherePathsEnd(t *testing.T) {
	const n = 20_000
	store := &byteNodes{nodes: map[string][]byte{}}
	_, writes, err := vindex.Apply(vindex.NewMemStore(), randomUpdates(t, n))
	if err != nil {
		t.Fatal(err)
	}
	store.write(writes)
	ids := 0
	m := viewOnly{st: storage.MapState{Position: n, Root: &storage.MapRoot{Index: n}}, r: store, ids: &ids}
	const lookups = 100
	for i := range lookups {
		d := notarize.Digest(fmt.Sprintf("sha256:%064x", i))
		if _, got, err := proofs(t.Context(), m, d, []string{"k1"}); err != nil || len(got) != 1 {
			t.Fatalf("proofs: %d, %v", len(got), err)
		}
	}
	perProof := float64(ids) / lookups
	t.Logf("%.1f node IDs a lookup (pathsEnd(%d) = %d)", perProof, n, pathsEnd(n))
	if perProof > 45 {
		t.Errorf("%.1f node IDs read a lookup, want about 2×%d", perProof, pathsEnd(n))
	}
}
