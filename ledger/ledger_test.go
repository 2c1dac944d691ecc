package ledger

import (
	"bytes"
	"crypto"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/storage/posix"

	"github.com/notarize/docker-notarize/notarize"
)

func TestSubmitAndLookup(t *testing.T) {
	tl := startLedger(t, Config{})
	s := newTestSigner(t)
	d := randomDigest(t)
	now := time.Now()

	trusted := s.sign(t, d, notarize.StatusTrusted, now.Add(-time.Minute))
	start := time.Now()
	rec := tl.submit(t, trusted, http.StatusCreated)
	t.Logf("time to receipt: %v", time.Since(start))
	if rec.Duplicate {
		t.Error("first submission marked duplicate")
	}
	tl.checkReceipt(t, rec, mustMarshal(t, trusted))

	untrusted := s.sign(t, d, notarize.StatusUntrusted, now)
	rec2 := tl.submit(t, untrusted, http.StatusCreated)
	tl.checkReceipt(t, rec2, mustMarshal(t, untrusted))
	if rec2.Index == rec.Index {
		t.Fatalf("two entries got index %d", rec.Index)
	}
	// Another digest's entry must not show up under d.
	tl.submit(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, now), http.StatusCreated)

	resp := tl.lookup(t, d)
	if resp.Digest != string(d) {
		t.Errorf("lookup digest %q, want %q", resp.Digest, d)
	}
	if got, want := tl.checkLookup(t, resp), []uint64{rec.Index, rec2.Index}; !slices.Equal(got, want) {
		t.Fatalf("lookup indices %v, want %v", got, want)
	}
	// The entries are the signed ones and fold to UNTRUSTED.
	var records []notarize.Record
	for _, le := range resp.Entries {
		e, err := notarize.ParseEntry(le.Entry)
		if err != nil {
			t.Fatal(err)
		}
		v, err := e.Verify()
		if err != nil {
			t.Fatal(err)
		}
		records = append(records, notarize.Record{Index: le.Index, KeyID: v.KeyID, Statement: v.Statement})
	}
	if dec := notarize.Decide(records, d, []string{s.keyID}); dec.Verdict != notarize.Untrusted {
		t.Errorf("verdict %v, want UNTRUSTED", dec.Verdict)
	}

	t.Run("unknown digest", func(t *testing.T) {
		status, _, b := do(t, http.MethodGet, tl.url+api.PathDigests+string(randomDigest(t)), nil)
		if status != http.StatusOK || !bytes.Contains(b, []byte(`"entries":[]`)) {
			t.Fatalf("status %d body %s, want 200 with empty entries", status, b)
		}
	})
	t.Run("info", func(t *testing.T) {
		status, _, b := do(t, http.MethodGet, tl.url+api.PathInfo, nil)
		var info api.Info
		if status != http.StatusOK || json.Unmarshal(b, &info) != nil {
			t.Fatalf("info: %d %s", status, b)
		}
		if info.Origin != tl.Origin() || info.VerifierKey != tl.VerifierKey() || info.Size < 3 || !info.OpenWrites {
			t.Errorf("info %+v", info)
		}
	})
}

func TestDuplicates(t *testing.T) {
	tl := startLedger(t, Config{})
	s := newTestSigner(t)
	e := s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())
	canonical := mustMarshal(t, e)
	first := tl.submit(t, e, http.StatusCreated)

	// The same envelope in another JSON encoding: indented, fields reordered.
	var generic map[string]any
	if err := json.Unmarshal(canonical, &generic); err != nil {
		t.Fatal(err)
	}
	indented, err := json.MarshalIndent(generic, "", "   ")
	if err != nil {
		t.Fatal(err)
	}
	reordered := []byte(`{"publicKey":` + mustJSON(t, e.PublicKey) + `, "envelope":` + mustJSON(t, e.Envelope) + "}\n")

	t.Run("same bytes", func(t *testing.T) {
		rec := tl.submitBody(t, canonical, http.StatusOK)
		if !rec.Duplicate || rec.Index != first.Index {
			t.Fatalf("got index %d duplicate %v, want duplicate of %d", rec.Index, rec.Duplicate, first.Index)
		}
		tl.checkReceipt(t, rec, canonical)
	})
	// An entry has one accepted encoding (issue 8, class 3): other JSON
	// spellings are refused, not stored (see encoding_test.go).
	for name, body := range map[string][]byte{"indented": indented, "reordered": reordered} {
		t.Run(name, func(t *testing.T) {
			status, _, b := do(t, http.MethodPost, tl.url+api.PathEntries, body)
			if er := decodeError(t, b); status != http.StatusBadRequest || er.Code != api.CodeBadRequest {
				t.Fatalf("got %d %+v, want 400 BAD_REQUEST", status, er)
			}
		})
	}
	resp := tl.lookup(t, mustDigest(t, e))
	if len(resp.Entries) != 1 {
		t.Fatalf("lookup after duplicates: %d entries, want 1", len(resp.Entries))
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustDigest(t testing.TB, e *notarize.Entry) notarize.Digest {
	t.Helper()
	v, err := e.Verify()
	if err != nil {
		t.Fatal(err)
	}
	return v.Statement.Digest()
}

func TestRestartKeepsEverything(t *testing.T) {
	tl := startLedger(t, Config{Origin: "test.example/ledger"})
	s := newTestSigner(t)
	var entries []*notarize.Entry
	var receipts []api.Receipt
	for range 3 {
		e := s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())
		entries = append(entries, e)
		receipts = append(receipts, tl.submit(t, e, http.StatusCreated))
	}
	origin, vkey := tl.Origin(), tl.VerifierKey()
	pub, err := os.ReadFile(filepath.Join(tl.dir, posix.PubFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(pub)) != vkey {
		t.Fatalf("%s holds %q, want %q", posix.PubFile, pub, vkey)
	}

	check := func(t *testing.T) {
		if tl.Origin() != origin || tl.VerifierKey() != vkey {
			t.Fatalf("identity changed: %s %s", tl.Origin(), tl.VerifierKey())
		}
		for i, e := range entries {
			resp := tl.lookup(t, mustDigest(t, e))
			if got := tl.checkLookup(t, resp); !slices.Equal(got, []uint64{receipts[i].Index}) {
				t.Fatalf("lookup entry %d: indices %v, want [%d]", i, got, receipts[i].Index)
			}
			// Duplicates are found in the persistent index (the in-memory
			// cache is empty after a restart).
			rec := tl.submit(t, e, http.StatusOK)
			if !rec.Duplicate || rec.Index != receipts[i].Index {
				t.Fatalf("resubmitted entry %d: index %d duplicate %v", i, rec.Index, rec.Duplicate)
			}
		}
	}
	t.Run("restart", func(t *testing.T) {
		tl.restart(t)
		check(t)
	})
	t.Run("index rebuilt from the log", func(t *testing.T) {
		tl.close(t)
		for _, name := range []string{posix.IndexFile, posix.IndexDir} { // the engine's (bbolt, pebble)
			if err := os.RemoveAll(filepath.Join(tl.dir, name)); err != nil {
				t.Fatal(err)
			}
		}
		tl.open(t)
		check(t)
	})
	t.Run("new entries continue the log", func(t *testing.T) {
		rec := tl.submit(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
		if rec.Index != 3 {
			t.Fatalf("index %d after restart, want 3", rec.Index)
		}
	})
}

func TestConcurrentSubmissions(t *testing.T) {
	t.Parallel()
	const n, workers = 1000, 100
	tl := startLedger(t, Config{})
	s := newTestSigner(t)
	entries := make([]*notarize.Entry, n)
	t0 := time.Now()
	for i := range entries {
		entries[i] = s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())
	}
	bodies := make([][]byte, n)
	for i, e := range entries {
		bodies[i] = mustMarshal(t, e)
	}
	t.Logf("signed %d entries in %v", n, time.Since(t0))
	receipts := make([]api.Receipt, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				status, rec, err := post(t.Context(), http.DefaultClient, tl.url, bodies[i])
				if err != nil || status != http.StatusCreated {
					t.Errorf("submit %d: status %d: %v", i, status, err)
					continue
				}
				receipts[i] = rec
			}
		})
	}
	start := time.Now()
	for i := range entries {
		next <- i
	}
	close(next)
	wg.Wait()
	t.Logf("%d submissions with %d clients in %v", n, workers, time.Since(start))
	if t.Failed() {
		return
	}
	seen := map[uint64]bool{}
	for i, rec := range receipts {
		tl.checkReceipt(t, rec, mustMarshal(t, entries[i]))
		if seen[rec.Index] {
			t.Fatalf("index %d assigned twice", rec.Index)
		}
		seen[rec.Index] = true
	}
	t.Logf("checked receipts at %v", time.Since(t0))
	digests := make([]notarize.Digest, n)
	for i, e := range entries {
		digests[i] = mustDigest(t, e)
	}
	lookup := func(i int) error {
		status, b, err := get(t.Context(), tl.url+api.PathDigests+string(digests[i]))
		var resp api.LookupResponse
		if err == nil {
			err = json.Unmarshal(b, &resp)
		}
		if status != http.StatusOK || err != nil {
			return fmt.Errorf("status %d, %v", status, err)
		}
		if len(resp.Entries) != 1 || resp.Entries[0].Index != receipts[i].Index || !bytes.Equal(resp.Entries[0].Entry, receipts[i].Entry) {
			return fmt.Errorf("got %d entries, want index %d", len(resp.Entries), receipts[i].Index)
		}
		cp, err := verifyCheckpoint(tl.VerifierKey(), tl.Origin(), []byte(resp.Checkpoint))
		if err != nil {
			return err
		}
		return verifyInclusion(cp, resp.Entries[0].Index, resp.Entries[0].Entry, resp.Entries[0].InclusionProof)
	}
	lookups := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range lookups {
				if err := lookup(i); err != nil {
					t.Errorf("lookup %d: %v", i, err)
				}
			}
		})
	}
	for i := range entries {
		lookups <- i
	}
	close(lookups)
	wg.Wait()
	t.Logf("looked up at %v", time.Since(t0))
}

func TestFutureSkew(t *testing.T) {
	tl := startLedger(t, Config{MaxFutureSkew: time.Hour})
	s := newTestSigner(t)
	tl.submit(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now().Add(50*time.Minute)), http.StatusCreated)
	status, _, b := do(t, http.MethodPost, tl.url+api.PathEntries,
		mustMarshal(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now().Add(70*time.Minute))))
	if er := decodeError(t, b); status != http.StatusBadRequest || er.Code != api.CodeFuture {
		t.Fatalf("got %d %+v, want 400 FUTURE", status, er)
	}
}

func TestEnrolledSigners(t *testing.T) {
	enrolled, other := newTestSigner(t), newTestSigner(t)
	tl := startLedger(t, Config{Signers: []crypto.PublicKey{enrolled.pub}})
	tl.submit(t, enrolled.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
	status, _, b := do(t, http.MethodPost, tl.url+api.PathEntries,
		mustMarshal(t, other.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())))
	if er := decodeError(t, b); status != http.StatusForbidden || er.Code != api.CodeNotEnrolled {
		t.Fatalf("got %d %+v, want 403 NOT_ENROLLED", status, er)
	}
	info, err := tl.Info(t.Context())
	if err != nil || info.OpenWrites {
		t.Fatalf("info %+v, %v: want closed writes", info, err)
	}
}

func TestMetrics(t *testing.T) {
	tl := startLedger(t, Config{})
	s := newTestSigner(t)
	e := s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())
	tl.submit(t, e, http.StatusCreated)
	tl.submit(t, e, http.StatusOK)
	do(t, http.MethodPost, tl.url+api.PathEntries, []byte("{"))
	status, _, b := do(t, http.MethodGet, tl.url+"/metrics", nil)
	if status != http.StatusOK {
		t.Fatalf("metrics: %d", status)
	}
	for _, want := range []string{
		`notarize_ledger_submissions_total{result="created"} 1`,
		`notarize_ledger_submissions_total{result="duplicate"} 1`,
		`notarize_ledger_submissions_total{result="BAD_REQUEST"} 1`,
		`notarize_ledger_receipt_seconds_count 2`,
		`notarize_ledger_log_size 1`,
	} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestLookupByKeyID: ?keyid= limits the answer to the entries of those keys,
// each still proven; malformed key IDs are a 400.
func TestLookupByKeyID(t *testing.T) {
	tl := startLedger(t, Config{})
	alice, mallory := newTestSigner(t), newTestSigner(t)
	d := randomDigest(t)
	now := time.Now()
	rec := tl.submit(t, alice.sign(t, d, notarize.StatusTrusted, now.Add(-time.Minute)), http.StatusCreated)
	for i := range 5 {
		tl.submit(t, mallory.sign(t, d, notarize.StatusUntrusted, now.Add(-time.Duration(i)*time.Second)), http.StatusCreated)
	}
	get := func(query string) (int, api.LookupResponse, []byte) {
		status, _, b := do(t, http.MethodGet, tl.url+api.PathDigests+string(d)+query, nil)
		var resp api.LookupResponse
		if status == http.StatusOK {
			if err := json.Unmarshal(b, &resp); err != nil {
				t.Fatal(err)
			}
		}
		return status, resp, b
	}
	_, all, _ := get("")
	if n := len(tl.checkLookup(t, all)); n != 6 {
		t.Fatalf("unfiltered lookup: %d entries, want 6", n)
	}
	status, resp, b := get("?keyid=" + alice.keyID)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, b)
	}
	if got := tl.checkLookup(t, resp); !slices.Equal(got, []uint64{rec.Index}) {
		t.Fatalf("lookup by alice's key: indices %v, want [%d]", got, rec.Index)
	}
	_, both, _ := get("?keyid=" + alice.keyID + "&keyid=" + mallory.keyID)
	if n := len(tl.checkLookup(t, both)); n != 6 {
		t.Fatalf("lookup by both keys: %d entries, want 6", n)
	}
	_, none, _ := get("?keyid=" + strings.Repeat("0", 64))
	if len(none.Entries) != 0 {
		t.Fatalf("lookup by an unknown key: %d entries", len(none.Entries))
	}
	for _, bad := range []string{"?keyid=xyz", "?keyid=" + strings.Repeat("A", 64), "?" + strings.Repeat("keyid="+alice.keyID+"&", api.MaxLookupKeyIDs+1)} {
		if status, _, b := get(bad); status != http.StatusBadRequest || !strings.Contains(string(b), api.CodeBadRequest) {
			t.Errorf("lookup%s: status %d %s, want 400 %s", clipQuery(bad), status, b, api.CodeBadRequest)
		}
	}
}

func clipQuery(q string) string {
	if len(q) > 60 {
		return q[:60] + "…"
	}
	return q
}
