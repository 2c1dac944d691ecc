package replica_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/replica"
	"github.com/sigstore/sigstore/pkg/signature"
)

// BenchmarkCatchUpBatches measures a fresh replica catching up with a real
// ledger of NOTARIZE_BENCH_ENTRIES statements (default 20,000) read in
// batches of several sizes: entries/s, and the process's CPU time per
// entry (user + system, getrusage), which a loaded machine distorts less
// than wall time. Small batches are where reading the next batch while the
// previous one is stored pays; every entry is proven and signature-checked
// either way. The ledger runs in the same process but is idle during the
// sync except for serving its tiles and bundles.
//
//	go test -run '^$' -bench CatchUpBatches -benchtime 3x ./proxy/replica/
func BenchmarkCatchUpBatches(b *testing.B) {
	n := envInt("NOTARIZE_BENCH_ENTRIES", 20_000)
	srv := ledgertest.Start(b)
	fillLedger(b, srv, n)
	for _, batch := range []uint64{1024, 4096, ledgerclient.DefaultFollowBatch} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			var entries int
			var cpu, wall time.Duration
			for b.Loop() {
				b.StopTimer()
				plc, err := ledgerclient.New(context.Background(), ledgerclient.Config{URL: srv.URL, Home: b.TempDir(), VerifierKey: srv.VerifierKey})
				if err != nil {
					b.Fatal(err)
				}
				r, err := replica.Open(replica.Config{Path: filepath.Join(b.TempDir(), "replica.db"), Source: ledgerclient.NewFollower(plc, batch)})
				if err != nil {
					b.Fatal(err)
				}
				c0 := cpuTime(b)
				b.StartTimer()
				start := time.Now()
				got, err := r.Sync(context.Background())
				wall += time.Since(start)
				b.StopTimer()
				cpu += cpuTime(b) - c0
				if err != nil || got < n {
					b.Fatalf("Sync() = %d, %v; want at least %d", got, err, n)
				}
				entries += got
				_ = r.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(entries)/wall.Seconds(), "entries/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(entries), "cpu-µs/entry")
		})
	}
}

// fillLedger submits n signed statements from 256 clients and 64 keys.
func fillLedger(b *testing.B, srv *ledgertest.Server, n int) {
	b.Helper()
	signers := make([]signature.SignerVerifier, 64)
	for i := range signers {
		signers[i] = newSigner(b)
	}
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 256 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				e := entry(b, signers[i%int64(len(signers))], notarize.DigestOf(fmt.Append(nil, i)), notarize.StatusTrusted, time.Now().UTC())
				if _, err := srv.Ledger().Submit(context.Background(), e); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	b.Logf("ledger filled with %d entries in %v", n, time.Since(start).Round(time.Millisecond))
	time.Sleep(2 * time.Second) // let the ledger's own followers settle before timing
}

// cpuTime is the process's user + system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
