package posix

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"syscall"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/storage"
	bolt "go.etcd.io/bbolt"
)

// BenchmarkIndexWrite measures the follower's index writes: rows of random
// statements (random identity and digest, one of 16 keys, 900 bytes of
// entry) written in batches of 32, as the follower writes a Tessera batch,
// into an index already holding 20,000 rows. ns/op, B/op and allocs/op are
// per row (ns/op is mostly waiting for fdatasync: one per batch); cpu-us/row
// is the process's CPU time (getrusage) per row, pages-B/row the bytes of
// the pages the index's buckets take, per row.
//
//	go test -run '^$' -bench IndexWrite -benchmem ./ledger/storage/posix/
//
// It runs on each engine (sub-benchmarks bbolt and pebble); for pebble,
// pages-B/row is the bytes of its files on disk after a flush, per row.
func BenchmarkIndexWrite(b *testing.B) {
	for _, e := range engines {
		b.Run(e.name, func(b *testing.B) { benchmarkIndexWrite(b, e.open) })
	}
}

func benchmarkIndexWrite(b *testing.B, open func(string) (indexCloser, error)) {
	const batch, prefill = 32, 20000
	ix, err := open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer ix.close()
	keys := make([][]byte, 16)
	for i := range keys {
		k := sha256.Sum256([]byte{byte(i)})
		keys[i] = k[:]
	}
	data := make([]byte, 900)
	rows := func(n int) []storage.Row {
		out := make([]storage.Row, n)
		for i := range out {
			r := storage.Row{ID: make([]byte, 32), Digest: make([]byte, 32), KeyID: keys[i%len(keys)], Data: data, Status: 1}
			_, _ = rand.Read(r.ID)
			_, _ = rand.Read(r.Digest)
			binary.BigEndian.PutUint64(r.Stamp[:], uint64(time.Now().UnixNano()))
			out[i] = r
		}
		return out
	}
	next := uint64(0)
	write := func(rs []storage.Row, batch int) {
		for len(rs) > 0 {
			n := min(batch, len(rs))
			if _, err := ix.Write(b.Context(), next, rs[:n]); err != nil {
				b.Fatal(err)
			}
			next += uint64(n)
			rs = rs[n:]
		}
	}
	write(rows(prefill), 4096)
	todo := rows(b.N)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	write(todo, batch)
	cpu := processCPU(b) - cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(b.N), "cpu-us/row")
	b.ReportMetric(float64(pagesOf(b, ix))/float64(prefill+b.N), "pages-B/row")
}

// processCPU returns the CPU time (user + system) the process used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pagesOf is the bytes of the pages (branch, leaf and overflow) of all the
// index's buckets.
func pagesOf(b *testing.B, x indexCloser) int {
	if p, ok := x.(*pebbleIndex); ok {
		if err := p.s.DB().Flush(); err != nil {
			b.Fatal(err)
		}
		return int(p.s.DB().Metrics().DiskSpaceUsage())
	}
	ix := x.(*index)
	n := 0
	err := ix.db.View(func(tx *bolt.Tx) error {
		for _, name := range boltBuckets {
			st := tx.Bucket(name).Stats()
			n += st.BranchAlloc + st.LeafAlloc
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}
