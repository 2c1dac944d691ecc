package vindex

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// bigTree builds a map of n keys (values as the ledger stores them), in
// batches as the ledger folds its log.
func bigTree(b *testing.B, n int) *MemStore {
	b.Helper()
	m := NewMemStore()
	const batch = 10000
	v := Value{}.Add(1, time.Unix(1e9, 0), Hash{}).Marshal()
	for i := 0; i < n; i += batch {
		ups := make([]Update, 0, batch)
		for j := i; j < min(n, i+batch); j++ {
			ups = append(ups, Update{Key: keyOf(uint64(j)), Value: v})
		}
		_, w, err := Apply(m, ups)
		if err != nil {
			b.Fatal(err)
		}
		m.Write(w)
	}
	return m
}

// proofBytes is the size of p and its value on the wire, binary: depth,
// bitmap, siblings, the leaf key and value hash, the value (api.KeyMapProof
// in JSON is about 4/3 of it in base64, plus names).
func proofBytes(p *Proof, value []byte) int {
	n := 2 + len(p.Bitmap) + 32*len(p.Siblings) + len(value)
	if p.LeafKey != nil {
		n += 64
	}
	return n
}

// BenchmarkProof1M: the proof of a present and of an absent key in a map of
// 1,000,000 keys — its size (proof-bytes, max-proof-bytes over 1,000 keys)
// and the time to verify one (ns/op).
//
//	go test -run '^$' -bench Proof1M -benchtime 2000x ./vindex/
func BenchmarkProof1M(b *testing.B) {
	m := bigTree(b, 1_000_000)
	root, _ := Root(m)
	total, most := 0, 0
	for i := range uint64(1000) {
		k := keyOf(i * 997)
		if i%2 == 1 {
			k = MapKey(notarize.DigestOf(binary.BigEndian.AppendUint64(nil, i)), "absent")
		}
		p, v, err := Prove(m, k)
		if err != nil {
			b.Fatal(err)
		}
		n := proofBytes(p, v)
		total += n
		most = max(most, n)
	}
	p, _, _ := Prove(m, keyOf(12345))
	b.ResetTimer()
	for range b.N {
		if _, err := p.Verify(root, keyOf(12345)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(total)/1000, "proof-bytes")
	b.ReportMetric(float64(most), "max-proof-bytes")
}

// BenchmarkApply: folding batches of 1,024 new keys into a map of 20,000
// and of 1,000,000 keys (what the ledger does per committed root), per
// key; "insertion" is the reference Apply before it walked subtrees
// (apply_test.go), in the same run.
//
//	go test -run '^$' -bench Apply -benchtime 100000x ./vindex/
func BenchmarkApply(b *testing.B) {
	v := Value{}.Add(1, time.Unix(1e9, 0), Hash{}).Marshal()
	for _, size := range []int{20_000, 1_000_000} {
		m := bigTree(b, size)
		for _, way := range []struct {
			name  string
			apply func(NodeReader, []Update) (Hash, []NodeWrite, error)
		}{{"walk", Apply}, {"insertion", refApply}} {
			b.Run(fmt.Sprintf("%dk/%s", size/1000, way.name), func(b *testing.B) {
				next := uint64(1 << 40)
				for i := 0; i < b.N; i += 1024 {
					ups := make([]Update, 0, 1024)
					for range min(1024, b.N-i) {
						ups = append(ups, Update{Key: keyOf(next), Value: v})
						next++
					}
					_, w, err := way.apply(m, ups)
					if err != nil {
						b.Fatal(err)
					}
					if i == 0 {
						b.ReportMetric(float64(len(w))/float64(len(ups)), "writes/key")
					}
				}
			})
		}
	}
}
