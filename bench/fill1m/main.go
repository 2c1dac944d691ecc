// Command fill1m builds the large ledgers of bench/verify-1m.sh, and feeds a
// running ledger for its tail case.
//
// Build mode opens a ledger in-process on POSIX storage (ledger.New with
// posix.New, the ledger notarize-ledger runs) and submits N signed
// statements through Ledger.Submit from a bounded number of goroutines:
// every entry is a real statement, signed by one of K keys (newSigners),
// checked at submission and again by the ledger's index follower, and the
// verifiable index is folded and committed by the ledger's own map follower.
// It skips only HTTP. Most statements are about a digest of their own; the
// digest under test (-subject) gets a short history by the test key (trusted,
// untrusted, trusted again: the newest is current) and one statement each
// by a few other keys, spread over the log. Once everything is submitted it
// waits until the newest committed map root is the log's last entry (the
// steady state of an idle ledger), closes the ledger and prints a summary.
//
//	fill1m -dir DATA -n 1000000 -keys 300 -subject sha256:… -pub test.pub
//
// Feed mode (-submit URL) signs fresh statements about random digests and
// POSTs them to a running ledger's /api/v1/entries at -rate per second until
// -duration passes or it is interrupted; it prints how many were logged.
package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/storage/posix"
	"github.com/notarize/docker-notarize/notarize"
)

// flags are the command-line flags.
type flags struct {
	dir, subject, pub, origin string
	n, keys, clients          int

	submit     string
	cpuProfile string
	rate       float64
	duration   time.Duration
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var o flags
	flag.StringVar(&o.dir, "dir", "", "build mode: the new ledger's POSIX data `directory` (must not hold a ledger)")
	flag.IntVar(&o.n, "n", 1_000_000, "build mode: statements to log (map roots come on top)")
	flag.IntVar(&o.keys, "keys", 300, "signer keys; the first is the test key")
	flag.StringVar(&o.subject, "subject", "", "build mode: the `digest` under test (sha256:…)")
	flag.StringVar(&o.pub, "pub", "", "build mode: write the test key's PEM public key to this `file`")
	flag.StringVar(&o.origin, "origin", "bench.test/notarize-ledger", "build mode: the log's origin")
	flag.IntVar(&o.clients, "clients", 256, "concurrent submissions")
	flag.StringVar(&o.submit, "submit", "", "feed mode: the running ledger's base `URL`")
	flag.Float64Var(&o.rate, "rate", 500, "feed mode: statements per second")
	flag.DurationVar(&o.duration, "duration", time.Hour, "feed mode: how long to feed")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile to this `file`")
	flag.Parse()
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "fill1m: -cpuprofile:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	var err error
	if o.submit != "" {
		err = feed(ctx, o)
	} else {
		err = build(ctx, o)
	}
	if err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "fill1m:", err)
		os.Exit(1)
	}
}

// newSigners returns k fresh signers: the first, the test key, is ECDSA
// P-256, the kind of key `docker notarize key generate` makes; the others
// are Ed25519, whose signatures cost the fill less to make and to check
// (the ledger checks each entry at submission and again in its index
// follower). verify checks only the test key's entries.
func newSigners(k int) ([]signature.SignerVerifier, error) {
	out := make([]signature.SignerVerifier, k)
	for i := range out {
		var priv crypto.Signer
		var err error
		if i == 0 {
			priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		} else {
			_, priv, err = ed25519.GenerateKey(rand.Reader)
		}
		if err != nil {
			return nil, fmt.Errorf("generate key: %w", err)
		}
		if out[i], err = signature.LoadSignerVerifier(priv, notarize.HashFor(priv.Public())); err != nil {
			return nil, fmt.Errorf("load key: %w", err)
		}
	}
	return out, nil
}

// statement is the i-th statement of a fill: its key, subject and status.
type statement struct {
	key    int
	digest notarize.Digest
	status notarize.Status
	at     time.Time
}

// plan returns what the i-th of n statements says. Statements at a few
// fixed fractions of the log are about the subject: the test key's history
// (trusted at n/10, untrusted at n/3, trusted again at 2n/3, each signed
// later than the one before) and one statement by each of up to 20 other
// keys; every other statement is about a digest of its own, by key i mod k.
func plan(i, n, k int, subject notarize.Digest, base time.Time, seed string) statement {
	at := base.Add(time.Duration(i) * time.Millisecond)
	switch {
	case i == n/10:
		return statement{0, subject, notarize.StatusTrusted, at}
	case i == n/3:
		return statement{0, subject, notarize.StatusUntrusted, at}
	case i == 2*n/3:
		return statement{0, subject, notarize.StatusTrusted, at}
	}
	others := min(20, k-1)
	if step := n / (others + 1); others > 0 && step > 1 && i%step == step/2 && i/step < others {
		return statement{1 + i/step, subject, []notarize.Status{notarize.StatusTrusted, notarize.StatusUntrusted}[i/step%2], at}
	}
	status := notarize.StatusTrusted
	switch i % 100 {
	case 7, 37, 67, 97, 17:
		status = notarize.StatusUntrusted
	case 50:
		status = notarize.StatusUnsupported
	}
	h := sha256.Sum256(fmt.Appendf(nil, "fill1m/%s/%d", seed, i))
	return statement{i % k, notarize.Digest("sha256:" + hex.EncodeToString(h[:])), status, at}
}

// sign returns the ledger entry of s, signed by signers[s.key].
func sign(ctx context.Context, signers []signature.SignerVerifier, s statement, i int) (*notarize.Entry, error) {
	st := notarize.NewStatement(s.digest, fmt.Sprintf("registry.bench.test/team-%d/app:%d", i%997, i), notarize.Predicate{
		Status:    s.status,
		MediaType: "application/vnd.oci.image.manifest.v1+json",
		Size:      int64(400 + i%2000),
		Kind:      notarize.KindImage,
		Name:      fmt.Sprintf("signer-%d", s.key),
		Timestamp: s.at,
	})
	e, err := notarize.Sign(ctx, signers[s.key], st)
	if err != nil {
		return nil, fmt.Errorf("statement %d: %w", i, err)
	}
	return e, nil
}

// build fills a new ledger in o.dir with o.n statements.
func build(ctx context.Context, o flags) error {
	if o.dir == "" || o.subject == "" || o.pub == "" {
		return errors.New("build mode needs -dir, -subject and -pub (or -submit URL for feed mode)")
	}
	subject, err := notarize.ParseDigest(o.subject)
	if err != nil {
		return fmt.Errorf("-subject: %w", err)
	}
	if o.n < 10 || o.keys < 1 || o.clients < 1 {
		return fmt.Errorf("-n %d, -keys %d, -clients %d: want at least 10, 1, 1", o.n, o.keys, o.clients)
	}
	if _, err := os.Stat(o.dir + "/" + posix.IndexFile); err == nil {
		return fmt.Errorf("%s already holds a ledger", o.dir)
	}
	signers, err := newSigners(o.keys)
	if err != nil {
		return err
	}
	if err := writePublicKey(ctx, signers[0], o.pub); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := posix.New(ctx, posix.Config{Dir: o.dir, Logger: logger})
	if err != nil {
		return err
	}
	l, err := ledger.New(ctx, st, ledger.Config{Origin: o.origin, Logger: logger, RateLimits: ledger.RateLimits{Off: true}})
	if err != nil {
		return err
	}
	fillErr := fill(ctx, l, signers, subject, o)
	if fillErr == nil {
		fillErr = awaitRoot(ctx, l, subject, signers[0])
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	info, infoErr := l.Info(cctx)
	closeErr := l.Close(cctx)
	if err := errors.Join(fillErr, infoErr, closeErr); err != nil {
		return err
	}
	keyID, err := publicKeyID(ctx, signers[0])
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"size": info.Size, "statements": o.n, "keys": o.keys, "subject": subject,
		"testKeyID": keyID, "origin": info.Origin, "verifierKey": info.VerifierKey,
	})
}

// fill submits the o.n statements of plan from o.clients goroutines,
// retrying those the ledger answers ErrUnavailable (pushback).
func fill(ctx context.Context, l *ledger.Ledger, signers []signature.SignerVerifier, subject notarize.Digest, o flags) error {
	base := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	seed := hex.EncodeToString(fmt.Append(nil, time.Now().UnixNano()))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	for range o.clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= o.n {
					return
				}
				e, err := sign(ctx, signers, plan(i, o.n, o.keys, subject, base, seed), i)
				if err == nil {
					err = submit(ctx, l, e)
				}
				if err != nil {
					cancel(err)
					return
				}
				done.Add(1)
			}
		})
	}
	stopProgress := progress(&done, o.n)
	wg.Wait()
	stopProgress()
	if err := context.Cause(ctx); err != nil {
		return fmt.Errorf("fill: %w", err)
	}
	return nil
}

// submit appends e, retrying while the ledger pushes back.
func submit(ctx context.Context, l *ledger.Ledger, e *notarize.Entry) error {
	for {
		_, err := l.Submit(ctx, e)
		if !errors.Is(err, ledger.ErrUnavailable) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// progress prints the count of logged statements every ten seconds until
// the returned function is called.
func progress(done *atomic.Int64, n int) func() {
	stop := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				d := done.Load()
				fmt.Fprintf(os.Stderr, "fill1m: %d/%d statements logged, %.0f/s\n", d, n, float64(d)/time.Since(start).Seconds())
			}
		}
	}()
	return func() { close(stop); <-finished }
}

// awaitRoot waits until the ledger's newest committed map root is the
// log's last entry: a current lookup's map proof names the root at index
// size-1 of the latest checkpoint.
func awaitRoot(ctx context.Context, l *ledger.Ledger, subject notarize.Digest, test signature.SignerVerifier) error {
	keyID, err := publicKeyID(ctx, test)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		info, err := l.Info(ctx)
		if err != nil {
			return err
		}
		resp, err := l.Current(ctx, subject, []string{keyID})
		if err != nil {
			return err
		}
		if resp.Map != nil && resp.Map.RootIndex != nil && *resp.Map.RootIndex+1 == info.Size {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for a map root covering the log: %w", ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func publicKeyID(ctx context.Context, s signature.SignerVerifier) (string, error) {
	pub, err := s.PublicKey(options.WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("public key: %w", err)
	}
	return notarize.KeyID(pub)
}

// writePublicKey writes s's PEM public key to path, for `docker notarize
// key import`.
func writePublicKey(ctx context.Context, s signature.SignerVerifier, path string) error {
	pub, err := s.PublicKey(options.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("public key: %w", err)
	}
	b, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return fmt.Errorf("public key: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write the test key: %w", err)
	}
	return nil
}

// feed POSTs fresh statements to the ledger at o.submit, o.rate a second.
func feed(ctx context.Context, o flags) error {
	if o.rate <= 0 || o.keys < 1 || o.clients < 1 {
		return fmt.Errorf("-rate %v, -keys %d, -clients %d: want positive values", o.rate, o.keys, o.clients)
	}
	signers, err := newSigners(o.keys)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	tick := time.NewTicker(time.Duration(float64(time.Second) / o.rate))
	defer tick.Stop()
	jobs := make(chan int)
	var logged, failed atomic.Int64
	var firstErr atomic.Value
	client := &http.Client{Timeout: time.Minute}
	seed := hex.EncodeToString(fmt.Append(nil, time.Now().UnixNano()))
	var wg sync.WaitGroup
	for range o.clients {
		wg.Go(func() {
			for i := range jobs {
				s := plan(i+1, 1, o.keys, "", time.Now().Add(-time.Minute), seed) // i+1 ≥ 1: never the subject
				s.at = time.Now()
				if err := post(ctx, client, o.submit, signers, s, i); err != nil {
					if ctx.Err() == nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err)
					}
					continue
				}
				logged.Add(1)
			}
		})
	}
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
		case <-tick.C:
			select {
			case jobs <- i:
				continue
			case <-ctx.Done():
			}
		}
		break
	}
	close(jobs)
	wg.Wait()
	fmt.Printf("fed %d statements, %d failed\n", logged.Load(), failed.Load())
	if err, ok := firstErr.Load().(error); ok && err != nil {
		return fmt.Errorf("feed: %d submissions failed, the first: %w", failed.Load(), err)
	}
	return nil
}

// post signs s and submits it over HTTP.
func post(ctx context.Context, client *http.Client, base string, signers []signature.SignerVerifier, s statement, i int) error {
	e, err := sign(ctx, signers, s, i)
	if err != nil {
		return err
	}
	body, err := e.Marshal()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+api.PathEntries, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("submit: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("submit: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
