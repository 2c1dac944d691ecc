package ledger

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkIngestMySQL is BenchmarkIngest on MySQL storage (the MariaDB
// server of the tests), with one instance and with two instances sharing
// the database, the clients spread over them. Run both in one go to
// compare:
//
//	go test -run '^$' -bench 'Ingest' -benchtime 4000x ./ledger/
func BenchmarkIngestMySQL(b *testing.B) {
	for _, instances := range []int{1, 2} {
		for _, clients := range []int{64, 256, 1024} {
			b.Run(fmt.Sprintf("instances=%d/clients=%d", instances, clients), func(b *testing.B) {
				dsn := mysqlEnv.database(b)
				skey := noteKey(b, "bench.example/ledger")
				var urls []string
				for range instances {
					urls = append(urls, startLedgerAt(b, mysqlAt(dsn), mysqlConfig(b, skey)).url)
				}
				ingest(b, urls, clients)
			})
		}
	}
}

// BenchmarkIngestMySQLWithMap measures ingest on MySQL storage with and
// without the verifiable index, in the same run (issue 11: maintaining the
// map costs at most 20% of ingest throughput), with the default commit
// cadence and two instances sharing the database and its one map. It
// reports the map's commits (roots) and their mean time, from reading the
// position under the lock to storing the commit (the root's publication
// wait included).
//
//	go test -run '^$' -bench 'IngestMySQLWithMap' -benchtime 20000x ./ledger/
func BenchmarkIngestMySQLWithMap(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("map=%v", on), func(b *testing.B) {
			dsn := mysqlEnv.database(b)
			skey := noteKey(b, "bench.example/ledger")
			cfg := mysqlConfig(b, skey)
			cfg.noMap = !on
			if on {
				cfg.MapCommitEntries = DefaultMapCommitEntries // the defaults, opted into (startLedgerAt)
			}
			a := startLedgerAt(b, mysqlAt(dsn), cfg)
			c := startLedgerAt(b, mysqlAt(dsn), cfg)
			ingest(b, []string{a.url, c.url}, 256)
			if !on {
				return
			}
			// The map catches up with what was ingested: its cost is
			// counted, not deferred past the benchmark.
			start := time.Now()
			waitMapCovers(b, a, uint64(b.N))
			b.ReportMetric(time.Since(start).Seconds(), "map-lag-s")
			st, err := a.vmap.m.MapState(b.Context())
			if err != nil || st.Root == nil {
				b.Fatalf("map state %+v %v", st, err)
			}
			reportRoots(b, a.vmap, c.vmap)
		})
	}
}

// reportRoots reports the followers' root commits, their mean time from
// reading the map's position under the lock to storing the commit (the
// root's latency: the range folded ends when the fold starts, and the
// commit is stored once a published checkpoint covers the root) and the
// part of it spent folding, and the share of the entries folded that were
// read and checked again instead of taken from the index's rows, and how
// many updates continued a fold ahead (fold_ahead.go).
func reportRoots(b *testing.B, fs ...*mapFollower) {
	var n int64
	var took, folding time.Duration
	var hits, misses uint64
	var ahead int64
	for _, f := range fs {
		ahead += f.aheadUsed.Load()
		n += f.roots.Load()
		took += time.Duration(f.rootTime.Load())
		folding += time.Duration(f.foldTime.Load())
		if f.tap != nil {
			hits, misses = hits+f.tap.hits.Load(), misses+f.tap.misses.Load()
		}
	}
	if hits+misses > 0 {
		b.ReportMetric(100*float64(misses)/float64(hits+misses), "reread-%")
	}
	if n == 0 {
		return
	}
	b.ReportMetric(float64(n), "roots")
	b.ReportMetric(float64(took.Milliseconds())/float64(n), "ms/root")
	b.ReportMetric(float64(folding.Microseconds())/1000/float64(n), "fold-ms/root")
	b.ReportMetric(float64(ahead), "ahead")
}
