package ledger

import (
	"fmt"
	"testing"

	"github.com/notarize/docker-notarize/ledger/witnesstest"
)

// BenchmarkIngestWitnessed measures ingest (statements/s, p50/p99 to
// receipt) with 0, 1 (1-of-1) and 3 (2-of-3) real omniwitness processes
// cosigning every checkpoint, in the same run; 64 concurrent clients.
//
//	go test -run '^$' -bench IngestWitnessed -benchtime 4000x ./ledger/
func BenchmarkIngestWitnessed(b *testing.B) {
	for _, n := range []int{0, 1, 3} {
		b.Run(fmt.Sprintf("witnesses=%d", n), func(b *testing.B) {
			cfg, vkey := witnessedConfig(b, fmt.Sprintf("bench.example/witnessed-%d", n))
			cfg.CheckpointInterval, cfg.ReceiptTimeout = 0, 0 // the defaults
			if n > 0 {
				ws := witnesstest.StartN(b, n, cfg.Origin, vkey)
				cfg.WitnessPolicy = witnesstest.Policy(n/2+1, ws...)
			}
			ingest(b, []string{startLedger(b, cfg).url}, 64)
		})
	}
}
