package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/transparency-dev/tessera"
)

// forgedSignature returns e's bytes with its signature altered in its last
// byte: the same statement by the same key (the same statement identity),
// the same length, canonical and in low-S form, but a signature that does
// not verify.
func forgedSignature(t *testing.T, e *notarize.Entry) []byte {
	t.Helper()
	f := *e
	f.Envelope.Signatures = append(f.Envelope.Signatures[:0:0], e.Envelope.Signatures...)
	sig, err := base64.StdEncoding.DecodeString(f.Envelope.Signatures[0].Sig)
	if err != nil {
		t.Fatal(err)
	}
	sig[len(sig)-1] ^= 0x01
	f.Envelope.Signatures[0].Sig = base64.StdEncoding.EncodeToString(sig)
	data := mustMarshal(t, &f)
	if _, err := notarize.ParseEntry(data); err != nil {
		t.Fatalf("forged entry does not parse: %v", err)
	}
	if _, err := f.VerifyLogged(); err == nil {
		t.Fatal("forged entry verifies")
	}
	return data
}

// appendDirect appends data to l's log as another instance or a foreign
// writer would (no submission of this process), and waits until the index
// covers it.
func appendDirect(t *testing.T, l *Ledger, data []byte) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	idx, err := l.add(ctx, tessera.NewEntry(data))()
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	if idx.IsDup {
		t.Fatalf("append: duplicate of %d", idx.Index)
	}
	if err := l.store.WaitProcessed(ctx, idx.Index+1); err != nil {
		t.Fatal(err)
	}
	return idx.Index
}

// TestFollowerTrustsOnlyTheVerifiedBytes: the index follower takes a row
// established at submission only for the exact bytes that were verified.
// An entry of the same statement by the same key, the same length, with a
// signature that does not verify (appended by another writer to the
// storage while the genuine submission is in flight) is verified by the
// follower and indexed in no lookup. A set keyed by anything weaker than
// the bytes (the statement identity, the payload, the key, the length)
// hands it the genuine row: the forged entry then shows in the digest's
// lookups, signed by the victim's key.
func TestFollowerTrustsOnlyTheVerifiedBytes(t *testing.T) {
	tl := startLedger(t, Config{})
	s := newTestSigner(t)
	d := randomDigest(t)
	genuine := s.sign(t, d, notarize.StatusTrusted, time.Now())
	good := mustMarshal(t, genuine)
	forged := forgedSignature(t, genuine)
	if len(forged) != len(good) {
		t.Fatalf("forged entry is %d bytes, genuine %d", len(forged), len(good))
	}

	// The genuine submission is in flight: its row is remembered.
	v, err := genuine.Verify()
	if err != nil {
		t.Fatal(err)
	}
	row, err := rowOf(v)
	if err != nil {
		t.Fatal(err)
	}
	rows := tl.store.verified
	if !rows.remember(good, row) {
		t.Fatal("remember: set full")
	}
	hits := rows.hits.Load()

	bad := appendDirect(t, tl.Ledger, forged)
	if got := rows.hits.Load(); got != hits {
		t.Fatalf("the follower took a remembered row for the forged entry (%d hits)", got-hits)
	}
	page, err := tl.store.Page(t.Context(), d, nil, 0, bad+1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 0 {
		t.Fatalf("the forged entry at %d is indexed under its digest: %v", bad, page)
	}
	if _, ok, err := tl.store.indexOf(t.Context(), v.Identity()); err != nil || ok {
		t.Fatalf("the forged entry took the genuine statement's identity: found %v, %v", ok, err)
	}

	// The genuine bytes themselves are taken from the set, and indexed.
	okIdx := appendDirect(t, tl.Ledger, good)
	if got := rows.hits.Load(); got != hits+1 {
		t.Fatalf("the follower did not take the remembered row of the genuine entry (%d hits)", got-hits)
	}
	page, err = tl.store.Page(t.Context(), d, []string{s.keyID}, 0, okIdx+1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 1 || page[0] != okIdx {
		t.Fatalf("lookup of the genuine statement: %v, want [%d]", page, okIdx)
	}
	rows.forget(good)
}

// TestVerifiedRowsForgottenAfterSubmission: whatever becomes of a
// submission (logged, answered as a duplicate, refused by a rate limit
// after it was admitted), its remembered row is gone once it is answered,
// so the set holds only the submissions in flight; the follower took the
// row of the one that was logged instead of verifying it again.
func TestVerifiedRowsForgottenAfterSubmission(t *testing.T) {
	tl := startLedger(t, Config{RateLimits: RateLimits{
		KeyPerSecond: 0.001, KeyBurst: 1,
		ClientPerSecond: 1000, ClientBurst: 1000,
	}})
	rows := tl.store.verified
	s := newTestSigner(t)
	first := mustMarshal(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()))
	second := mustMarshal(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()))
	c := &http.Client{}
	for _, tc := range []struct {
		name string
		body []byte
		want int
	}{
		{"new statement", first, http.StatusCreated},
		{"replay", first, http.StatusOK},
		{"over the key's burst", second, http.StatusTooManyRequests},
	} {
		hits := rows.hits.Load()
		status, _, _ := post(t.Context(), c, tl.url, tc.body)
		if status != tc.want {
			t.Fatalf("%s: status %d, want %d", tc.name, status, tc.want)
		}
		if n := rows.len(); n != 0 {
			t.Fatalf("%s: %d rows remembered after the submission was answered", tc.name, n)
		}
		if tc.want == http.StatusCreated && rows.hits.Load() != hits+1 {
			t.Fatalf("%s: the follower verified the entry again instead of taking its row", tc.name)
		}
	}
}

// TestVerifiedRowsBounded: a full set remembers nothing more (the follower
// then verifies), and a row is given back only for its exact bytes.
func TestVerifiedRowsBounded(t *testing.T) {
	c := newVerifiedRows()
	key := func(i int) []byte { return []byte(hex.EncodeToString([]byte{byte(i >> 8), byte(i)})) }
	for i := range maxVerifiedRows {
		if !c.remember(key(i), rowWithID(i)) {
			t.Fatalf("remember %d of %d: full", i, maxVerifiedRows)
		}
	}
	if c.remember([]byte("one more"), rowWithID(0)) {
		t.Fatalf("remembered more than %d rows", maxVerifiedRows)
	}
	if _, ok := c.row([]byte("one more")); ok {
		t.Fatal("a row not remembered was given")
	}
	got, ok := c.row(key(7))
	if !ok || got.ID[0] != 7 || string(got.Data) != string(key(7)) {
		t.Fatalf("row of key 7: %+v, %v", got, ok)
	}
	if _, ok := c.row(append(key(7), ' ')); ok {
		t.Fatal("a row was given for bytes that only begin with the remembered ones")
	}
	c.forget(key(7))
	if _, ok := c.row(key(7)); ok {
		t.Fatal("a forgotten row was given")
	}
	var none *verifiedRows
	if _, ok := none.row(key(1)); ok {
		t.Fatal("a nil set gave a row")
	}
}

func rowWithID(i int) storage.Row { return storage.Row{ID: []byte{byte(i)}} }

// TestReadBody: a body is read whole whatever length it claims (shorter,
// exact, longer, unknown), and the request body bound still applies.
func TestReadBody(t *testing.T) {
	body := []byte(strings.Repeat("x", 100))
	for _, length := range []int64{-1, 0, 50, 99, 100} {
		got, err := readBody(bytes.NewReader(body), length)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("length %d: %d bytes, %v", length, len(got), err)
		}
	}
	// A body shorter than it says is a truncated upload, not a short entry.
	for _, length := range []int64{101, 4000} {
		if got, err := readBody(bytes.NewReader(body), length); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("length %d, 100 bytes sent: %d bytes, %v; want io.ErrUnexpectedEOF", length, len(got), err)
		}
	}
	rec := httptest.NewRecorder()
	for _, length := range []int64{-1, 10, 100} {
		_, err := readBody(http.MaxBytesReader(rec, io.NopCloser(bytes.NewReader(body)), 50), length)
		if _, ok := errors.AsType[*http.MaxBytesError](err); !ok {
			t.Fatalf("length %d over the bound: %v, want a MaxBytesError", length, err)
		}
	}
}

// TestVerifiedRowsCompareInFull: a row is found by the SHA-256 of the
// entry but given only for bytes equal to those it was computed from: a
// row filed under another entry's hash (a collision) is not given for it.
func TestVerifiedRowsCompareInFull(t *testing.T) {
	c := newVerifiedRows()
	a, b := []byte(`{"entry":"a"}`), []byte(`{"entry":"b"}`)
	if !c.remember(a, storage.Row{Digest: make([]byte, 32), KeyID: make([]byte, 32)}) {
		t.Fatal("not remembered")
	}
	c.mu.Lock()
	c.rows[sha256.Sum256(b)] = c.rows[sha256.Sum256(a)] // b's hash now finds a's row
	c.mu.Unlock()
	if _, ok := c.row(b); ok {
		t.Fatal("a row computed from other bytes was given for b")
	}
	if _, ok := c.row(a); !ok {
		t.Fatal("a's own row was not given")
	}
}
