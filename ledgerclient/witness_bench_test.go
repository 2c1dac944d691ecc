package ledgerclient

import (
	"fmt"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/internal/witnesstest"
)

// BenchmarkWitnessed is what a witness policy adds to each checkpoint a
// client verifies: checking the cosignatures of a k-of-n policy, the first
// time in the process (checking the same checkpoint again is a lookup in
// the memory of accepted signatures, memo.go).
func BenchmarkWitnessed(b *testing.B) {
	for _, n := range []int{1, 3, 10} {
		b.Run(fmt.Sprintf("%d-of-%d", n/2+1, n), func(b *testing.B) {
			var ws []*witnesstest.Witness
			for i := range n {
				ws = append(ws, witnesstest.New(b, fmt.Sprintf("w%d", i), fmt.Sprintf("witness%d.test", i)))
			}
			p, err := ParseWitnessPolicy(witnesstest.Policy(n/2+1, ws...))
			if err != nil {
				b.Fatal(err)
			}
			s, vkey := newNoteKey(b, testOrigin)
			l := newFakeLog(s, vkey)
			l.add([]byte("leaf"))
			raw := l.checkpointAt(b, 1)
			for _, w := range ws {
				raw = w.Cosign(raw, time.Now())
			}
			cp := Checkpoint{Raw: raw}
			b.ResetTimer()
			for b.Loop() {
				forgetAccepted() // the first check of this checkpoint in a process
				if _, err := p.Witnessed(cp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
