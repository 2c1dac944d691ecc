//go:build ignore

// Command loadgen sends GET requests to one URL from C workers for a
// duration and prints one tab-separated line: name, requests/s, p50 ms,
// p99 ms, MB/s, errors. Used by bench/proxy-bench.sh:
//
//	go run bench/loadgen.go -name NAME -c 16 -d 5s [-head] [-accept TYPE] [-verify] URL
//
// With -verify the body is hashed and checked against the digest the URL
// ends in, as every pulling client (containerd's content store, dockerd,
// skopeo, ggcr) does before it keeps a blob; a mismatch counts as an error.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	name := flag.String("name", "run", "label of the output line")
	workers := flag.Int("c", 16, "concurrent workers")
	dur := flag.Duration("d", 5*time.Second, "duration")
	head := flag.Bool("head", false, "send HEAD instead of GET")
	accept := flag.String("accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json", "Accept header")
	once := flag.Bool("once", false, "send exactly one request per worker (cold-cache measurements)")
	verify := flag.Bool("verify", false, "hash each body and check it against the sha256 digest the URL ends in")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: loadgen [flags] URL")
		os.Exit(2)
	}
	url := flag.Arg(0)
	var want string
	if *verify {
		_, d, _ := strings.Cut(url[strings.LastIndex(url, "/")+1:], "sha256:")
		if len(d) != 64 {
			fmt.Fprintln(os.Stderr, "loadgen: -verify needs a URL that ends in a sha256 digest")
			os.Exit(2)
		}
		want = d
	}
	method := http.MethodGet
	if *head {
		method = http.MethodHead
	}
	tr := &http.Transport{MaxIdleConnsPerHost: *workers * 2, DisableCompression: true}
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()

	var (
		mu      sync.Mutex
		lats    []time.Duration
		bytes   atomic.Int64
		errs    atomic.Int64
		wg      sync.WaitGroup
		started = time.Now()
	)
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []time.Duration
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(context.Background(), method, url, nil)
				req.Header.Set("Accept", *accept)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					errs.Add(1)
					continue
				}
				var n int64
				if *verify {
					n, err = readVerified(resp.Body, want)
				} else {
					n, err = io.Copy(io.Discard, resp.Body)
				}
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					errs.Add(1)
				} else {
					bytes.Add(n)
					local = append(local, time.Since(t0))
				}
				if *once {
					break
				}
			}
			mu.Lock()
			lats = append(lats, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(started)
	if *once {
		elapsed = 0
		for _, l := range lats {
			elapsed = max(elapsed, l)
		}
	}
	slices.Sort(lats)
	pct := func(p float64) float64 {
		if len(lats) == 0 {
			return 0
		}
		return float64(lats[min(len(lats)-1, int(float64(len(lats))*p))].Microseconds()) / 1000
	}
	fmt.Printf("%s\t%.0f\t%.2f\t%.2f\t%.0f\t%d\n", *name, float64(len(lats))/elapsed.Seconds(), pct(0.50), pct(0.99),
		float64(bytes.Load())/elapsed.Seconds()/1e6, errs.Load())
}

// readVerified reads body through SHA-256 with a 1 MiB buffer, the size
// containerd's content.Copy uses, and fails if the digest differs.
func readVerified(body io.Reader, want string) (int64, error) {
	h := sha256.New()
	n, err := io.CopyBuffer(h, body, make([]byte, 1<<20))
	if err != nil {
		return n, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return n, fmt.Errorf("digest sha256:%s, want sha256:%s", got, want)
	}
	return n, nil
}
