package e2e

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/internal/witnesstest"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/notarize"
)

// BenchmarkVerifyWholeProcess times `docker notarize verify file:F` (and the
// plugin run standalone) as a user runs it, on a ledger holding
// NOTARIZE_BENCH_ENTRIES entries (default 100,000) from 1,000 other signers,
// with and without a witness policy (2 of 3 witnesses, whose cosignatures a
// front adds to the ledger's checkpoints).
//
//	warm: the client's stored checkpoint is the ledger's latest;
//	cold: a new NOTARIZE_HOME pinned to the ledger key with no stored
//	      checkpoint (the first verify on a machine).
//
// Each iteration runs every row once, in turn; the figures are each row's
// median, in ms (the iteration's own ns/op is the sum of the rows and the
// cold row's set-up).
//
//	go test -run '^$' -bench VerifyWholeProcess -benchtime 20x ./e2e/
func BenchmarkVerifyWholeProcess(b *testing.B) {
	n := 100_000
	if s := os.Getenv("NOTARIZE_BENCH_ENTRIES"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	l := ledgertest.Start(b)
	fill(b, l, n)

	dc := b.TempDir()
	installPlugin(b, filepath.Join(dc, "cli-plugins"))
	bin := filepath.Join(dc, "cli-plugins", "docker-notarize")
	file := filepath.Join(b.TempDir(), "artifact.tar")
	if err := os.WriteFile(file, bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		b.Fatal(err)
	}
	env := append(os.Environ(), "DOCKER_CONFIG="+dc, "DOCKER_CLI_HINTS=false",
		"NOTARIZE_PASSWORD="+password, "NOTARIZE_LEDGER="+l.URL, "NOTARIZE_LEDGER_KEY="+l.VerifierKey)
	run := func(b *testing.B, wantCode int, env []string, name string, args ...string) {
		cmd := exec.Command(name, args...)
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			b.Fatal(err)
		}
		if code != wantCode {
			b.Fatalf("%s %v: exit %d, want %d:\n%s", name, args, code, wantCode, out.String())
		}
	}
	run(b, 0, env, "docker", "notarize", "key", "generate", "--name", "release")
	run(b, 0, env, "docker", "notarize", "sign", "file:"+file)

	// The same ledger behind a front that adds 3 witnesses' cosignatures,
	// verified against a 2-of-3 witness policy (issue 9).
	w1, w2, w3 := witnesstest.Three(b)
	front := witnesstest.NewFront(b, l.URL, w1, w2, w3)
	policy := filepath.Join(b.TempDir(), "witnesses.policy")
	if err := os.WriteFile(policy, witnesstest.Policy(2, w1, w2, w3), 0o644); err != nil {
		b.Fatal(err)
	}
	witnessed := append(env[:len(env):len(env)], "NOTARIZE_LEDGER="+front.URL, "NOTARIZE_WITNESS_POLICY="+policy)

	rows := []struct {
		name      string
		cold      bool
		witnessed bool
		cmd       []string
	}{
		{"docker-notarize/warm", false, false, []string{"docker", "notarize", "verify", "file:" + file}},
		{"docker-notarize/warm/witnessed-2-of-3", false, true, []string{"docker", "notarize", "verify", "file:" + file}},
		{"standalone/warm/witnessed-2-of-3", false, true, []string{bin, "verify", "file:" + file}},
		{"standalone/warm", false, false, []string{bin, "verify", "file:" + file}},
		{"docker-notarize/cold", true, false, []string{"docker", "notarize", "verify", "file:" + file}},
		{"docker-version", false, false, []string{"docker", "--version"}},
	}
	// Every row runs once per iteration, in turn, starting one row later
	// each time: a shared machine's drift falls on every row alike, so
	// their ratios hold (as bench/roundrobin does for verify-bench.sh).
	took := make([][]time.Duration, len(rows))
	for i := 0; b.Loop(); i++ {
		for j := range rows {
			k := (i + j) % len(rows)
			bc := rows[k]
			env := env
			if bc.witnessed {
				env = witnessed
			}
			if bc.cold {
				home := b.TempDir()
				keys := filepath.Join(dc, "notarize", "keys")
				if err := os.CopyFS(filepath.Join(home, "keys"), os.DirFS(keys)); err != nil {
					b.Fatal(err)
				}
				env = append(env[:len(env):len(env)], "NOTARIZE_HOME="+home)
			}
			start := time.Now()
			run(b, 0, env, bc.cmd[0], bc.cmd[1:]...)
			took[k] = append(took[k], time.Since(start))
		}
	}
	for k, bc := range rows {
		slices.Sort(took[k])
		b.ReportMetric(float64(took[k][len(took[k])/2].Microseconds())/1000, bc.name+"-median-ms")
	}
}

// fill submits n trusted statements about random digests from 1,000 signers,
// 256 at a time, straight to the ledger (no HTTP: the load is not what is measured).
func fill(b *testing.B, l *ledgertest.Server, n int) {
	b.Helper()
	signers := make([]signature.Signer, 1000)
	for i := range signers {
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		if signers[i], err = signature.LoadSignerVerifier(priv, crypto.SHA256); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 256 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				d := notarize.DigestOf([]byte(strconv.Itoa(i)))
				st := notarize.NewStatement(d, "bench", notarize.Predicate{Status: notarize.StatusTrusted, Kind: notarize.KindFile, Timestamp: time.Now().UTC()})
				e, err := notarize.Sign(b.Context(), signers[i%len(signers)], st)
				if err == nil {
					_, err = l.Ledger().Submit(b.Context(), e)
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.Logf("ledger filled with %d entries in %v (%.0f/s)", n, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())
}
