package ledger

import (
	"context"
	"crypto/rand"
	"testing"

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
