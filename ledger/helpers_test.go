package ledger

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/ledger/storage/mysql"
	"github.com/notarize/docker-notarize/ledger/storage/posix"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// testSigner is a statement signer with an ECDSA P-256 key.
type testSigner struct {
	priv  *ecdsa.PrivateKey // for tests that craft signatures by hand
	sv    signature.SignerVerifier
	pub   crypto.PublicKey
	keyID string
}

func newTestSigner(t testing.TB) *testSigner {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadSignerVerifier(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	kid, err := notarize.KeyID(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return &testSigner{priv: priv, sv: sv, pub: priv.Public(), keyID: kid}
}

// sign returns an entry saying d has status st at time ts.
func (s *testSigner) sign(t testing.TB, d notarize.Digest, st notarize.Status, ts time.Time) *notarize.Entry {
	t.Helper()
	stmt := notarize.NewStatement(d, "registry.example/app:1", notarize.Predicate{
		Status:    st,
		MediaType: "application/vnd.oci.image.manifest.v1+json",
		Size:      1234,
		Kind:      notarize.KindImage,
		Name:      "test signer",
		Timestamp: ts.UTC().Truncate(time.Second),
	})
	e, err := notarize.Sign(context.Background(), s.sv, stmt)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// signRaw wraps any payload in a DSSE envelope signed by s, bypassing the
// statement checks of notarize.Sign, to build entries the ledger must refuse.
func (s *testSigner) signRaw(t testing.TB, payloadType string, payload []byte) *notarize.Entry {
	t.Helper()
	return notarizetest.Envelope(t, s.sv, payloadType, payload)
}

func randomDigest(t testing.TB) notarize.Digest {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return notarize.DigestOf(b)
}

func mustMarshal(t testing.TB, e *notarize.Entry) []byte {
	t.Helper()
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testLedger is a Ledger served by an httptest server on 127.0.0.1.
type testLedger struct {
	*Ledger
	cfg Config
	at  storageAt
	dir string // the POSIX data directory, if it is one
	srv *httptest.Server
	url string
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startLedger opens a ledger on cfg on POSIX storage in a temp dir and
// serves it; both are stopped by t.Cleanup.
func startLedger(t testing.TB, cfg Config) *testLedger {
	t.Helper()
	dir := t.TempDir()
	tl := startLedgerAt(t, posixAt(dir), cfg)
	tl.dir = dir
	return tl
}

// startLedgerIn is startLedger on POSIX storage in dir.
func startLedgerIn(t testing.TB, dir string, cfg Config) *testLedger {
	t.Helper()
	tl := startLedgerAt(t, posixAt(dir), cfg)
	tl.dir = dir
	return tl
}

// startLedgerAt opens a ledger on cfg and the storage at opens, and
// serves it; both are stopped by t.Cleanup.
func startLedgerAt(t testing.TB, at storageAt, cfg Config) *testLedger {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.RateLimits == (RateLimits{}) {
		// Most tests submit faster than a writer may; the rate limit
		// tests set limits of their own.
		cfg.RateLimits.Off = true
	}
	if cfg.MapCommitEntries == 0 && cfg.MapCommitInterval == 0 {
		// The verifiable index appends map-root entries, which tests
		// counting the log's entries do not expect; its tests opt in
		// (vindex_test.go).
		cfg.noMap = true
	}
	tl := &testLedger{cfg: cfg, at: at}
	tl.open(t)
	t.Cleanup(func() { tl.close(t) })
	return tl
}

func (tl *testLedger) open(t testing.TB) {
	t.Helper()
	l, err := New(t.Context(), tl.at(t), tl.cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	tl.Ledger = l
	tl.srv = httptest.NewServer(l.Handler())
	tl.url = tl.srv.URL
}

func (tl *testLedger) close(t testing.TB) {
	t.Helper()
	if tl.Ledger == nil {
		return
	}
	tl.srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tl.Ledger.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	tl.Ledger = nil
}

func (tl *testLedger) restart(t testing.TB) {
	t.Helper()
	tl.close(t)
	tl.open(t)
}

// do sends one request and returns status, headers and body.
func do(t testing.TB, method, url string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", api.MediaTypeJSON)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// post submits body and decodes the receipt; it is safe in any goroutine.
func post(ctx context.Context, c *http.Client, url string, body []byte) (int, api.Receipt, error) {
	var rec api.Receipt
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+api.PathEntries, bytes.NewReader(body))
	if err != nil {
		return 0, rec, err
	}
	req.Header.Set("Content-Type", api.MediaTypeJSON)
	resp, err := c.Do(req)
	if err != nil {
		return 0, rec, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, rec, err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return resp.StatusCode, rec, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return resp.StatusCode, rec, fmt.Errorf("decode receipt: %w: %s", err, b)
	}
	return resp.StatusCode, rec, nil
}

// submitBody posts body and decodes the receipt, failing unless the status is want.
func (tl *testLedger) submitBody(t testing.TB, body []byte, want int) api.Receipt {
	t.Helper()
	status, _, b := do(t, http.MethodPost, tl.url+api.PathEntries, body)
	if status != want {
		t.Fatalf("submit: status %d, want %d: %s", status, want, b)
	}
	var rec api.Receipt
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatalf("submit: decode receipt: %v: %s", err, b)
	}
	return rec
}

func (tl *testLedger) submit(t testing.TB, e *notarize.Entry, want int) api.Receipt {
	t.Helper()
	return tl.submitBody(t, mustMarshal(t, e), want)
}

func (tl *testLedger) lookup(t testing.TB, d notarize.Digest) api.LookupResponse {
	t.Helper()
	status, _, b := do(t, http.MethodGet, tl.url+api.PathDigests+string(d), nil)
	if status != http.StatusOK {
		t.Fatalf("lookup %s: status %d: %s", d, status, b)
	}
	var resp api.LookupResponse
	if err := json.Unmarshal(b, &resp); err != nil {
		t.Fatalf("lookup: decode: %v: %s", err, b)
	}
	return resp
}

// openCheckpoint verifies a checkpoint the way a client does: signature
// under the pinned verifier key and origin.
func openCheckpoint(t testing.TB, vkey, origin string, raw []byte) *log.Checkpoint {
	t.Helper()
	cp, err := verifyCheckpoint(vkey, origin, raw)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

func verifyCheckpoint(vkey, origin string, raw []byte) (*log.Checkpoint, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	cp, _, _, err := log.ParseCheckpoint(raw, origin, v)
	if err != nil {
		return nil, fmt.Errorf("checkpoint does not verify: %w\n%s", err, raw)
	}
	return cp, nil
}

// checkInclusion verifies an RFC 6962 inclusion proof of entry at index under cp.
func checkInclusion(t testing.TB, cp *log.Checkpoint, index uint64, entry []byte, p [][]byte) {
	t.Helper()
	if err := verifyInclusion(cp, index, entry, p); err != nil {
		t.Fatal(err)
	}
}

func verifyInclusion(cp *log.Checkpoint, index uint64, entry []byte, p [][]byte) error {
	if index >= cp.Size {
		return fmt.Errorf("index %d not below checkpoint size %d", index, cp.Size)
	}
	leaf := rfc6962.DefaultHasher.HashLeaf(entry)
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, index, cp.Size, leaf, p, cp.Hash); err != nil {
		return fmt.Errorf("inclusion proof of %d in %d does not verify: %w", index, cp.Size, err)
	}
	return nil
}

// get fetches url; it is safe in any goroutine.
func get(ctx context.Context, url string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// checkReceipt verifies a receipt completely and that it carries want.
func (tl *testLedger) checkReceipt(t testing.TB, rec api.Receipt, want []byte) *log.Checkpoint {
	t.Helper()
	if !bytes.Equal(rec.Entry, want) {
		t.Fatalf("receipt entry differs from the canonical entry:\n got %s\nwant %s", rec.Entry, want)
	}
	cp := openCheckpoint(t, tl.VerifierKey(), tl.Origin(), []byte(rec.Checkpoint))
	checkInclusion(t, cp, rec.Index, rec.Entry, rec.InclusionProof)
	return cp
}

// checkLookup verifies every entry of a lookup answer against its checkpoint
// and returns the indices.
func (tl *testLedger) checkLookup(t testing.TB, resp api.LookupResponse) []uint64 {
	t.Helper()
	cp := openCheckpoint(t, tl.VerifierKey(), tl.Origin(), []byte(resp.Checkpoint))
	var idx []uint64
	for _, e := range resp.Entries {
		checkInclusion(t, cp, e.Index, e.Entry, e.InclusionProof)
		idx = append(idx, e.Index)
	}
	return idx
}

func decodeError(t testing.TB, b []byte) api.ErrorResponse {
	t.Helper()
	var er api.ErrorResponse
	if err := json.Unmarshal(b, &er); err != nil || er.Code == "" || er.Message == "" {
		t.Fatalf("not a JSON ErrorResponse (%v): %q", err, b)
	}
	return er
}

// envTestEngine is the environment variable that picks the index engine of
// the new POSIX directories the ledger's tests open (testNewEngine):
// TestLedgerSuiteOnPebble sets it for its child process, and a test with
// t.Setenv. The ledger and its storage read no environment; it is
// notarize-ledger's default of --index-engine too.
const envTestEngine = "NOTARIZE_LEDGER_INDEX_ENGINE"

// testNewEngine is posix.Config.NewEngine for the ledger's tests.
func testNewEngine() string { return os.Getenv(envTestEngine) }

// testIndex is an index on the database of a POSIX driver in a directory.
type testIndex struct {
	*index
	st Storage
}

// openTestIndex opens the POSIX storage in dir and the index on it.
func openTestIndex(t testing.TB, dir string) (*testIndex, error) {
	t.Helper()
	st, err := posix.New(t.Context(), posix.Config{Dir: dir, Logger: testLogger(t), NewEngine: testNewEngine()})
	if err != nil {
		return nil, err
	}
	idx, err := newIndex(t.Context(), st.Index(), testLogger(t), DefaultKeyTables)
	if err != nil {
		return nil, errors.Join(err, st.Close())
	}
	return &testIndex{index: idx, st: st}, nil
}

// Close waits for the follower (cancel its context first) and closes the storage.
func (ti *testIndex) Close() error {
	ti.stop()
	return ti.st.Close()
}

// storageAt opens a ledger's storage for a test.
type storageAt func(t testing.TB) Storage

// indexedStorage is a storage whose index is idx: a test's wrapper of the
// storage's own, which records, gates or probes what the ledger does.
type indexedStorage struct {
	Storage
	idx storage.Index
}

// Index returns the wrapped index.
func (s indexedStorage) Index() storage.Index { return s.idx }

// posixAt is the POSIX storage in dir.
func posixAt(dir string) storageAt {
	return func(t testing.TB) Storage {
		t.Helper()
		st, err := posix.New(t.Context(), posix.Config{Dir: dir, Logger: testLogger(t), NewEngine: testNewEngine()})
		if err != nil {
			t.Fatalf("posix storage: %v", err)
		}
		return st
	}
}

// mysqlAt is the MySQL storage of the database dsn.
func mysqlAt(dsn string) storageAt {
	return func(t testing.TB) Storage {
		t.Helper()
		st, err := mysql.New(t.Context(), mysql.Config{DSN: dsn, Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("mysql storage: %v", err)
		}
		return st
	}
}

// openPOSIX opens a ledger on the POSIX storage in dir, returning New's error.
func openPOSIX(t testing.TB, dir string, cfg Config) (*Ledger, error) {
	t.Helper()
	st, err := posix.New(t.Context(), posix.Config{Dir: dir, Logger: testLogger(t), NewEngine: testNewEngine()})
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	return New(t.Context(), st, cfg)
}

// ledgerDir is t.TempDir for a ledger closed while submissions were
// refused in flight: Tessera's background goroutines are not joined by
// Close and may still write a file just after it returns, which makes
// t.TempDir's strict removal fail the test. The directory is removed after
// the ledger stopped, retrying for a moment.
func ledgerDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ledger-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var err error
		for range 50 {
			if err = os.RemoveAll(dir); err == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("remove %s: %v", dir, err)
	})
	return dir
}
