package ledger

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
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

// foldMapDir returns a pebble map of FOLD_KEYS random keys (200,000
// unless set), built in FOLD_MAP when that is set and empty (kept there
// between runs), in a temporary directory otherwise; flushed and
// compacted.
func foldMapDir(b *testing.B) string {
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
	for pos := st.Position; pos < uint64(keys); pos += 10_000 {
		if err := m.MapUpdate(ctx, foldCommit(ctx, randomKeys(rng, int(min(10_000, uint64(keys)-pos))), nil, nil, nil)); err != nil {
			b.Fatal(err)
		}
	}
	if err := m.s.DB().Compact(ctx, []byte{mapPfxNodes}, []byte{mapPfxNodes + 1}, true); err != nil {
		b.Fatal(err)
	}
	return dir
}

// randomKeys returns n keys drawn from rng.
func randomKeys(rng *mrand.Rand, n int) []vindex.Key {
	out := make([]vindex.Key, n)
	for i := range out {
		for j := 0; j < len(out[i]); j += 8 {
			binary.BigEndian.PutUint64(out[i][j:], rng.Uint64())
		}
	}
	return out
}

// storeIDs counts the node IDs read from the store.
type storeIDs struct {
	r storage.MapNodeReader
	n *int
}

func (s storeIDs) MapNodes(ctx context.Context, ids [][]byte) ([][]byte, error) {
	*s.n += len(ids)
	return s.r.MapNodes(ctx, ids)
}

// foldCommit returns a MapUpdate function that folds keys (one statement
// each, as mapFollower.fold does: paths prefetched, values read,
// vindex.Apply) over the stored map, read through top, and commits the
// writes; done receives the commit, and read counts the node IDs read
// from the store.
func foldCommit(ctx context.Context, keys []vindex.Key, top *topNodes, done **storage.MapCommit, read *int) func(storage.MapState, storage.MapNodeReader) (*storage.MapCommit, error) {
	return func(st storage.MapState, r storage.MapNodeReader) (*storage.MapCommit, error) {
		if read != nil {
			r = storeIDs{r: r, n: read}
		}
		nodes := newNodeCache(ctx, top.over(r, st.Position))
		_, writes, err := foldKeys(nodes, st.Position, keys)
		if err != nil {
			return nil, err
		}
		c := &storage.MapCommit{From: st.Position, Position: st.Position + uint64(len(keys))}
		for _, w := range writes {
			c.Writes = append(c.Writes, storage.MapNodeWrite{ID: w.ID.Bytes(), Node: w.Node.Marshal(), Delete: w.Delete})
		}
		if done != nil {
			*done = c
		}
		return c, nil
	}
}

// foldKeys folds one statement for each of keys (as its key ID, about one
// digest: keys spread as digests do) into the map nodes reads, at
// position, as mapFollower.fold does.
func foldKeys(nodes *nodeCache, position uint64, keys []vindex.Key) (vindex.Hash, []vindex.NodeWrite, error) {
	d := notarize.DigestOf([]byte("fold"))
	keyIDs := make([]string, len(keys))
	mapKeys := make([]vindex.Key, len(keys))
	for i, k := range keys {
		keyIDs[i] = fmt.Sprintf("%x", k[:])
		mapKeys[i] = vindex.MapKey(d, keyIDs[i])
	}
	nodes.reserve(position, len(keys))
	if err := nodes.prefetch(mapKeys); err != nil {
		return vindex.Hash{}, nil, err
	}
	batch := vindex.NewBatch(nodes)
	for i := range keys {
		if err := batch.AddStatement(position+uint64(i), d, keyIDs[i], time.Unix(1e9, 0), vindex.Hash{}); err != nil {
			return vindex.Hash{}, nil, err
		}
	}
	return vindex.Apply(nodes, batch.Updates())
}

// warmMap reads every node of the map in db once, as a running ledger's
// block cache holds them (the map fits in it).
func warmMap(b *testing.B, db *pebble.DB) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{mapPfxNodes}, UpperBound: []byte{mapPfxNodes + 1}})
	if err != nil {
		b.Fatal(err)
	}
	for it.First(); it.Valid(); it.Next() {
	}
	if err := it.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFoldMap is the map's share of a fold, per statement: batches
// of 1,024 new keys folded into a pebble map (foldMapDir: FOLD_KEYS keys,
// kept in FOLD_MAP) as mapFollower.fold does it (the keys' paths
// prefetched, the batch's values read, vindex.Apply), read from one
// snapshot, warm, nothing committed.
//
//	FOLD_KEYS=1000000 FOLD_MAP=/tmp/foldmap go test -run '^$' -bench FoldMap -benchtime 40960x ./ledger/
func BenchmarkFoldMap(b *testing.B) {
	ctx := b.Context()
	m, err := openPebbleMapStore(foldMapDir(b))
	if err != nil {
		b.Fatal(err)
	}
	defer m.close()
	warmMap(b, m.s.DB())
	rng := mrand.New(mrand.NewPCG(3, 4))
	writes := 0
	b.ResetTimer()
	for i := 0; i < b.N; i += 1024 {
		keys := randomKeys(rng, min(1024, b.N-i))
		if err := m.MapView(ctx, func(st storage.MapState, r storage.MapNodeReader) error {
			_, w, err := foldKeys(newNodeCache(ctx, r), st.Position, keys)
			writes += len(w)
			return err
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
}

// BenchmarkFoldCommit is a fold's map work under ingest, per statement:
// batches of 1,024 new keys folded into a copy of the map foldMapDir
// builds and committed (pebble.Sync), as the follower's updates do, with
// the map's top levels read from the store ("store") or kept in memory
// ("top", topNodes), in the same run. It reports the process's CPU time
// per statement (cpu-us/op: the fold, the commit, pebble's flushes and
// compactions meanwhile), which is what ingest pays for it, and the node
// IDs read from the store per statement (store-ids/op).
//
//	FOLD_KEYS=1000000 FOLD_MAP=/tmp/foldmap go test -run '^$' -bench FoldCommit -benchtime 307200x -count 2 ./ledger/
func BenchmarkFoldCommit(b *testing.B) {
	src := foldMapDir(b)
	for _, way := range []string{"store", "top"} {
		b.Run(way, func(b *testing.B) {
			ctx := b.Context()
			dir := filepath.Join(b.TempDir(), "map")
			if out, err := exec.Command("cp", "-a", src, dir).CombinedOutput(); err != nil {
				b.Fatalf("copy the map: %v: %s", err, out)
			}
			m, err := openPebbleMapStore(dir)
			if err != nil {
				b.Fatal(err)
			}
			defer m.close()
			warmMap(b, m.s.DB())
			var top *topNodes
			if way == "top" {
				top = &topNodes{}
			}
			rng := mrand.New(mrand.NewPCG(5, 6))
			read := 0
			b.ResetTimer()
			cpu0 := processCPU(b)
			for i := 0; i < b.N; i += 1024 {
				var done *storage.MapCommit
				if err := m.MapUpdate(ctx, foldCommit(ctx, randomKeys(rng, min(1024, b.N-i)), top, &done, &read)); err != nil {
					b.Fatal(err)
				}
				top.committed(done)
			}
			b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
			b.ReportMetric(float64(read)/float64(b.N), "store-ids/op")
		})
	}
}
