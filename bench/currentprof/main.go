// Command currentprof shows where the time of a verify's ledger lookup goes:
// it runs ledgerclient.Client.Current (the call `docker notarize verify`
// makes) R times against a running ledger, each time with a fresh client
// (as each verify process makes) over one client state directory (the
// stored checkpoint: each lookup proves consistency with the one before,
// as verify does), and prints the median wall
// time of a lookup and, per kind of request (checkpoint, current lookup,
// Merkle tiles, entry bundles), the requests, bytes and summed wall time
// per lookup, and the tail after the newest map root that the lookups
// read (probed with one untimed request after each lookup, outside the
// counts). With -cpuprofile it writes a CPU profile of the R lookups.
// bench/verify-1m.sh uses it to explain the tail case.
//
// With -verify each run makes verify's own call instead,
// CurrentWithRevocations: the current lookup and, at once, the lookup of
// the key's revocations, both proven complete.
//
// With -digest random each lookup is of a new digest no one signed: the
// lookups of many images, whose proofs take different paths in the map.
//
//	currentprof -url http://127.0.0.1:PORT -key VERIFIER -digest sha256:…|random -keyid HEX [-r 50] [-verify] [-cpuprofile F]
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
)

func main() {
	url := flag.String("url", "", "the ledger's base `URL`")
	key := flag.String("key", "", "the ledger's verifier key")
	digest := flag.String("digest", "", "the `digest` to look up; \"random\": a new one, which no one signed, for each lookup")
	keyID := flag.String("keyid", "", "the signer key ID to ask about")
	runs := flag.Int("r", 50, "lookups")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the lookups to this `file`")
	verify := flag.Bool("verify", false, "make verify's call, CurrentWithRevocations (the key's revocations looked up at once)")
	flag.DurationVar(&maxIndexLag, "max-index-lag", ledgerclient.DefaultMaxIndexLag, "the client's MaxIndexLag, as verify's --max-index-lag (0: read every tail)")
	flag.Parse()
	if err := run(*url, *key, *digest, *keyID, *runs, *profile, *verify); err != nil {
		fmt.Fprintln(os.Stderr, "currentprof:", err)
		os.Exit(1)
	}
}

// kind names the request class of a ledger URL path.
func kind(path string) string {
	switch {
	case path == "/checkpoint":
		return "checkpoint"
	case strings.HasPrefix(path, "/tile/entries/"):
		return "entry bundles"
	case strings.HasPrefix(path, "/tile/"):
		return "tiles"
	case strings.HasSuffix(path, "/current"):
		return "current lookup"
	case strings.HasPrefix(path, api.PathDigests):
		return "lookup"
	}
	return "other"
}

// timing records, per request kind, the requests, bytes and wall time.
type timing struct {
	mu    sync.Mutex
	n     map[string]int
	bytes map[string]int64
	wall  map[string]time.Duration
}

// transport times each request until its body is read and closed.
type transport struct {
	next http.RoundTripper
	t    *timing
}

func (tr transport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := tr.next.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &timedBody{ReadCloser: resp.Body, start: start, k: kind(r.URL.Path), t: tr.t}
	return resp, nil
}

// timedBody adds its request's time and bytes once it is closed.
type timedBody struct {
	io.ReadCloser
	start time.Time
	k     string
	t     *timing
	n     int64
	once  sync.Once
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

func (b *timedBody) Close() error {
	b.once.Do(func() {
		b.t.mu.Lock()
		defer b.t.mu.Unlock()
		b.t.n[b.k]++
		b.t.bytes[b.k] += b.n
		b.t.wall[b.k] += time.Since(b.start)
	})
	return b.ReadCloser.Close()
}

// maxIndexLag is -max-index-lag.
var maxIndexLag time.Duration

func run(url, key, digest, keyID string, runs int, profile string, verify bool) error {
	var next func() notarize.Digest
	if digest == "random" {
		next = func() notarize.Digest { return notarize.Digest("sha256:" + hex.EncodeToString(randomBytes(32))) }
	} else {
		d, err := notarize.ParseDigest(digest)
		if err != nil {
			return fmt.Errorf("-digest: %w", err)
		}
		next = func() notarize.Digest { return d }
	}
	if url == "" || key == "" || keyID == "" || runs < 1 {
		return fmt.Errorf("need -url, -key, -keyid and -r >= 1")
	}
	t := &timing{n: map[string]int{}, bytes: map[string]int64{}, wall: map[string]time.Duration{}}
	hc := &http.Client{Transport: transport{next: http.DefaultTransport, t: t}}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx := context.Background()
	walls := make([]time.Duration, 0, runs)
	var tails []uint64
	var size uint64
	home, err := os.MkdirTemp("", "currentprof-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(home)
	for range runs {
		d := next()
		start := time.Now()
		c, err := ledgerclient.New(ctx, ledgerclient.Config{URL: url, VerifierKey: key, Home: home, HTTPClient: hc, MaxIndexLag: maxIndexLag})
		if err == nil {
			var res *ledgerclient.LookupResult
			if verify {
				res, _, err = c.CurrentWithRevocations(ctx, d, []string{keyID}, nil)
			} else {
				res, err = c.Current(ctx, d, keyID)
			}
			if err == nil {
				size = res.Checkpoint.Size
			}
		}
		walls = append(walls, time.Since(start))
		if err != nil {
			return err
		}
		if n, ok := probeTail(ctx, url, d, keyID); ok {
			tails = append(tails, n)
		}
	}
	slices.Sort(walls)
	if len(tails) > 0 {
		slices.Sort(tails)
		fmt.Printf("tail after the newest map root (probed after each lookup): median %d, min %d, max %d entries\n",
			tails[len(tails)/2], tails[0], tails[len(tails)-1])
	}
	fmt.Printf("%d lookups, ledger size %d: median %.2f ms, min %.2f ms, max %.2f ms\n",
		runs, size, ms(walls[len(walls)/2]), ms(walls[0]), ms(walls[len(walls)-1]))
	kinds := make([]string, 0, len(t.n))
	for k := range t.n {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		fmt.Printf("  %-15s %6.1f requests  %9.0f bytes  %7.2f ms per lookup (summed; some run in parallel)\n",
			k, float64(t.n[k])/float64(runs), float64(t.bytes[k])/float64(runs), ms(t.wall[k])/float64(runs))
	}
	return nil
}

// probeTail asks the ledger's current endpoint for d by keyID, untimed
// and unverified, and returns the tail after the answer's newest map root:
// the checkpoint's size less the root entry's index and one (ok false for
// an answer without a map root, or on any error).
func probeTail(ctx context.Context, url string, d notarize.Digest, keyID string) (uint64, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(url, "/")+api.PathDigests+d.String()+api.PathCurrentSuffix+"?"+api.QueryKeyID+"="+keyID, nil)
	if err != nil {
		return 0, false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	var lr api.LookupResponse
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&lr) != nil || lr.Map == nil || lr.Map.RootIndex == nil {
		return 0, false
	}
	lines := strings.SplitN(lr.Checkpoint, "\n", 3)
	var size uint64
	if len(lines) < 2 {
		return 0, false
	}
	if _, err := fmt.Sscan(lines[1], &size); err != nil || size <= *lr.Map.RootIndex {
		return 0, false
	}
	// The client reads the log from the size the root covers (the root
	// entry's third line; not its own index: entries sequenced while the
	// root was folded and appended come between), unless the root entry is
	// the log's last.
	var covered uint64
	if rl := strings.SplitN(string(lr.Map.RootEntry), "\n", 4); len(rl) < 4 || !notarize.IsMapRoot(lr.Map.RootEntry) {
		return 0, false
	} else if _, err := fmt.Sscan(rl[2], &covered); err != nil || covered > size {
		return 0, false
	}
	if size == *lr.Map.RootIndex+1 && covered == *lr.Map.RootIndex {
		return 0, true
	}
	return size - covered, true
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// randomBytes returns n random bytes.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand)
	return b
}
