package plugin

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/cli/cli/command"
	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/notarize"
)

// rotateBenchDigests is how many digests BenchmarkKeyRotate10000 rotates.
const rotateBenchDigests = 10_000

// BenchmarkKeyRotate10000 measures key rotate from alice to bob over 10,000
// digests (every tenth untrusted), the ledger on loopback with its
// verifiable map committed as in production (every 1024 entries or 2 s):
// the key lookup's pages, one proven current lookup and one verified
// submission per digest, rotateJobs at a time. Each iteration seeds a fresh
// ledger directly (ledger.Submit, not timed). Run with -benchtime=1x.
func BenchmarkKeyRotate10000(b *testing.B) {
	home := b.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "keys"), 0o700); err != nil {
		b.Fatal(err)
	}
	for _, k := range []string{"alice", "bob"} {
		for _, ext := range []string{".key", ".pub"} {
			data, err := os.ReadFile(filepath.Join("testdata", "keys", k+ext))
			if err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(home, "keys", k+ext), data, 0o600); err != nil {
				b.Fatal(err)
			}
		}
	}
	pemBytes, err := os.ReadFile(filepath.Join(home, "keys", "alice.key"))
	if err != nil {
		b.Fatal(err)
	}
	alice, err := LoadSigner(pemBytes, []byte(testPassword))
	if err != nil {
		b.Fatal(err)
	}
	// The statements are signed once; each iteration submits them to a
	// fresh ledger.
	at := time.Now().UTC().Add(-time.Hour)
	entries := make([]*notarize.Entry, rotateBenchDigests)
	for i := range entries {
		status := notarize.StatusTrusted
		if i%10 == 0 {
			status = notarize.StatusUntrusted
		}
		d := notarize.DigestOf(fmt.Appendf(nil, "rotate bench manifest %d", i))
		st := notarize.NewStatement(d, "registry.example/app", notarize.Predicate{Status: status, Name: "alice", Timestamp: at, Attributes: map[string]string{"build": fmt.Sprint(i)}})
		if entries[i], err = notarize.Sign(b.Context(), alice, st); err != nil {
			b.Fatal(err)
		}
	}
	mapped := ledgertest.WithConfig(func(c *ledger.Config) { c.MapCommitInterval = ledger.DefaultMapCommitInterval })

	for range b.N {
		b.StopTimer()
		led := ledgertest.Start(b, mapped)
		rotateSeed(b, led.Ledger(), entries)
		vars := map[string]string{EnvHome: home, EnvPassword: testPassword, EnvLedger: led.URL}
		// Each ledger is new to the client: a fresh client state directory.
		vars[EnvHome] = b.TempDir()
		if err := os.CopyFS(filepath.Join(vars[EnvHome], "keys"), os.DirFS(filepath.Join(home, "keys"))); err != nil {
			b.Fatal(err)
		}
		root := &rootOptions{ledgerURL: led.URL, env: env{
			lookupEnv:  func(k string) (string, bool) { v, ok := vars[k]; return v, ok },
			now:        time.Now,
			keychain:   authn.NewMultiKeychain(),
			isTerminal: func(int) bool { return false },
		}}
		var out strings.Builder
		dockerCli, err := command.NewDockerCli(command.WithOutputStream(&out), command.WithErrorStream(io.Discard))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		err = runKeyRotate(b.Context(), dockerCli, keyRotateOptions{root: root, old: "alice", new: "bob", jobs: rotateJobs, format: formatText})
		b.StopTimer()
		want := fmt.Sprintf("%d re-stated, 0 already current, 0 kept (NEW's newer statement differs), 0 failed", rotateBenchDigests)
		if err != nil || !strings.Contains(out.String(), want) {
			b.Fatalf("key rotate: %v, want %q in the summary\n%s", err, want, rotateTail(out.String(), 400))
		}
		led.Stop()
	}
	b.ReportMetric(float64(rotateBenchDigests*b.N)/b.Elapsed().Seconds(), "digests/s")
}

// rotateSeed submits entries to l directly, 64 at a time.
func rotateSeed(b *testing.B, l *ledger.Ledger, entries []*notarize.Entry) {
	b.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	errs := make(chan error, 1)
	for _, e := range entries {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := l.Submit(b.Context(), e); err != nil {
				select {
				case errs <- err:
				default:
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatalf("seed the ledger: %v", err)
	default:
	}
}

// rotateTail is the last n bytes of s.
func rotateTail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
