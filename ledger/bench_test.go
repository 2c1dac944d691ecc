package ledger

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// BenchmarkIngest measures signed statements per second over HTTP with
// many concurrent clients, and the time from request to receipt (p50, p99).
// Each client sends one submission at a time and waits for its receipt.
//
//	go test -run '^$' -bench Ingest -benchtime 4000x ./ledger/
func BenchmarkIngest(b *testing.B) {
	for _, clients := range []int{16, 64, 256, 1024} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			ingest(b, []string{startLedger(b, Config{}).url}, clients)
		})
	}
}

// ingest submits b.N signed statements from concurrent clients, client i
// talking to urls[i%len(urls)], each sending one submission at a time and
// waiting for its receipt; it reports statements/s and p50/p99 to receipt.
func ingest(b *testing.B, urls []string, clients int) {
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
	b.ResetTimer()
	start := time.Now()
	for w := range clients {
		url := urls[w%len(urls)]
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
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(latencies)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "stmts/s")
	b.ReportMetric(float64(latencies[b.N/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(latencies[b.N*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
}
