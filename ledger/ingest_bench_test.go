package ledger

import (
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// BenchmarkIngestCPU is BenchmarkIngest at 256 and 1,024 clients that also
// reports the CPU time (user + system, getrusage) the process spent per
// statement while the clients ran: the ledger and the load generator
// together (they share the process), which a loaded machine distorts less
// than statements/s. Statements are signed before the clock starts. It
// also reports the bytes allocated per statement and the collections per
// 1,000 statements, which the machine's load does not change.
//
//	go test -run '^$' -bench IngestCPU -benchtime 10000x ./ledger/
func BenchmarkIngestCPU(b *testing.B) {
	for _, clients := range []int{256, 1024} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			ingestCPU(b, startLedger(b, Config{}).url, clients)
		})
	}
}

// BenchmarkIngestBatchAge is BenchmarkIngestCPU at 1,024 clients with
// Tessera batches of several ages (Config.BatchMaxAge): an older batch is
// larger, and the POSIX driver rewrites the log's partial entry bundle and
// tiles once per batch.
//
//	go test -run '^$' -bench IngestBatchAge -benchtime 8000x ./ledger/
func BenchmarkIngestBatchAge(b *testing.B) {
	for _, age := range []time.Duration{25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond} {
		b.Run(fmt.Sprintf("age=%v", age), func(b *testing.B) {
			ingestCPU(b, startLedger(b, Config{BatchMaxAge: age}).url, 1024)
		})
	}
}

// BenchmarkIngestLone is one client submitting one statement at a time,
// at two Tessera batch ages: what the batch age costs a lone submission's
// receipt (it waits for the batch, then for a checkpoint).
//
//	go test -run '^$' -bench IngestLone -benchtime 100x ./ledger/
func BenchmarkIngestLone(b *testing.B) {
	for _, age := range []time.Duration{25 * time.Millisecond, 50 * time.Millisecond} {
		b.Run(fmt.Sprintf("age=%v", age), func(b *testing.B) {
			ingestCPU(b, startLedger(b, Config{BatchMaxAge: age}).url, 1)
		})
	}
}

// processCPU returns the CPU time the process used so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ingestCPU is ingest against one ledger, also reporting the process's
// CPU time per statement.
func ingestCPU(b *testing.B, url string, clients int) {
	s := newTestSigner(b)
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i] = mustMarshal(b, s.sign(b, randomDigest(b), notarize.StatusTrusted, time.Now()))
	}
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}}
	defer c.CloseIdleConnections()
	latencies := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	cpu0, start := processCPU(b), time.Now()
	for range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				t0 := time.Now()
				status, _, err := post(b.Context(), c, url, bodies[i])
				latencies[i] = time.Since(t0)
				if err != nil || status != http.StatusCreated {
					b.Errorf("submit %d: status %d: %v", i, status, err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), processCPU(b)-cpu0
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	slices.Sort(latencies)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "stmts/s")
	b.ReportMetric(float64(latencies[b.N/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(latencies[b.N*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/stmt")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/1024/float64(b.N), "alloc-KiB/stmt")
	b.ReportMetric(float64(ms1.NumGC-ms0.NumGC)*1000/float64(b.N), "gc/1k-stmt")
	b.ReportMetric(0, "ns/op")
}
