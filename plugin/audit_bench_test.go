package plugin

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/cli/cli/command"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/notarize"
)

// delayed adds a round-trip time to every request: a ledger that is not on
// this machine.
type delayed struct {
	rtt  time.Duration
	next http.RoundTripper
}

func (d delayed) RoundTrip(r *http.Request) (*http.Response, error) {
	time.Sleep(d.rtt)
	return d.next.RoundTrip(r)
}

// BenchmarkAudit200LocalImages audits a daemon of 200 images (one container
// each, half of the digests signed by alice) against a real ledger on
// loopback: the cost of `docker notarize audit` on a busy host, which is
// the ledger lookups (one per digest, each with its checkpoint and proofs
// verified). jobs=1 is one lookup at a time, jobs=8 the default; with the
// ledger on loopback and 10 ms away.
func BenchmarkAudit200LocalImages(b *testing.B) {
	const images = 200
	led := ledgertest.Start(b)
	home := b.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "keys"), 0o700); err != nil {
		b.Fatal(err)
	}
	for _, ext := range []string{".key", ".pub"} {
		data, err := os.ReadFile(filepath.Join("testdata", "keys", "alice"+ext))
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(home, "keys", "alice"+ext), data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	vars := map[string]string{EnvHome: home, EnvPassword: testPassword, EnvLedger: led.URL}
	root := &rootOptions{ledgerURL: led.URL, env: env{
		lookupEnv:  func(k string) (string, bool) { v, ok := vars[k]; return v, ok },
		now:        time.Now,
		keychain:   authn.NewMultiKeychain(),
		isTerminal: func(int) bool { return false },
	}}

	// 200 images pulled from a registry, each with one container; every
	// other digest signed trusted.
	pemBytes, err := os.ReadFile(filepath.Join(home, "keys", "alice.key"))
	if err != nil {
		b.Fatal(err)
	}
	signer, err := LoadSigner(pemBytes, []byte(testPassword))
	if err != nil {
		b.Fatal(err)
	}
	client, err := root.ledger(b.Context(), io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	daemon := &fakeDaemon{}
	for i := range images {
		d := notarize.DigestOf(fmt.Appendf(nil, "manifest %d", i))
		id := fmt.Sprintf("sha256:%064x", i)
		daemon.images = append(daemon.images, image.Summary{
			ID: id, RepoTags: []string{fmt.Sprintf("registry.example/app%d:v1", i)}, RepoDigests: []string{fmt.Sprintf("registry.example/app%d@%s", i, d)},
		})
		daemon.containers = append(daemon.containers, container.Summary{ID: fmt.Sprintf("%064x", i), Names: []string{fmt.Sprintf("/c%d", i)}, ImageID: id, State: container.StateRunning})
		if i%2 == 1 {
			continue
		}
		st := notarize.NewStatement(d, "registry.example/app", notarize.Predicate{Status: notarize.StatusTrusted, Name: "alice", Timestamp: time.Now().UTC()})
		e, err := notarize.Sign(b.Context(), signer, st)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := client.Submit(b.Context(), e); err != nil {
			b.Fatal(err)
		}
	}

	for _, tc := range []struct {
		rtt  time.Duration
		jobs int
	}{{0, 1}, {0, auditJobs}, {10 * time.Millisecond, 1}, {10 * time.Millisecond, auditJobs}} {
		b.Run(fmt.Sprintf("ledger-rtt=%v/jobs=%d", tc.rtt, tc.jobs), func(b *testing.B) {
			root := *root
			root.env.ledgerHTTP = &http.Client{Transport: delayed{rtt: tc.rtt, next: http.DefaultTransport}}
			for b.Loop() {
				var out strings.Builder
				dockerCli, err := command.NewDockerCli(command.WithOutputStream(&out), command.WithErrorStream(io.Discard))
				if err != nil {
					b.Fatal(err)
				}
				code, msg := Exit(runAudit(b.Context(), dockerCli, auditOptions{root: &root, daemon: daemon, format: formatJSON, jobs: tc.jobs}))
				if code != 2 {
					b.Fatalf("exit %d, want 2 (half UNKNOWN): %s\n%s", code, msg, out.String())
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/images, "µs/image")
		})
	}
}
