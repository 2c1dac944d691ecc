package ledger

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/internal/testutil"
	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/notarize"
)

// revoke returns by's revocation of keyID, dated at, with reason.
func (s *testSigner) revoke(t testing.TB, keyID, reason string, at time.Time) *notarize.Entry {
	t.Helper()
	st, err := notarize.NewKeyRevocation(keyID, "laptop key", "security", reason, at.UTC().Truncate(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	e, err := notarize.Sign(context.Background(), s.sv, st)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestPagesShowSelfRevocation: once a key revoked itself, the pages mark it,
// a thief's later statement is not shown as the key's current one on the
// digest view, and the key page marks what comes after the revocation. A
// revocation by another key (a revoker only a verifier's policy can name)
// is not shown as one.
func TestPagesShowSelfRevocation(t *testing.T) {
	tl := startLedger(t, Config{AdmitSelfRevoked: true}) // the thief's statements after the revocation: the window before it is indexed
	a, b, c := newTestSigner(t), newTestSigner(t), newTestSigner(t)
	d, d3 := randomDigest(t), randomDigest(t)
	now := time.Now().Add(-time.Hour)
	tl.submit(t, a.signSubject(t, d, "registry.example/app:1", notarize.StatusTrusted, now), http.StatusCreated)
	rev := tl.submit(t, a.revoke(t, a.keyID, "laptop <stolen>", now.Add(time.Minute)), http.StatusCreated)
	// The thief, holding a's key: a newer "unsupported" about d and a
	// "trusted" about d3, both logged after the revocation.
	thief := tl.submit(t, a.signSubject(t, d, "registry.example/app:1", notarize.StatusUnsupported, now.Add(30*time.Minute)), http.StatusCreated)
	tl.submit(t, a.signSubject(t, d3, "registry.example/evil:1", notarize.StatusTrusted, now.Add(31*time.Minute)), http.StatusCreated)
	// b is revoked by c only: not a self-revocation.
	tl.submit(t, b.signSubject(t, d, "registry.example/app:1", notarize.StatusTrusted, now), http.StatusCreated)
	tl.submit(t, c.revoke(t, b.keyID, "", now.Add(time.Minute)), http.StatusCreated)
	if thief.Index <= rev.Index {
		t.Fatalf("thief's statement at %d, revocation at %d", thief.Index, rev.Index)
	}

	_, _, body := do(t, http.MethodGet, tl.url+"/?digest="+d.String(), nil)
	page := string(body)
	rows := pageRows(t, page)
	if want := map[string]string{a.keyID: "trusted", b.keyID: "trusted"}; fmt.Sprint(rows) != fmt.Sprint(want) {
		t.Fatalf("rows = %v, want %v (the thief's statement after the revocation must not be a's current one)\n%s", rows, want, page)
	}
	mark := fmt.Sprintf("key revoked by itself at log index %d", rev.Index)
	if strings.Count(page, mark) != 1 || strings.Contains(page, "does not count") {
		t.Errorf("digest view: want one mark %q (on a's row only) and no statement marked as not counting\n%s", mark, page)
	}

	_, _, body = do(t, http.MethodGet, tl.url+"/keys/"+a.keyID, nil)
	page = string(body)
	for _, s := range []string{`id="revoked"`, fmt.Sprintf(`<strong id="revoked-index">%d</strong>`, rev.Index), "laptop &lt;stolen&gt;", "after the revocation: does not count"} {
		if !strings.Contains(page, s) {
			t.Errorf("a's key page lacks %q", s)
		}
	}
	if n := strings.Count(page, "after the revocation: does not count"); n != 2 {
		t.Errorf("a's key page marks %d statements as after the revocation, want 2 (d's and d3's)\n%s", n, page)
	}
	_, _, body = do(t, http.MethodGet, tl.url+"/keys/"+b.keyID, nil)
	if strings.Contains(string(body), `id="revoked"`) {
		t.Errorf("b's key page shows a revocation that only c signed")
	}
}

// TestPagesRevocationScanBound: a key with more statements about its own
// revocation digest than the page reads is not shown as unrevoked: the
// page says it did not read them all.
func TestPagesRevocationScanBound(t *testing.T) {
	tl := startLedger(t, Config{})
	tl.pageLimits = pageLimits{chunk: 2, scan: 4}
	a := newTestSigner(t)
	rd, err := notarize.KeyRevocationDigest(a.keyID)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-time.Hour)
	for i := range 5 {
		tl.submit(t, a.signSubject(t, rd, fmt.Sprint("filler-", i), notarize.StatusTrusted, now.Add(time.Duration(i)*time.Second)), http.StatusCreated)
	}
	tl.submit(t, a.revoke(t, a.keyID, "", now.Add(time.Minute)), http.StatusCreated)
	_, _, body := do(t, http.MethodGet, tl.url+"/keys/"+a.keyID, nil)
	if !strings.Contains(string(body), `id="revoked-unread"`) || strings.Contains(string(body), `id="revoked"`) {
		t.Fatalf("key page past the scan bound:\n%s", body)
	}
	tl.pageLimits = pageLimits{chunk: 2, scan: 8}
	_, _, body = do(t, http.MethodGet, tl.url+"/keys/"+a.keyID, nil)
	if !strings.Contains(string(body), `id="revoked"`) {
		t.Fatalf("key page within the scan bound does not show the revocation:\n%s", body)
	}
}

// TestPagesRevocationKeysBound: a digest signed by more keys than the page
// looks revocations up for (strangers' keys, on an open ledger) costs the
// page at most pageRevocationKeys lookups; the others are marked as not
// looked up, never as unrevoked, and the keys that signed first are the
// ones looked up: a flood of strangers after the signer cannot push the
// signer's revocation off the page.
func TestPagesRevocationKeysBound(t *testing.T) {
	t.Parallel()
	tl := startLedger(t, Config{})
	d := randomDigest(t)
	now := time.Now().Add(-time.Hour)
	// The signer's key ID sorts after every stranger's, so that only the
	// order of first statements, not the page's key order, looks it up.
	keys := make([]*testSigner, pageRevocationKeys+2)
	for i := range keys {
		keys[i] = newTestSigner(t)
	}
	slices.SortFunc(keys, func(a, b *testSigner) int { return strings.Compare(a.keyID, b.keyID) })
	signer, strangers := keys[len(keys)-1], keys[:len(keys)-1]
	tl.submit(t, signer.signSubject(t, d, "registry.example/app:1", notarize.StatusTrusted, now), http.StatusCreated)
	rev := tl.submit(t, signer.revoke(t, signer.keyID, "", now.Add(time.Minute)), http.StatusCreated)
	for _, s := range strangers {
		tl.submit(t, s.signSubject(t, d, "registry.example/app:1", notarize.StatusTrusted, now), http.StatusCreated)
	}
	_, _, body := do(t, http.MethodGet, tl.url+"/?digest="+d.String(), nil)
	page := string(body)
	if n := strings.Count(page, "revocation not looked up"); n != 2 {
		t.Errorf("%d keys marked as not looked up, want 2 of %d", n, pageRevocationKeys+2)
	}
	if mark := fmt.Sprintf("key revoked by itself at log index %d", rev.Index); !strings.Contains(page, mark) {
		t.Errorf("the signer's revocation is not shown (%q) behind the strangers who signed after it", mark)
	}
}

// TestPagesRevocationScanShared: the digest page's scan budget is one for
// all its keys, so keys that each stay under it cannot together make an
// anonymous page view read the bound once per key; what the budget does
// not reach is marked "not read", never "not revoked".
func TestPagesRevocationScanShared(t *testing.T) {
	tl := startLedger(t, Config{AdmitSelfRevoked: true}) // the thief's statements after the revocation: the window before it is indexed
	tl.pageLimits = pageLimits{chunk: 2, scan: 4}
	d := randomDigest(t)
	now := time.Now().Add(-time.Hour)
	for range 2 {
		k := newTestSigner(t)
		rd, err := notarize.KeyRevocationDigest(k.keyID)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			tl.submit(t, k.signSubject(t, rd, fmt.Sprint("filler-", i), notarize.StatusTrusted, now.Add(time.Duration(i)*time.Second)), http.StatusCreated)
		}
		tl.submit(t, k.revoke(t, k.keyID, "", now.Add(time.Minute)), http.StatusCreated)
		tl.submit(t, k.signSubject(t, d, "registry.example/app:1", notarize.StatusTrusted, now), http.StatusCreated)
	}
	_, _, body := do(t, http.MethodGet, tl.url+"/?digest="+d.String(), nil)
	page := string(body)
	if strings.Count(page, "revocation not read") == 0 {
		t.Fatalf("two keys, each reaching its revocation at the page's whole scan bound, were both read:\n%s", page)
	}
	if n := strings.Count(page, "revocation not read") + strings.Count(page, "key revoked by itself"); n != 2 {
		t.Fatalf("%d of 2 revoked keys marked", n)
	}
}

// selfRevoke returns s's revocation of its own key, claiming name.
func (s *testSigner) selfRevoke(t testing.TB, name string, at time.Time) *notarize.Entry {
	t.Helper()
	st, err := notarize.NewKeyRevocation(s.keyID, "laptop key", name, "", at.UTC().Truncate(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	e, err := notarize.Sign(context.Background(), s.sv, st)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// submitAll submits entries at once and fails unless each is appended.
func (tl *testLedger) submitAll(t testing.TB, entries []*notarize.Entry) {
	t.Helper()
	errs := make(chan error, len(entries))
	for _, e := range entries {
		go func() {
			status, _, err := post(t.Context(), http.DefaultClient, tl.url, mustMarshal(t, e))
			if err == nil && status != http.StatusCreated {
				err = fmt.Errorf("status %d", status)
			}
			errs <- err
		}()
	}
	for range entries {
		if err := <-errs; err != nil {
			t.Fatalf("submit: %v", err)
		}
	}
}

// TestPagesRevocationEnrolledFirst: more strangers than the digest page
// looks revocations up for sign a digest before its signer (on an open
// ledger, or one that enrolled its signers later), then the signer, whom
// the operator enrolled, signs it and revokes its key. The page looks the
// enrolled key up before the strangers (an identity first, then an
// enrolled writer): its revocation is marked, and only strangers are
// marked as not looked up. By the order of first statements alone, the
// signer came last and was not looked up.
func TestPagesRevocationEnrolledFirst(t *testing.T) {
	const strangers = 40
	for _, tc := range []struct {
		name  string
		enrol func(c *Config, s *testSigner)
	}{
		{"identity", func(c *Config, s *testSigner) {
			c.Identities = map[string]notarize.Identity{s.keyID: {Name: "release", Email: "release@example.com"}}
		}},
		{"writer", func(c *Config, s *testSigner) { c.Signers = []crypto.PublicKey{s.pub} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tl := startLedger(t, Config{})
			d := randomDigest(t)
			now := time.Now().Add(-time.Hour)
			var flood []*notarize.Entry
			for range strangers {
				flood = append(flood, newTestSigner(t).signSubject(t, d, "registry.example/app:1", notarize.StatusTrusted, now))
			}
			tl.submitAll(t, flood)
			signer := newTestSigner(t)
			tc.enrol(&tl.cfg, signer)
			tl.restart(t)
			tl.submit(t, signer.signSubject(t, d, "registry.example/app:1", notarize.StatusTrusted, now), http.StatusCreated)
			rev := tl.submit(t, signer.selfRevoke(t, "release", now.Add(time.Minute)), http.StatusCreated)

			_, _, body := do(t, http.MethodGet, tl.url+"/?digest="+d.String(), nil)
			page := string(body)
			if len(pageRows(t, page)) != strangers+1 {
				t.Fatalf("%d rows, want %d", len(pageRows(t, page)), strangers+1)
			}
			if mark := fmt.Sprintf("key revoked by itself at log index %d", rev.Index); !strings.Contains(page, mark) {
				t.Errorf("the enrolled signer's revocation is not shown (%q): %d strangers who signed first pushed it off the page", mark, strangers)
			}
			if n := strings.Count(page, "revocation not looked up"); n != strangers+1-pageRevocationKeys {
				t.Errorf("%d keys marked as not looked up, want %d strangers", n, strangers+1-pageRevocationKeys)
			}
		})
	}
}

// gatedIndex holds the index reads of keys' self-revocations (a Page by
// one key of its own revocation digest) in gate, when one is set.
type gatedIndex struct {
	storage.Index
	gate atomic.Pointer[testutil.InFlight]
}

func (g *gatedIndex) Page(ctx context.Context, digest []byte, keyIDs [][]byte, from, below uint64, n int) ([]uint64, error) {
	if gate := g.gate.Load(); gate != nil && len(keyIDs) == 1 && bytes.Equal(digest, keyIDs[0]) {
		defer gate.Enter()()
	}
	return g.Index.Page(ctx, digest, keyIDs, from, below, n)
}

// TestPagesRevocationWorkersBound: the digest page looks the keys'
// self-revocations up pageRevocationWorkers at a time, never more. The
// index holds each of those reads until more are in flight than the bound
// or none comes for a while, so every read the page starts at once is
// counted together.
func TestPagesRevocationWorkersBound(t *testing.T) {
	const keys = 20
	dir := t.TempDir()
	var idx *gatedIndex
	tl := startLedgerAt(t, func(t testing.TB) Storage {
		st := posixAt(dir)(t)
		idx = &gatedIndex{Index: st.Index()}
		return indexedStorage{Storage: st, idx: idx}
	}, Config{})
	d := randomDigest(t)
	now := time.Now().Add(-time.Hour)
	var entries []*notarize.Entry
	for range keys {
		entries = append(entries, newTestSigner(t).signSubject(t, d, "registry.example/app:1", notarize.StatusTrusted, now))
	}
	tl.submitAll(t, entries)
	gate := &testutil.InFlight{Bound: pageRevocationWorkers, Idle: 100 * time.Millisecond}
	idx.gate.Store(gate)
	status, _, body := do(t, http.MethodGet, tl.url+"/?digest="+d.String(), nil)
	idx.gate.Store(nil)
	if status != http.StatusOK || len(pageRows(t, string(body))) != keys {
		t.Fatalf("page: status %d, %d rows, want %d", status, len(pageRows(t, string(body))), keys)
	}
	if gate.Calls() != keys {
		t.Fatalf("%d self-revocation reads, want one per key (%d)", gate.Calls(), keys)
	}
	if most := gate.Most(); most > pageRevocationWorkers {
		t.Fatalf("%d self-revocation reads in flight at once, at most %d", most, pageRevocationWorkers)
	}
}
