package ledger

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/vindex"
)

// BenchmarkPebbleMapNodes compares the pebble map's two ways of reading a
// batch of nodes (seekNodes): a Get each, and one iterator prefix-seeked
// in key order. Each op reads what a proof of one key prefetches, its path
// and siblings over 32 levels (63 IDs), from a snapshot of a map of
// -keys random keys (every level's nodes stored, flushed and compacted as
// a migrated map is).
//
//	go test -run '^$' -bench PebbleMapNodes -benchtime 3000x ./ledger/
func BenchmarkPebbleMapNodes(b *testing.B) {
	const keys = 200_000
	m, err := openPebbleMapStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer m.close()
	db := m.s.DB()
	batch := db.NewBatch()
	node := make([]byte, 66)
	for range keys {
		var k vindex.Key
		rand.Read(k[:])
		for d := 0; d <= 24; d++ {
			rand.Read(node)
			if err := batch.Set(mapNodeKey(pathID(k, d).Bytes()), node, nil); err != nil {
				b.Fatal(err)
			}
		}
		if batch.Len() > 32<<20 {
			if err := batch.Commit(pebble.NoSync); err != nil {
				b.Fatal(err)
			}
			batch = db.NewBatch()
		}
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		b.Fatal(err)
	}
	if err := db.Compact(b.Context(), []byte{mapPfxNodes}, []byte{mapPfxNodes + 1}, true); err != nil {
		b.Fatal(err)
	}
	proofIDs := func() [][]byte {
		var k vindex.Key
		rand.Read(k[:])
		var ids [][]byte
		for d := range 32 {
			ids = append(ids, pathID(k, d).Bytes())
			if d > 0 {
				ids = append(ids, siblingID(k, d).Bytes())
			}
		}
		return ids
	}
	for _, way := range []struct {
		name string
		read func(pebbleNodes, [][]byte) ([][]byte, error)
	}{{"get-each", pebbleNodes.getEach}, {"seek-each", pebbleNodes.seekEach}} {
		b.Run(way.name, func(b *testing.B) {
			batches := make([][][]byte, 1024)
			for i := range batches {
				batches[i] = proofIDs()
			}
			found, i := 0, 0
			for b.Loop() {
				s := db.NewSnapshot()
				vals, err := way.read(pebbleNodes{s: s}, batches[i%len(batches)])
				if err != nil {
					b.Fatal(err)
				}
				for _, v := range vals {
					if v != nil {
						found++
					}
				}
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(found)/float64(b.N), "found/op")
			b.ReportMetric(float64(len(batches[0])), "ids/op")
		})
	}
}

// BenchmarkFoldMap is the map's share of a fold, per statement: batches
// of 1,024 new keys folded into a pebble map of FOLD_KEYS keys (200,000
// unless set) as mapFollower.fold does it (the keys' paths prefetched,
// the batch's values read, vindex.Apply), read from one snapshot,
// nothing committed. FOLD_MAP names a directory to keep the map in
// between runs (built there when empty); otherwise it is built in a
// temporary one. The block cache is warmed first, as a running ledger's
// is.
//
//	FOLD_KEYS=1000000 FOLD_MAP=/tmp/foldmap go test -run '^$' -bench FoldMap -benchtime 20480x ./ledger/
func BenchmarkFoldMap(b *testing.B) {
	ctx := b.Context()
	keys := 200_000
	if s := os.Getenv("FOLD_KEYS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		keys = n
	}
	dir := os.Getenv("FOLD_MAP")
	if dir == "" {
		dir = b.TempDir()
	}
	m, err := openPebbleMapStore(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer m.close()
	st, err := m.MapState(ctx)
	if err != nil {
		b.Fatal(err)
	}
	rng := mrand.New(mrand.NewPCG(1, 2))
	randKey := func() vindex.Key {
		var k vindex.Key
		for i := 0; i < len(k); i += 8 {
			binary.BigEndian.PutUint64(k[i:], rng.Uint64())
		}
		return k
	}
	value := vindex.Value{}.Add(1, time.Unix(1e9, 0), vindex.Hash{}).Marshal()
	for pos := st.Position; pos < uint64(keys); pos += 10_000 {
		ups := make([]vindex.Update, 0, 10_000)
		for range min(10_000, uint64(keys)-pos) {
			ups = append(ups, vindex.Update{Key: randKey(), Value: value})
		}
		if err := m.MapUpdate(ctx, func(st storage.MapState, r storage.MapNodeReader) (*storage.MapCommit, error) {
			nodes := newNodeCache(ctx, r)
			ks := make([]vindex.Key, len(ups))
			for i, u := range ups {
				ks[i] = u.Key
			}
			if err := nodes.prefetch(ks); err != nil {
				return nil, err
			}
			_, writes, err := vindex.Apply(nodes, ups)
			if err != nil {
				return nil, err
			}
			c := &storage.MapCommit{From: st.Position, Position: st.Position + uint64(len(ups))}
			for _, w := range writes {
				c.Writes = append(c.Writes, storage.MapNodeWrite{ID: w.ID.Bytes(), Node: w.Node.Marshal()})
			}
			return c, nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	db := m.s.DB()
	if err := db.Compact(ctx, []byte{mapPfxNodes}, []byte{mapPfxNodes + 1}, true); err != nil {
		b.Fatal(err)
	}
	// Warm the block cache (a running ledger's is: the map fits in it).
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{mapPfxNodes}, UpperBound: []byte{mapPfxNodes + 1}})
	if err != nil {
		b.Fatal(err)
	}
	for it.First(); it.Valid(); it.Next() {
	}
	if err := it.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	d := notarize.DigestOf([]byte("fold"))
	writes := 0
	for i := 0; i < b.N; i += 1024 {
		n := min(1024, b.N-i)
		if err := m.MapView(ctx, func(_ storage.MapState, r storage.MapNodeReader) error {
			nodes := newNodeCache(ctx, r)
			keyIDs := make([]string, n) // one digest, n signers: keys spread as digests do
			found := make([]vindex.Key, n)
			for j := range found {
				k := randKey()
				keyIDs[j] = fmt.Sprintf("%x", k[:])
				found[j] = vindex.MapKey(d, keyIDs[j])
			}
			nodes.reserve(uint64(keys), n)
			if err := nodes.prefetch(found); err != nil {
				return err
			}
			batch := vindex.NewBatch(nodes)
			for j := range found {
				if err := batch.AddStatement(uint64(i+j), d, keyIDs[j], time.Unix(1e9, 0), vindex.Hash{}); err != nil {
					return err
				}
			}
			_, w, err := vindex.Apply(nodes, batch.Updates())
			writes += len(w)
			return err
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
}
