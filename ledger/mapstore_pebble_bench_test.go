package ledger

import (
	"crypto/rand"
	"testing"

	"github.com/cockroachdb/pebble/v2"

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
