package replica_test

import (
	"context"
	"crypto"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/replica"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkDecision measures the pull path's trust work with many
// statements in the replica (NOTARIZE_BENCH_STATEMENTS, default 1,000,000,
// about 1 per digest, by 10 signers): the replica lookup of a digest and the
// policy evaluation.
func BenchmarkDecision(b *testing.B) {
	n := envInt("NOTARIZE_BENCH_STATEMENTS", 1_000_000)
	const signers = 10
	var pubs []crypto.PublicKey
	var ids []string
	for range signers {
		sv := newSigner(b)
		pub, _ := sv.PublicKey()
		id, _ := notarize.KeyID(pub)
		pubs, ids = append(pubs, pub), append(ids, id)
	}
	p, err := notarize.ParsePolicy([]byte("signers: {release: {keys: [k]}}\nrules: [{match: '**', require: [release]}]\n"))
	if err != nil {
		b.Fatal(err)
	}
	ev, err := p.Evaluator(map[string][]crypto.PublicKey{"release": {pubs[0]}})
	if err != nil {
		b.Fatal(err)
	}
	digest := func(i int) notarize.Digest { return notarize.DigestOf([]byte(strconv.Itoa(i))) }

	// Fill the replica with verified-record batches (signatures are the
	// follower's job; here only the index is measured).
	src := &fakeSource{}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const batch = 16384
	for from := 0; from < n; from += batch {
		fb := &ledgerclient.FollowBatch{From: uint64(from)}
		for i := from; i < min(n, from+batch); i++ {
			st := notarize.NewStatement(digest(i), "", notarize.Predicate{Status: notarize.StatusTrusted, Name: "release", Timestamp: at.Add(time.Duration(i))})
			fb.Entries = append(fb.Entries, ledgerclient.FollowedEntry{Index: uint64(i), Record: notarize.Record{Index: uint64(i), KeyID: ids[i%signers], Statement: st}})
		}
		fb.State = ledgerclient.FollowState{Size: uint64(min(n, from+batch))}
		src.batches = append(src.batches, fb)
	}
	path := filepath.Join(b.TempDir(), "replica.db")
	r, err := replica.Open(replica.Config{Path: path, Source: src, MaxStaleness: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	start := time.Now()
	if _, err := r.Sync(context.Background()); err != nil {
		b.Fatal(err)
	}
	fi, _ := os.Stat(path)
	b.Logf("indexed %d statements in %v (%.0f/s), file %.0f MB", n, time.Since(start).Round(time.Millisecond),
		float64(n)/time.Since(start).Seconds(), float64(fi.Size())/1e6)

	ctx := context.Background()
	i := 0
	for b.Loop() {
		d := digest((i * 7919) % n)
		recs, err := r.Records(ctx, d)
		if err != nil || len(recs) != 1 {
			b.Fatalf("lookup %s: %d records, %v", d, len(recs), err)
		}
		e := ev.Evaluate("docker.io/library/app", d, recs, nil)
		if (i*7919%n)%signers == 0 && e.Verdict != notarize.Trusted {
			b.Fatalf("verdict %v", e.Verdict)
		}
		i++
	}
}

// BenchmarkCatchUp measures how fast a fresh replica catches up with a real
// ledger of NOTARIZE_BENCH_ENTRIES signed statements (default 10,000): every
// entry read from the tiles, hashed into the compact range, its signature
// checked and indexed. It reports entries/s and the peak Go heap.
func BenchmarkCatchUp(b *testing.B) {
	n := envInt("NOTARIZE_BENCH_ENTRIES", 10_000)
	srv := ledgertest.Start(b)
	lc, err := ledgerclient.New(context.Background(), ledgerclient.Config{URL: srv.URL, Home: b.TempDir(), VerifierKey: srv.VerifierKey})
	if err != nil {
		b.Fatal(err)
	}
	fill := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 256)
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sv := newSigner(b)
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				e := entry(b, sv, notarize.DigestOf([]byte(fmt.Sprint(i))), notarize.StatusTrusted, time.Now().UTC())
				if _, err := lc.Submit(context.Background(), e); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.Logf("ledger filled with %d entries in %v", n, time.Since(fill).Round(time.Millisecond))

	for b.Loop() {
		b.StopTimer()
		plc, err := ledgerclient.New(context.Background(), ledgerclient.Config{URL: srv.URL, Home: b.TempDir(), VerifierKey: srv.VerifierKey})
		if err != nil {
			b.Fatal(err)
		}
		path := filepath.Join(b.TempDir(), "replica.db")
		r, err := replica.Open(replica.Config{Path: path, Source: ledgerclient.NewFollower(plc, 0)})
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		var base runtime.MemStats
		runtime.ReadMemStats(&base)
		var peak atomic.Uint64
		stop := make(chan struct{})
		go func() {
			var m runtime.MemStats
			for {
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				runtime.ReadMemStats(&m)
				if m.HeapAlloc > peak.Load() {
					peak.Store(m.HeapAlloc)
				}
			}
		}()
		b.StartTimer()
		start := time.Now()
		got, err := r.Sync(context.Background())
		elapsed := time.Since(start)
		b.StopTimer()
		close(stop)
		if err != nil || got != n {
			b.Fatalf("Sync() = %d, %v; want %d", got, err, n)
		}
		fi, _ := os.Stat(path)
		b.ReportMetric(float64(n)/elapsed.Seconds(), "entries/s")
		b.ReportMetric(float64(peak.Load()-min(peak.Load(), base.HeapAlloc))/1e6, "peak-heap-MB")
		b.ReportMetric(float64(fi.Size())/1e6, "db-MB")
		_ = r.Close()
		b.StartTimer()
	}
}
