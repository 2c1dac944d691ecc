package ledger

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/storage/posix"
	"github.com/notarize/docker-notarize/ledger/witnesstest"
	"github.com/notarize/docker-notarize/notarize"
	f_note "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"
)

// witnessedConfig returns a config with a fresh note key for origin, so
// that witnesses can be told the ledger's key before its first checkpoint
// (which must already be witnessed), and the verifier key.
func witnessedConfig(t testing.TB, origin string) (Config, string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		Origin:             origin,
		NoteSignerKey:      skey,
		CheckpointInterval: 200 * time.Millisecond,
		WitnessTimeout:     2 * time.Second,
		ReceiptTimeout:     3 * time.Second,
	}, vkey
}

// checkCosigned fails unless raw carries a valid cosignature of each of
// want, and of none of the other witnesses of all.
func checkCosigned(t testing.TB, raw []byte, all []*witnesstest.Witness, want ...string) time.Time {
	t.Helper()
	got, newest, err := witnesstest.Cosigners(raw, all...)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Fatalf("checkpoint lacks %s's cosignature (cosigned by %v):\n%s", w, got, raw)
		}
	}
	return newest
}

// publishedCheckpoint returns the ledger's /checkpoint.
func (tl *testLedger) publishedCheckpoint(t testing.TB) []byte {
	t.Helper()
	status, _, b := do(t, http.MethodGet, tl.url+"/"+layout.CheckpointPath, nil)
	if status != http.StatusOK {
		t.Fatalf("GET checkpoint: status %d: %s", status, b)
	}
	return b
}

// TestWitnessQuorum runs a ledger with a 2-of-3 witness policy against
// three real omniwitness processes: receipts and /checkpoint carry at
// least two valid cosignatures; with one witness down the quorum is still
// met; with two down a submission is answered 503 with Retry-After within
// the receipt timeout, not left hanging; once one witness is back
// (restarted on its database) the statement is published and found, so
// nothing acknowledged is lost; and checkpoints are re-witnessed without
// new entries (freshness).
func TestWitnessQuorum(t *testing.T) {
	t.Parallel()
	cfg, vkey := witnessedConfig(t, "example.com/witnessed-ledger")
	ws := witnesstest.StartN(t, 3, cfg.Origin, vkey)
	cfg.WitnessPolicy = witnesstest.Policy(2, ws...)
	cfg.CheckpointRepublishInterval = time.Second
	tl := startLedger(t, cfg)
	if !tl.Witnessed() {
		t.Fatal("Witnessed() is false with a 2-of-3 policy")
	}
	s := newTestSigner(t)

	t.Run("quorum met", func(t *testing.T) {
		e := s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())
		rec := tl.submit(t, e, http.StatusCreated)
		tl.checkReceipt(t, rec, mustMarshal(t, e))
		got, _, err := witnesstest.Cosigners([]byte(rec.Checkpoint), ws...)
		if err != nil || len(got) < 2 {
			t.Fatalf("receipt checkpoint cosigned by %v (%v), want at least 2 of 3:\n%s", got, err, rec.Checkpoint)
		}
		got, _, err = witnesstest.Cosigners(tl.publishedCheckpoint(t), ws...)
		if err != nil || len(got) < 2 {
			t.Fatalf("/checkpoint cosigned by %v (%v), want at least 2 of 3", got, err)
		}
		if age := tl.metric(t, "notarize_ledger_witness_cosignature_age_seconds"); age < 0 || age > 60 {
			t.Fatalf("cosignature age %v s just after a cosigned receipt", age)
		}
	})

	t.Run("republished and re-witnessed without new entries", func(t *testing.T) {
		_, first, _ := witnesstest.Cosigners(tl.publishedCheckpoint(t), ws...)
		deadline := time.Now().Add(15 * time.Second)
		for {
			raw := tl.publishedCheckpoint(t)
			_, newest, err := witnesstest.Cosigners(raw, ws...)
			if err != nil {
				t.Fatal(err)
			}
			if newest.After(first) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the newest cosignature is still from %v: the checkpoint is not re-witnessed", first)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("one witness down", func(t *testing.T) {
		ws[2].Stop(t)
		e := s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())
		rec := tl.submit(t, e, http.StatusCreated)
		tl.checkReceipt(t, rec, mustMarshal(t, e))
		checkCosigned(t, []byte(rec.Checkpoint), ws, ws[0].Name, ws[1].Name)
	})

	t.Run("two witnesses down, then one back", func(t *testing.T) {
		ws[1].Stop(t)
		d := randomDigest(t)
		e := s.sign(t, d, notarize.StatusTrusted, time.Now())
		body := mustMarshal(t, e)
		start := time.Now()
		status, h, b := do(t, http.MethodPost, tl.url+api.PathEntries, body)
		took := time.Since(start)
		if status != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
			t.Fatalf("submit without a quorum: status %d, Retry-After %q, want 503 with Retry-After: %s", status, h.Get("Retry-After"), b)
		}
		if er := decodeError(t, b); er.Code != api.CodeUnavailable {
			t.Fatalf("code %q, want %q", er.Code, api.CodeUnavailable)
		}
		if bound := cfg.ReceiptTimeout + 10*time.Second; took > bound {
			t.Fatalf("the 503 took %v, beyond the receipt timeout (%v) and slack", took, cfg.ReceiptTimeout)
		}
		if got := tl.lookup(t, d); len(got.Entries) != 0 {
			t.Fatalf("an entry not yet witnessed is served: %+v", got.Entries)
		}
		if pub, all := tl.metric(t, "notarize_ledger_published_size"), tl.metric(t, "notarize_ledger_log_size"); pub >= all {
			t.Fatalf("published size %v, log size %v: the entry waiting for the quorum is not visible in /metrics", pub, all)
		}
		ws[1].Start(t) // a restart on the same key and database
		rec := tl.submit(t, e, http.StatusOK)
		if !rec.Duplicate {
			t.Fatal("the statement sequenced while the quorum was down was appended again")
		}
		tl.checkReceipt(t, rec, body)
		checkCosigned(t, []byte(rec.Checkpoint), ws, ws[0].Name, ws[1].Name)
		if idx := tl.checkLookup(t, tl.lookup(t, d)); !slices.Equal(idx, []uint64{rec.Index}) {
			t.Fatalf("lookup after the quorum returned: %v, want [%d]", idx, rec.Index)
		}
	})

	t.Run("all witnesses restarted", func(t *testing.T) {
		for _, w := range ws {
			w.Stop(t)
			w.Start(t)
		}
		e := s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())
		rec := tl.submit(t, e, http.StatusCreated)
		got, _, err := witnesstest.Cosigners([]byte(rec.Checkpoint), ws...)
		if err != nil || len(got) < 2 {
			t.Fatalf("after restarts, cosigned by %v (%v), want at least 2", got, err)
		}
	})
}

// TestWitnessRefusesFork: a second ledger with the same key and origin but
// another history (a split view) cannot get its checkpoints cosigned by a
// witness that cosigned the first one's: the witness refuses the
// inconsistent checkpoint (C2SP tlog-witness 422), the forked ledger
// publishes nothing new and answers its submissions 503, while the honest
// ledger keeps getting cosigned checkpoints from the same witness.
func TestWitnessRefusesFork(t *testing.T) {
	t.Parallel()
	cfg, vkey := witnessedConfig(t, "example.com/forked-ledger")
	w := witnesstest.StartN(t, 1, cfg.Origin, vkey)[0]
	ws := []*witnesstest.Witness{w}
	honest := cfg
	honest.WitnessPolicy = witnesstest.Policy(1, w)
	a := startLedger(t, honest)
	s := newTestSigner(t)
	for range 2 {
		rec := a.submit(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
		checkCosigned(t, []byte(rec.Checkpoint), ws, w.Name)
	}

	// The fork: same key and origin, three other entries, grown unwitnessed.
	forkCfg := cfg
	b := startLedger(t, forkCfg)
	var last api.Receipt
	for range 3 {
		last = b.submit(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
	}
	forkCP := openCheckpoint(t, vkey, cfg.Origin, []byte(last.Checkpoint))
	pb, err := client.NewProofBuilder(t.Context(), forkCP.Size, b.reader.ReadTile)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := pb.ConsistencyProof(t.Context(), 2, forkCP.Size)
	if err != nil {
		t.Fatal(err)
	}
	status, body, err := w.AddCheckpoint(t.Context(), 2, proof, []byte(last.Checkpoint))
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusUnprocessableEntity {
		t.Fatalf("witness answered the forked checkpoint %d %q, want 422 (inconsistent)", status, body)
	}

	// The fork, now asking the witness: refused, nothing published.
	b.close(t)
	b.cfg.WitnessPolicy = witnesstest.Policy(1, w)
	b.open(t)
	d := randomDigest(t)
	st, _, msg := do(t, http.MethodPost, b.url+api.PathEntries, mustMarshal(t, s.sign(t, d, notarize.StatusTrusted, time.Now())))
	if st != http.StatusServiceUnavailable {
		t.Fatalf("forked ledger's submission: status %d, want 503: %s", st, msg)
	}
	raw := b.publishedCheckpoint(t)
	if got, _, _ := witnesstest.Cosigners(raw, ws...); len(got) != 0 {
		t.Fatalf("the forked ledger's checkpoint is cosigned by %v:\n%s", got, raw)
	}
	if got := openCheckpoint(t, vkey, cfg.Origin, raw); got.Size != forkCP.Size {
		t.Fatalf("forked ledger published size %d, want still %d", got.Size, forkCP.Size)
	}

	// The honest ledger is still witnessed.
	rec := a.submit(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
	checkCosigned(t, []byte(rec.Checkpoint), ws, w.Name)

	// The fork cannot flush its sequenced entry: Close gives up with its context.
	b.srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if err := b.Ledger.Close(ctx); err == nil {
		t.Error("the forked ledger closed cleanly: its last entry was published without the witness")
	}
	b.Ledger = nil
}

// TestWitnessConfigValidate: a witness policy Tessera cannot read, or
// witnessing durations that cannot work, are refused before anything starts.
func TestWitnessConfigValidate(t *testing.T) {
	const wkey = "localhost/w1+1f9a3bdc+BPzuzLDrHJ9PS0vmzE6wD54VIJjdsAJSrXuE4zYmXLYv"
	// wkey's public key under another key name, with that name's key hash:
	// an Ed25519 cosignature does not cover the name, so this "second
	// witness" is the first one again.
	renamed := func() string {
		const key = "BPzuzLDrHJ9PS0vmzE6wD54VIJjdsAJSrXuE4zYmXLYv"
		v, err := f_note.NewVerifierForCosignatureV1("localhost/w1bis+00000000+" + key)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("localhost/w1bis+%08x+%s", v.KeyHash(), key)
	}()
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no quorum line", func(c *Config) { c.WitnessPolicy = []byte("witness w1 " + wkey + " http://127.0.0.1:1\n") }, "quorum"},
		{"unknown keyword", func(c *Config) { c.WitnessPolicy = []byte("witnesses w1\nquorum none\n") }, "unknown keyword"},
		{"threshold above members", func(c *Config) {
			c.WitnessPolicy = []byte("witness w1 " + wkey + " http://127.0.0.1:1\ngroup g 2 w1\nquorum g\n")
		}, "threshold"},
		{"malformed witness key", func(c *Config) {
			c.WitnessPolicy = []byte("witness w1 localhost/w1+zz+!! http://127.0.0.1:1\nquorum w1\n")
		}, "witness"},
		{"policy too large", func(c *Config) { c.WitnessPolicy = make([]byte, MaxWitnessPolicySize+1) }, "at most"},
		{"a group named twice in the quorum", func(c *Config) {
			c.WitnessPolicy = []byte("witness w1 " + wkey + " http://127.0.0.1:1\ngroup g any w1\ngroup q 2 g g\nquorum q\n")
		}, "through two of its members"},
		{"a nested group of threshold 0", func(c *Config) {
			c.WitnessPolicy = []byte("witness w1 " + wkey + " http://127.0.0.1:1\ngroup z 0 w1\ngroup q 1 z\nquorum q\n")
		}, "threshold 0"},
		{"one witness key under two key names", func(c *Config) {
			c.WitnessPolicy = []byte("witness w1 " + wkey + " http://127.0.0.1:1\nwitness w2 " + renamed + " http://127.0.0.1:2\ngroup g 2 w1 w2\nquorum g\n")
		}, "same key"},
		{"negative witness timeout", func(c *Config) { c.WitnessTimeout = -time.Second }, "WitnessTimeout"},
		{"republish below the checkpoint interval", func(c *Config) { c.CheckpointRepublishInterval = 50 * time.Millisecond }, "CheckpointRepublishInterval"},
		{"receipt timeout above the claim lifetime", func(c *Config) { c.ReceiptTimeout = time.Hour }, "ReceiptTimeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Config{}
			tc.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want an error about %q", err, tc.want)
			}
		})
	}
	ok := Config{WitnessPolicy: []byte("# none\nquorum none\n"), CheckpointRepublishInterval: time.Second}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate of a valid config: %v", err)
	}
}

// metric returns the value of an unlabelled metric from /metrics.
func (tl *testLedger) metric(t testing.TB, name string) float64 {
	t.Helper()
	status, _, b := do(t, http.MethodGet, tl.url+"/metrics", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: %d", status)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s:\n%s", name, b)
	return 0
}

// lyingWitness is a fake witness (an injected fault) that answers every
// add-checkpoint with a well-formed cosignature line under the name and
// key hash of its policy key, whose signature is garbage: a witness that
// claims to cosign without holding the key.
func lyingWitness(t *testing.T, name string) (policyLine, vkey string) {
	t.Helper()
	_, pub, err := note.GenerateKey(rand.Reader, "localhost/liar-"+name) // the liar throws the key away
	if err != nil {
		t.Fatal(err)
	}
	vkey, err = f_note.VKeyToCosignatureV1(pub)
	if err != nil {
		t.Fatal(err)
	}
	keyName, hash, _ := strings.Cut(vkey, "+")
	hash, _, _ = strings.Cut(hash, "+")
	kh, err := strconv.ParseUint(hash, 16, 32)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		sig := make([]byte, 4+8+64)
		binary.BigEndian.PutUint32(sig, uint32(kh))
		binary.BigEndian.PutUint64(sig[4:], uint64(time.Now().Unix()))
		_, _ = rand.Read(sig[12:])
		fmt.Fprintf(w, "— %s %s\n", keyName, base64.StdEncoding.EncodeToString(sig))
	}))
	t.Cleanup(srv.Close)
	return fmt.Sprintf("witness %s %s %s", name, vkey, srv.URL), vkey
}

// TestWitnessForgedCosignature: a witness whose cosignature does not
// verify under its policy key never counts toward the quorum and never
// reaches a published checkpoint: with 2 of {honest, liar} nothing is
// published (503), with 2 of {honest, honest, liar} the checkpoint carries
// only the honest cosignatures.
func TestWitnessForgedCosignature(t *testing.T) {
	cfg, vkey := witnessedConfig(t, "example.com/lied-to-ledger")
	ws := witnesstest.StartN(t, 2, cfg.Origin, vkey)
	liarLine, liarKey := lyingWitness(t, "liar")
	liar, err := f_note.NewVerifierForCosignatureV1(liarKey)
	if err != nil {
		t.Fatal(err)
	}
	s := newTestSigner(t)

	cfg.WitnessPolicy = []byte(ws[0].PolicyLine() + "\n" + ws[1].PolicyLine() + "\n" + liarLine + "\ngroup g 2 w1 w2 liar\nquorum g\n")
	tl := startLedger(t, cfg)
	rec := tl.submit(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
	checkCosigned(t, []byte(rec.Checkpoint), ws, ws[0].Name, ws[1].Name)
	if _, err := note.Open([]byte(rec.Checkpoint), note.VerifierList(liar)); err == nil || strings.Contains(rec.Checkpoint, "liar") {
		t.Fatalf("the liar's line reached the published checkpoint:\n%s", rec.Checkpoint)
	}

	tl.close(t)
	tl.cfg.WitnessPolicy = []byte(ws[0].PolicyLine() + "\n" + liarLine + "\ngroup g 2 w1 liar\nquorum g\n")
	tl.open(t)
	status, _, b := do(t, http.MethodPost, tl.url+api.PathEntries, mustMarshal(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())))
	if status != http.StatusServiceUnavailable {
		t.Fatalf("with a lying witness in a 2-of-2 quorum: status %d, want 503: %s", status, b)
	}
	if raw := tl.publishedCheckpoint(t); strings.Contains(string(raw), "liar") {
		t.Fatalf("the liar's line reached the published checkpoint:\n%s", raw)
	}
	tl.srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if err := tl.Ledger.Close(ctx); err == nil {
		t.Error("the ledger flushed an entry the quorum never cosigned")
	}
	tl.Ledger = nil
}

// TestWitnessPolicyLogLine: a policy's "log" line names the key its
// clients take for the ledger (red team 15); a ledger started with a
// policy naming another key refuses to start, since its clients would
// refuse it, and one naming its own starts. A log line it cannot read is
// refused too.
func TestWitnessPolicyLogLine(t *testing.T) {
	skey, vkey, err := NewSignerKey("ledger.test/log-line")
	if err != nil {
		t.Fatal(err)
	}
	_, other, err := NewSignerKey("ledger.test/log-line")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, policy, wantErr string
	}{
		{"own key", "log " + vkey + " http://127.0.0.1/\nquorum none\n", ""},
		{"another key", "log " + other + "\nquorum none\n", "clients holding the policy would refuse it"},
		{"own and another", "log " + other + "\nlog " + vkey + "\nquorum none\n", ""},
		{"unreadable", "log " + strings.Repeat("ab", 32) + "\nquorum none\n", "log key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := posix.New(t.Context(), posix.Config{Dir: t.TempDir(), Logger: testLogger(t), NewEngine: testNewEngine()})
			if err != nil {
				t.Fatal(err)
			}
			l, err := New(t.Context(), st, Config{NoteSignerKey: skey, WitnessPolicy: []byte(tc.policy), Logger: testLogger(t), noMap: true})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				_ = l.Close(t.Context())
				return
			}
			if err == nil {
				_ = l.Close(t.Context())
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New: %v, want an error about %q", err, tc.wantErr)
			}
		})
	}
}
