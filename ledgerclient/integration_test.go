package ledgerclient_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"

	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

var t0 = time.Now().Add(-time.Hour).UTC().Truncate(time.Second)

func digest(s string) notarize.Digest { return notarize.DigestOf([]byte(s)) }

func newClient(t testing.TB, url, home, key string) *ledgerclient.Client {
	t.Helper()
	c, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: url, Home: home, VerifierKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func submit(t testing.TB, c *ledgerclient.Client, e *notarize.Entry) *ledgerclient.SubmitResult {
	t.Helper()
	res, err := c.Submit(t.Context(), e)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// stateFile returns the bytes of the only stored checkpoint under home.
func stateFile(t testing.TB, home string) []byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(home, "ledgers", "*", "checkpoint"))
	if err != nil || len(paths) != 1 {
		t.Fatalf("state files %v, %v", paths, err)
	}
	b, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// proxy is a reverse proxy in front of one ledger or another, which can
// rewrite the answers: a ledger that lies, forks or rolls back.
type proxy struct {
	URL string
	mu  sync.Mutex
	to  *url.URL
	// rewrite changes the body of the answer to a request.
	rewrite func(r *http.Request, body []byte) []byte
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	p := &proxy{}
	p.switchTo(t, target)
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			p.mu.Lock()
			defer p.mu.Unlock()
			pr.SetURL(p.to)
		},
		ModifyResponse: func(resp *http.Response) error {
			p.mu.Lock()
			rw := p.rewrite
			p.mu.Unlock()
			if rw == nil {
				return nil
			}
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			resp.Body.Close()
			b = rw(resp.Request, b)
			resp.Body = io.NopCloser(bytes.NewReader(b))
			resp.ContentLength = int64(len(b))
			resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
			return nil
		},
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

func (p *proxy) switchTo(t *testing.T, target string) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.to = u
	p.mu.Unlock()
}

func (p *proxy) setRewrite(f func(r *http.Request, body []byte) []byte) {
	p.mu.Lock()
	p.rewrite = f
	p.mu.Unlock()
}

func TestLedgerRoundTrip(t *testing.T) {
	srv := ledgertest.Start(t)
	home := t.TempDir()
	c := newClient(t, srv.URL, home, "") // trust on first use
	if c.VerifierKey() != srv.VerifierKey || c.Origin() != srv.Origin {
		t.Fatalf("pinned %q (%q), want %q (%q)", c.VerifierKey(), c.Origin(), srv.VerifierKey, srv.Origin)
	}
	s := notarizetest.NewSigner(t)
	a, b := digest("a"), digest("b")
	e1 := notarizetest.Entry(t, s, a, notarize.StatusTrusted, t0)
	r1 := submit(t, c, e1)
	submit(t, c, notarizetest.Entry(t, s, b, notarize.StatusTrusted, t0))
	r3 := submit(t, c, notarizetest.Entry(t, s, a, notarize.StatusUntrusted, t0.Add(time.Minute)))
	if r1.Record.Statement.Digest() != a || r3.Checkpoint.Size <= r3.Index || !bytes.Equal(stateFile(t, home), r3.Checkpoint.Raw) {
		t.Fatalf("receipt %+v", r3)
	}
	res, err := c.Lookup(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Records) != 2 || res.Records[0].Index != r1.Index || res.Records[1].Index != r3.Index {
		t.Fatalf("records %+v", res.Records)
	}
	keyID := r1.Record.KeyID
	if d := notarize.Decide(res.Records, a, []string{keyID}); d.Verdict != notarize.Untrusted {
		t.Fatalf("verdict %v", d.Verdict)
	}
	dup, err := c.Submit(t.Context(), e1)
	if err != nil || !dup.Duplicate || dup.Index != r1.Index {
		t.Fatalf("duplicate: %+v, %v", dup, err)
	}

	// A restarted ledger keeps everything, and a second client uses the pin.
	srv.Restart(t)
	c2 := newClient(t, srv.URL, home, "")
	cp, err := c2.Latest(t.Context())
	if err != nil || cp.Size < r3.Index+1 {
		t.Fatalf("latest after restart: %+v, %v", cp, err)
	}
	res, err = c2.Lookup(t.Context(), a)
	if err != nil || len(res.Records) != 2 {
		t.Fatalf("lookup after restart: %v, %+v", err, res)
	}
	none, err := c2.Lookup(t.Context(), digest("never signed"))
	if err != nil || len(none.Records) != 0 {
		t.Fatalf("lookup of an unknown digest: %v, %+v", err, none)
	}

	t.Run("refusals are API errors", func(t *testing.T) {
		_, err := c2.Submit(t.Context(), notarizetest.Entry(t, s, a, notarize.StatusTrusted, time.Now().Add(24*time.Hour)))
		var ae *ledgerclient.APIError
		if !errors.As(err, &ae) || ae.StatusCode/100 != 4 || ae.Code != api.CodeFuture {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestLedgerKeyMismatch(t *testing.T) {
	a := ledgertest.Start(t)
	b := ledgertest.Start(t) // its own key, same default origin
	p := newProxy(t, a.URL)
	home := t.TempDir()
	c := newClient(t, p.URL, home, "")
	submit(t, c, notarizetest.Entry(t, notarizetest.NewSigner(t), digest("x"), notarize.StatusTrusted, t0))
	stored := stateFile(t, home)

	p.switchTo(t, b.URL)
	c = newClient(t, p.URL, home, "") // the pin is used: no error yet
	for name, call := range map[string]func() error{
		"latest": func() error { _, err := c.Latest(t.Context()); return err },
		"lookup": func() error { _, err := c.Lookup(t.Context(), digest("x")); return err },
		"submit": func() error {
			_, err := c.Submit(t.Context(), notarizetest.Entry(t, notarizetest.NewSigner(t), digest("y"), notarize.StatusTrusted, t0))
			return err
		},
	} {
		err := call()
		if !errors.Is(err, ledgerclient.ErrKeyMismatch) || !strings.Contains(err.Error(), a.VerifierKey) || !strings.Contains(err.Error(), b.VerifierKey) {
			t.Fatalf("%s: err = %v, want ErrKeyMismatch naming both keys", name, err)
		}
	}
	if !bytes.Equal(stateFile(t, home), stored) {
		t.Fatal("state changed")
	}

	// A configured key wins over what the ledger announces.
	c = newClient(t, b.URL, t.TempDir(), a.VerifierKey)
	if _, err := c.Latest(t.Context()); !errors.Is(err, ledgerclient.ErrKeyMismatch) {
		t.Fatalf("configured key: %v", err)
	}
}

func TestLedgerFork(t *testing.T) {
	a := ledgertest.Start(t)
	b := ledgertest.Start(t, ledgertest.WithSignerKey(a.SignerKey), ledgertest.WithOrigin(a.Origin))
	if b.VerifierKey != a.VerifierKey {
		t.Fatal("the fork does not share the key")
	}
	p := newProxy(t, a.URL)
	home := t.TempDir()
	c := newClient(t, p.URL, home, "")
	s := notarizetest.NewSigner(t)
	submit(t, c, notarizetest.Entry(t, s, digest("a"), notarize.StatusTrusted, t0))
	submit(t, c, notarizetest.Entry(t, s, digest("b"), notarize.StatusTrusted, t0))
	stored := stateFile(t, home)

	// b has another history: first as long as a's, then longer.
	cb := newClient(t, b.URL, t.TempDir(), b.VerifierKey)
	submit(t, cb, notarizetest.Entry(t, s, digest("a"), notarize.StatusUntrusted, t0))
	submit(t, cb, notarizetest.Entry(t, s, digest("c"), notarize.StatusTrusted, t0))
	p.switchTo(t, b.URL)
	check := func(t *testing.T, op string, err error, gotSize uint64) {
		t.Helper()
		var fe *ledgerclient.ForkError
		if !errors.As(err, &fe) {
			t.Fatalf("%s: err = %v, want *ForkError", op, err)
		}
		if !bytes.Equal(fe.Stored.Raw, stored) || fe.Stored.Size != 2 || fe.Got.Size != gotSize || len(fe.Got.Raw) == 0 {
			t.Fatalf("%s: fork error stored %d got %d: %v", op, fe.Stored.Size, fe.Got.Size, fe)
		}
		if !bytes.Equal(stateFile(t, home), stored) {
			t.Fatalf("%s: state file changed", op)
		}
	}
	_, err := c.Latest(t.Context())
	check(t, "latest, same size", err, 2)

	submit(t, cb, notarizetest.Entry(t, s, digest("d"), notarize.StatusTrusted, t0))
	_, err = c.Latest(t.Context())
	check(t, "latest, larger", err, 3)
	_, err = c.Lookup(t.Context(), digest("a"))
	check(t, "lookup", err, 3)
	_, err = c.Submit(t.Context(), notarizetest.Entry(t, s, digest("e"), notarize.StatusTrusted, t0))
	check(t, "submit", err, 4)

	// Back on the honest ledger, all is well again.
	p.switchTo(t, a.URL)
	if _, err := c.Latest(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestLedgerRollback(t *testing.T) {
	srv := ledgertest.Start(t)
	p := newProxy(t, srv.URL)
	home := t.TempDir()
	c := newClient(t, p.URL, home, "")
	s := notarizetest.NewSigner(t)
	first := submit(t, c, notarizetest.Entry(t, s, digest("a"), notarize.StatusTrusted, t0))
	submit(t, c, notarizetest.Entry(t, s, digest("a"), notarize.StatusUntrusted, t0.Add(time.Minute)))
	if _, err := c.Latest(t.Context()); err != nil {
		t.Fatal(err)
	}
	stored := stateFile(t, home)
	old := first.Checkpoint.Raw
	p.setRewrite(func(r *http.Request, body []byte) []byte {
		switch {
		case r.URL.Path == "/checkpoint":
			return old
		case strings.HasPrefix(r.URL.Path, api.PathDigests):
			// The answer from before the revocation.
			var resp api.LookupResponse
			if err := json.Unmarshal(body, &resp); err != nil {
				t.Error(err)
				return body
			}
			resp.Checkpoint = string(old)
			resp.Entries = resp.Entries[:1]
			out, _ := json.Marshal(resp)
			return out
		}
		return body
	})
	for op, call := range map[string]func() error{
		"latest": func() error { _, err := c.Latest(t.Context()); return err },
		"lookup": func() error { _, err := c.Lookup(t.Context(), digest("a")); return err },
	} {
		var fe *ledgerclient.ForkError
		if err := call(); !errors.As(err, &fe) || fe.Got.Size != first.Checkpoint.Size || !bytes.Equal(fe.Stored.Raw, stored) {
			t.Fatalf("%s: err = %v, want a rollback", op, err)
		}
		if !bytes.Equal(stateFile(t, home), stored) {
			t.Fatalf("%s: state changed", op)
		}
	}
}

// signedWith signs the checkpoint body of raw again with another key.
func signedWith(t *testing.T, raw []byte, origin string) []byte {
	t.Helper()
	skey, _, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	text := raw[:bytes.Index(raw, []byte("\n\n"))+1]
	out, err := note.Sign(&note.Note{Text: string(text)}, signer)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestLedgerLies(t *testing.T) {
	srv := ledgertest.Start(t)
	s := notarizetest.NewSigner(t)
	a, b := digest("a"), digest("b")
	seed := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	for _, e := range []*notarize.Entry{
		notarizetest.Entry(t, s, a, notarize.StatusTrusted, t0), notarizetest.Entry(t, s, b, notarize.StatusTrusted, t0), notarizetest.Entry(t, s, a, notarize.StatusUnsupported, t0.Add(time.Second)),
	} {
		submit(t, seed, e)
	}
	flipProof := func(field string) func(r *http.Request, body []byte) []byte {
		return func(r *http.Request, body []byte) []byte {
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				return body
			}
			var proof []any
			if field == "receipt" {
				proof, _ = m["inclusionProof"].([]any)
			} else if es, _ := m["entries"].([]any); len(es) > 0 {
				proof, _ = es[len(es)-1].(map[string]any)["inclusionProof"].([]any)
			}
			if len(proof) == 0 {
				return body
			}
			h := []byte(proof[0].(string))
			h[5] ^= 1 // still base64, another hash
			proof[0] = string(h)
			out, _ := json.Marshal(m)
			return out
		}
	}
	for _, tc := range []struct {
		name    string
		rewrite func(t *testing.T, r *http.Request, body []byte) []byte
		op      string // latest (after the ledger grew), lookup or submit
		want    error
	}{
		{"bit-flipped tiles", func(t *testing.T, r *http.Request, body []byte) []byte {
			if strings.HasPrefix(r.URL.Path, "/tile/") && !strings.HasPrefix(r.URL.Path, "/tile/entries/") && len(body) > 0 {
				body = bytes.Clone(body)
				body[len(body)-1] ^= 0x10
			}
			return body
		}, "latest", ledgerclient.ErrBadProof},
		{"bad inclusion proof in a lookup", func(t *testing.T, r *http.Request, body []byte) []byte {
			if strings.HasPrefix(r.URL.Path, api.PathDigests) {
				return flipProof("lookup")(r, body)
			}
			return body
		}, "lookup", ledgerclient.ErrBadProof},
		{"bad inclusion proof in a receipt", func(t *testing.T, r *http.Request, body []byte) []byte {
			if r.URL.Path == api.PathEntries {
				return flipProof("receipt")(r, body)
			}
			return body
		}, "submit", ledgerclient.ErrBadProof},
		{"entry about another digest", func(t *testing.T, r *http.Request, body []byte) []byte {
			if !strings.HasPrefix(r.URL.Path, api.PathDigests) {
				return body
			}
			// Answer with b's entries, genuinely in the log and proven.
			resp, err := http.Get(srv.URL + api.PathDigests + b.String())
			if err != nil {
				t.Error(err)
				return body
			}
			defer resp.Body.Close()
			var lr api.LookupResponse
			if err := json.NewDecoder(resp.Body).Decode(&lr); err != nil {
				t.Error(err)
			}
			lr.Digest = a.String()
			out, _ := json.Marshal(lr)
			return out
		}, "lookup", ledgerclient.ErrBadProof},
		{"tampered envelope", func(t *testing.T, r *http.Request, body []byte) []byte {
			if !strings.HasPrefix(r.URL.Path, api.PathDigests) {
				return body
			}
			var lr api.LookupResponse
			if err := json.Unmarshal(body, &lr); err != nil || len(lr.Entries) == 0 {
				t.Errorf("lookup answer %s: %v", body, err)
				return body
			}
			e, err := notarize.ParseEntry(lr.Entries[0].Entry)
			if err != nil {
				t.Error(err)
				return body
			}
			// Turn "trusted" into "untrusted" without the signer's key.
			st, _ := notarize.ParseStatement([]byte(mustDecode(t, e.Envelope.Payload)))
			st.Predicate.Status = notarize.StatusUntrusted
			payload, _ := st.Marshal()
			e.Envelope.Payload = encode(payload)
			lr.Entries[0].Entry, _ = e.Marshal()
			out, _ := json.Marshal(lr)
			return out
		}, "lookup", ledgerclient.ErrBadProof},
		{"checkpoint signed by another key", func(t *testing.T, r *http.Request, body []byte) []byte {
			if r.URL.Path == "/checkpoint" {
				return signedWith(t, body, srv.Origin)
			}
			return body
		}, "latest", ledgerclient.ErrKeyMismatch},
		{"checkpoint signed by another log", func(t *testing.T, r *http.Request, body []byte) []byte {
			if r.URL.Path == "/checkpoint" {
				return signedWith(t, body, "evil.test/log")
			}
			return body
		}, "latest", ledgerclient.ErrBadCheckpoint},
		{"unsigned checkpoint in a receipt", func(t *testing.T, r *http.Request, body []byte) []byte {
			if r.URL.Path != api.PathEntries {
				return body
			}
			var rc api.Receipt
			if err := json.Unmarshal(body, &rc); err != nil {
				return body
			}
			rc.Checkpoint = rc.Checkpoint[:strings.Index(rc.Checkpoint, "\n\n")+1]
			out, _ := json.Marshal(rc)
			return out
		}, "submit", ledgerclient.ErrBadCheckpoint},
		{"checkpoint of another origin in a lookup", func(t *testing.T, r *http.Request, body []byte) []byte {
			if !strings.HasPrefix(r.URL.Path, api.PathDigests) {
				return body
			}
			var lr api.LookupResponse
			if err := json.Unmarshal(body, &lr); err != nil {
				return body
			}
			cp := &log.Checkpoint{}
			if _, err := cp.Unmarshal([]byte(lr.Checkpoint)); err != nil {
				t.Error(err)
			}
			cp.Origin = "evil.test/log"
			lr.Checkpoint = string(cp.Marshal()) + lr.Checkpoint[strings.Index(lr.Checkpoint, "\n\n")+1:]
			out, _ := json.Marshal(lr)
			return out
		}, "lookup", ledgerclient.ErrBadCheckpoint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProxy(t, srv.URL)
			home := t.TempDir()
			c := newClient(t, p.URL, home, srv.VerifierKey)
			if _, err := c.Latest(t.Context()); err != nil {
				t.Fatal(err)
			}
			if tc.op == "latest" { // make the ledger grow, so that a consistency proof is needed
				submit(t, seed, notarizetest.Entry(t, s, digest(tc.name), notarize.StatusTrusted, t0))
			}
			stored := stateFile(t, home)
			p.setRewrite(func(r *http.Request, body []byte) []byte { return tc.rewrite(t, r, body) })
			var err error
			switch tc.op {
			case "latest":
				_, err = c.Latest(t.Context())
			case "lookup":
				var res *ledgerclient.LookupResult
				res, err = c.Lookup(t.Context(), a)
				if res != nil {
					t.Fatalf("a result with the error: %+v", res)
				}
			case "submit":
				_, err = c.Submit(t.Context(), notarizetest.Entry(t, s, digest(tc.name), notarize.StatusTrusted, t0))
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.op != "submit" && !bytes.Equal(stateFile(t, home), stored) {
				t.Fatal("state changed")
			}
		})
	}
}

func TestLedgerConcurrentClientsShareHome(t *testing.T) {
	srv := ledgertest.Start(t)
	home := t.TempDir()
	newClient(t, srv.URL, home, "") // pin
	const clients, rounds = 4, 3
	s := notarizetest.NewSigner(t)
	var wg sync.WaitGroup
	errs := make(chan error, clients*rounds*3)
	stop := make(chan struct{})
	var sizes []uint64
	watched := make(chan struct{})
	go func() { // a watcher reading the state as another process would
		defer close(watched)
		v, err := note.NewVerifier(srv.VerifierKey)
		if err != nil {
			errs <- err
			return
		}
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			paths, _ := filepath.Glob(filepath.Join(home, "ledgers", "*", "checkpoint"))
			for _, p := range paths {
				raw, err := os.ReadFile(p)
				if err != nil {
					errs <- err
					return
				}
				cp, _, _, err := log.ParseCheckpoint(raw, srv.Origin, v)
				if err != nil {
					errs <- fmt.Errorf("state file: %w", err)
					return
				}
				sizes = append(sizes, cp.Size)
			}
		}
	}()
	for i := range clients {
		c := newClient(t, srv.URL, home, "")
		wg.Go(func() {
			for r := range rounds {
				d := digest(fmt.Sprintf("%d/%d", i, r))
				if _, err := c.Submit(t.Context(), notarizetest.Entry(t, s, d, notarize.StatusTrusted, t0)); err != nil {
					errs <- err
				}
				if _, err := c.Latest(t.Context()); err != nil {
					errs <- err
				}
				if res, err := c.Lookup(t.Context(), d); err != nil || len(res.Records) != 1 {
					errs <- fmt.Errorf("lookup: %v", err)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-watched
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i := 1; i < len(sizes); i++ {
		if sizes[i] < sizes[i-1] {
			t.Fatalf("state moved backwards from %d to %d", sizes[i-1], sizes[i])
		}
	}
	if len(sizes) == 0 || sizes[len(sizes)-1] != clients*rounds {
		t.Fatalf("final state %v, want size %d", sizes[max(0, len(sizes)-1):], clients*rounds)
	}
}

// TestResignedStatementReceipt: a statement is logged once, so submitting
// it again signed anew (other signature bytes, same key and payload) is
// answered as a duplicate carrying the entry as first logged; the client
// accepts that receipt, and refuses one that names another statement.
func TestResignedStatementReceipt(t *testing.T) {
	srv := ledgertest.Start(t)
	c := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	s := notarizetest.NewSigner(t)
	st := notarize.NewStatement(digest("resigned"), "registry.test/app:1", notarize.Predicate{
		Status: notarize.StatusTrusted, Kind: notarize.KindImage, Name: "test", Timestamp: t0,
	})
	first, err := notarize.Sign(t.Context(), s, st)
	if err != nil {
		t.Fatal(err)
	}
	again, err := notarize.Sign(t.Context(), s, st)
	if err != nil {
		t.Fatal(err)
	}
	if first.Envelope.Signatures[0].Sig == again.Envelope.Signatures[0].Sig {
		t.Fatal("two ECDSA signatures of one statement are equal: the test needs them to differ")
	}
	r1 := submit(t, c, first)
	r2, err := c.Submit(t.Context(), again)
	if err != nil {
		t.Fatalf("re-signed statement: %v", err)
	}
	if !r2.Duplicate || r2.Index != r1.Index {
		t.Fatalf("re-signed statement: duplicate %v at %d, want a duplicate of %d", r2.Duplicate, r2.Index, r1.Index)
	}
}

// TestLookupRacingAReceipt: a lookup answered at checkpoint N while a
// concurrent submission's receipt stores N+1 (another goroutine or process
// sharing the client's home) is no rollback: the answer was the newest when
// it was sent, and it is a prefix of the stored checkpoint. Before, the
// stored checkpoint was read after the answer arrived, and the race made
// `key rotate` fail with "rolled back its history". A rollback from before
// the request was sent is still one (TestLedgerRollback).
func TestLookupRacingAReceipt(t *testing.T) {
	srv := ledgertest.Start(t)
	p := newProxy(t, srv.URL)
	home := t.TempDir()
	c := newClient(t, p.URL, home, "")
	other := newClient(t, srv.URL, home, srv.VerifierKey) // the same home, straight to the ledger
	s := notarizetest.NewSigner(t)
	submit(t, c, notarizetest.Entry(t, s, digest("a"), notarize.StatusTrusted, t0))
	var raced atomic.Int32
	p.setRewrite(func(r *http.Request, body []byte) []byte {
		if strings.HasPrefix(r.URL.Path, api.PathDigests) && raced.Add(1) == 1 {
			// The answer has left the ledger; a receipt lands first.
			submit(t, other, notarizetest.Entry(t, s, digest("b"), notarize.StatusTrusted, t0))
		}
		return body
	})
	for op, call := range map[string]func() error{
		"current": func() error { _, err := c.Current(t.Context(), digest("a"), notarizetest.KeyID(t, s)); return err },
		"lookup":  func() error { _, err := c.Lookup(t.Context(), digest("a")); return err },
	} {
		raced.Store(0)
		if err := call(); err != nil {
			t.Fatalf("%s racing a receipt: %v", op, err)
		}
		if raced.Load() == 0 {
			t.Fatalf("%s: the front saw no lookup", op)
		}
	}
}
