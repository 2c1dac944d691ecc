// Command ingestgen is the load generator of bench/ingest-bench.sh: C
// clients, each on its own keep-alive connection, each sending one signed
// statement at a time and waiting for the answer, until N statements are
// sent. It prints one tab-separated line: name, statements/s, p50 ms, p99
// ms, errors, the server's CPU µs per statement (from /proc/PID/stat, when
// -pid is given) and its own CPU µs per statement.
//
//	ingestgen -name NAME -url http://127.0.0.1:7070/api/v1/entries -c 1024 -n 30000 -keys 256 [-pid PID]
//
// Every statement is a real one (notarize.Sign, ECDSA P-256, a fresh
// random digest), signed by one of K keys before the clock starts, so the
// server pays for exactly what a ledger pays: the strict parse, the
// signature check, duplicate detection, the log and the receipt. The
// clients speak HTTP/1.1 directly on the connection (the request bytes
// are built once; the answer is parsed by http.ReadResponse and its body
// discarded), as wrk does, so that the generator's own CPU, which
// shares the machine's cores with the server, stays a small part of the
// run; it reports that part. An answer other than the status -want counts
// as an error; the first is printed on stderr.
//
// The K keys are new for every run, so that each run is, for the ledger, a
// rotation to K keys it has not seen; with -key-seed S they are derived
// from S (key i's scalar from SHA-256(S, i)), the same in every run with
// that seed: signers that keep their keys, as a ledger in service has.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/notarize"
)

func main() {
	name := flag.String("name", "run", "label of the output line")
	target := flag.String("url", "", "URL to POST each statement to")
	clients := flag.Int("c", 1024, "concurrent clients, one connection each")
	n := flag.Int("n", 30000, "statements to send")
	keys := flag.Int("keys", 256, "signer keys (ECDSA P-256) the statements are spread over")
	pid := flag.Int("pid", 0, "the server's process ID, to report its CPU per statement")
	want := flag.Int("want", 201, "the status a successful answer has")
	keySeed := flag.String("key-seed", "", "derive the keys from this `seed` (the same keys in every run with it) instead of new ones")
	flag.Parse()
	if *target == "" || *clients < 1 || *n < *clients || *keys < 1 {
		fmt.Fprintln(os.Stderr, "usage: ingestgen -url URL [-c CLIENTS] [-n STATEMENTS >= CLIENTS] [-keys K] [-pid PID]")
		os.Exit(2)
	}
	if err := run(*name, *target, *clients, *n, *keys, *pid, *want, *keySeed); err != nil {
		fmt.Fprintln(os.Stderr, "ingestgen:", err)
		os.Exit(1)
	}
}

func run(name, target string, clients, n, keys, pid, want int, keySeed string) error {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("url %q: want http://HOST:PORT/PATH", target)
	}
	reqs, err := requests(u, n, keys, keySeed)
	if err != nil {
		return err
	}
	conns := make([]net.Conn, clients)
	for i := range conns {
		if conns[i], err = net.Dial("tcp", u.Host); err != nil {
			return fmt.Errorf("dial %s: %w", u.Host, err)
		}
		defer conns[i].Close()
	}

	var (
		next      atomic.Int64
		errs      atomic.Int64
		firstErr  sync.Once
		latencies = make([]time.Duration, n)
		wg        sync.WaitGroup
	)
	serverCPU0, err := procCPU(pid)
	if err != nil {
		return err
	}
	selfCPU0 := selfCPU()
	start := time.Now()
	for _, c := range conns {
		wg.Go(func() {
			br := bufio.NewReaderSize(c, 16<<10)
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				status, err := roundTrip(c, br, reqs[i])
				latencies[i] = time.Since(t0)
				if err != nil || status != want {
					errs.Add(1)
					firstErr.Do(func() { fmt.Fprintf(os.Stderr, "ingestgen: statement %d: status %d: %v\n", i, status, err) })
					if err != nil {
						return // the connection is in an unknown state
					}
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	selfCPU1 := selfCPU()
	serverCPU1, err := procCPU(pid)
	if err != nil {
		return err
	}
	slices.Sort(latencies)
	server := "-"
	if pid != 0 {
		server = fmt.Sprintf("%.0f", float64((serverCPU1-serverCPU0).Microseconds())/float64(n))
	}
	fmt.Printf("%s\t%.0f\t%.1f\t%.1f\t%d\t%s\t%.0f\n", name, float64(n)/elapsed.Seconds(),
		ms(latencies[n/2]), ms(latencies[n*99/100]), errs.Load(), server,
		float64((selfCPU1-selfCPU0).Microseconds())/float64(n))
	return nil
}

// requests signs n statements, each about a fresh random digest, over
// keys P-256 keys (new ones, or derived from keySeed when it is not
// empty), and returns each as the bytes of an HTTP/1.1 POST.
func requests(u *url.URL, n, keys int, keySeed string) ([][]byte, error) {
	signers := make([]signature.SignerVerifier, keys)
	for i := range signers {
		priv, err := signerKey(keySeed, i)
		if err != nil {
			return nil, err
		}
		if signers[i], err = signature.LoadSignerVerifier(priv, notarize.HashFor(priv.Public())); err != nil {
			return nil, fmt.Errorf("load key: %w", err)
		}
	}
	now := time.Now().UTC().Truncate(time.Second)
	out := make([][]byte, n)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  atomic.Int64
	)
	for range runtime.NumCPU() {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				b, err := statement(signers[i%keys], now)
				if err != nil {
					mu.Lock()
					first = cmpOr(first, err)
					mu.Unlock()
					return
				}
				var req bytes.Buffer
				fmt.Fprintf(&req, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", u.RequestURI(), u.Host, len(b))
				req.Write(b)
				out[i] = req.Bytes()
			}
		})
	}
	wg.Wait()
	return out, first
}

// statement is one signed statement, as the plugin's sign writes it:
// TRUSTED, about a random digest, dated now.
func statement(s signature.SignerVerifier, now time.Time) ([]byte, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	d, err := notarize.ParseDigest("sha256:" + hex.EncodeToString(raw[:]))
	if err != nil {
		return nil, err
	}
	st := notarize.NewStatement(d, "registry.example/bench/app:1", notarize.Predicate{
		Status:    notarize.StatusTrusted,
		MediaType: "application/vnd.oci.image.manifest.v1+json",
		Size:      1234,
		Kind:      notarize.KindImage,
		Name:      "ingest bench",
		Timestamp: now,
	})
	e, err := notarize.Sign(context.Background(), s, st)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return json.Marshal(e)
}

// roundTrip writes one request and reads its answer, discarding the
// body. http.ReadResponse parses only the answer: no transport, no
// connection pool, no goroutine per connection.
func roundTrip(c net.Conn, br *bufio.Reader, req []byte) (int, error) {
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.Close {
		err = errors.New("the server closed the connection")
	}
	return resp.StatusCode, err
}

// procCPU is the user plus system CPU time of process pid (0: none).
func procCPU(pid int) (time.Duration, error) {
	if pid == 0 {
		return 0, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("server CPU: %w", err)
	}
	// The fields after the command name, which is in parentheses and
	// may hold spaces: state is field 3, utime 14, stime 15.
	_, rest, ok := bytes.Cut(b, []byte(") "))
	f := strings.Fields(string(rest))
	if !ok || len(f) < 13 {
		return 0, fmt.Errorf("server CPU: /proc/%d/stat: %q", pid, b)
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("server CPU: /proc/%d/stat: %q", pid, b)
		}
		ticks += v
	}
	return time.Duration(ticks) * (time.Second / clockTicks), nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on
// every Linux this runs on.
const clockTicks = 100

// selfCPU is this process's user plus system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// signerKey returns a new P-256 key, or with a seed the i-th key derived
// from it: its scalar is SHA-256(seed, i), tried again with a counter in
// the (about 2^-32) case that is not a valid scalar.
func signerKey(seed string, i int) (*ecdsa.PrivateKey, error) {
	if seed == "" {
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate key: %w", err)
		}
		return priv, nil
	}
	for try := 0; ; try++ {
		d := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d", seed, i, try))
		if priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:]); err == nil {
			return priv, nil
		} else if try == 9 {
			return nil, fmt.Errorf("derive key %d: %w", i, err)
		}
	}
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
