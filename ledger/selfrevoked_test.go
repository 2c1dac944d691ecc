package ledger

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
)

// submitRefused submits e, wants 403 KEY_REVOKED naming keyID and the
// revocation's index rev, and returns the error response.
func (tl *testLedger) submitRefused(t testing.TB, e *notarize.Entry, keyID string, rev uint64) api.ErrorResponse {
	t.Helper()
	status, _, b := do(t, http.MethodPost, tl.url+api.PathEntries, mustMarshal(t, e))
	if status != http.StatusForbidden {
		t.Fatalf("submit by a self-revoked key: status %d, want 403: %s", status, b)
	}
	er := decodeError(t, b)
	want := fmt.Sprintf("key %s revoked itself at log index %d: statements it signs after that are refused (they would not count)", keyID, rev)
	if er.Code != api.CodeKeyRevoked || !strings.Contains(er.Message, want) {
		t.Fatalf("refusal = %+v, want code %s and a message containing %q", er, api.CodeKeyRevoked, want)
	}
	return er
}

// TestSelfRevokedKeyRefused: once a key's self-revocation is indexed, a
// statement by it that is new to the log is refused (403 KEY_REVOKED,
// naming the revocation's log index); a replay of one logged before the
// revocation still gets its receipt, as does a replay of the revocation
// itself; other keys are unaffected; Submit returns a SelfRevokedError.
func TestSelfRevokedKeyRefused(t *testing.T) {
	tl := startLedger(t, Config{})
	k, other := newTestSigner(t), newTestSigner(t)
	d := randomDigest(t)
	now := time.Now().Add(-time.Hour)

	before := k.sign(t, d, notarize.StatusTrusted, now)
	first := tl.submit(t, before, http.StatusCreated)
	revocation := k.revoke(t, k.keyID, "laptop stolen", now.Add(time.Minute))
	rev := tl.submit(t, revocation, http.StatusCreated)

	// The thief: a newer statement about d, and one about a new digest.
	tl.submitRefused(t, k.sign(t, d, notarize.StatusUnsupported, now.Add(2*time.Minute)), k.keyID, rev.Index)
	tl.submitRefused(t, k.sign(t, randomDigest(t), notarize.StatusTrusted, now.Add(3*time.Minute)), k.keyID, rev.Index)
	// A second revocation by k is new to the log too: refused.
	tl.submitRefused(t, k.revoke(t, k.keyID, "again", now.Add(4*time.Minute)), k.keyID, rev.Index)

	// Replays of what k logged before are answered with their receipts.
	replay := tl.submit(t, before, http.StatusOK)
	if !replay.Duplicate || replay.Index != first.Index {
		t.Fatalf("replay of the statement from before the revocation: index %d duplicate %v, want %d true", replay.Index, replay.Duplicate, first.Index)
	}
	tl.checkReceipt(t, replay, mustMarshal(t, before))
	if again := tl.submit(t, revocation, http.StatusOK); again.Index != rev.Index {
		t.Fatalf("replay of the revocation at %d, want %d", again.Index, rev.Index)
	}

	// Another key is unaffected, about the same digest too.
	tl.submit(t, other.sign(t, d, notarize.StatusTrusted, now.Add(5*time.Minute)), http.StatusCreated)

	// Submit (the Go API) returns the typed error.
	_, err := tl.Submit(t.Context(), k.sign(t, d, notarize.StatusTrusted, now.Add(6*time.Minute)))
	var sre *SelfRevokedError
	if !errors.As(err, &sre) || !errors.Is(err, ErrSelfRevoked) || sre.KeyID != k.keyID || sre.Index != rev.Index {
		t.Fatalf("Submit = %v, want a SelfRevokedError of key %s at %d", err, k.keyID, rev.Index)
	}

	// The answer holds across a restart (read from the index, not memory).
	tl.restart(t)
	tl.submitRefused(t, k.sign(t, d, notarize.StatusTrusted, now.Add(7*time.Minute)), k.keyID, rev.Index)
}

// TestSelfRevokedLowestCounts: the refusal names the self-revocation that
// counts, the lowest, after statements by the key about its own revocation
// digest that are not revocations (which the scan reads past).
func TestSelfRevokedLowestCounts(t *testing.T) {
	tl := startLedger(t, Config{RateLimits: RateLimits{Off: true}})
	k := newTestSigner(t)
	kd, err := notarize.KeyRevocationDigest(k.keyID)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-time.Hour)
	// Not revocations: image statements about sha256:<k>, more than a chunk.
	entries := make([]*notarize.Entry, selfRevokedChunk+3)
	for i := range entries {
		entries[i] = k.sign(t, kd, notarize.StatusTrusted, now.Add(time.Duration(i)*time.Second))
	}
	errs := make([]error, len(entries))
	var wg sync.WaitGroup
	for i, e := range entries {
		wg.Go(func() { _, errs[i] = tl.Submit(t.Context(), e) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	tl.submit(t, k.sign(t, randomDigest(t), notarize.StatusTrusted, now), http.StatusCreated) // not refused
	rev := tl.submit(t, k.revoke(t, k.keyID, "", now.Add(20*time.Minute)), http.StatusCreated)
	tl.submitRefused(t, k.sign(t, randomDigest(t), notarize.StatusTrusted, now.Add(30*time.Minute)), k.keyID, rev.Index)
}

// TestRevokedByAnotherKeyAdmitted documents the limit: a revocation of K
// by another key counts only for verifiers whose policy names that key as
// K's revoker, which the ledger cannot know, so it keeps admitting K.
func TestRevokedByAnotherKeyAdmitted(t *testing.T) {
	tl := startLedger(t, Config{})
	k, revoker := newTestSigner(t), newTestSigner(t)
	now := time.Now().Add(-time.Hour)
	tl.submit(t, k.sign(t, randomDigest(t), notarize.StatusTrusted, now), http.StatusCreated)
	tl.submit(t, revoker.revoke(t, k.keyID, "stolen", now.Add(time.Minute)), http.StatusCreated)
	tl.submit(t, k.sign(t, randomDigest(t), notarize.StatusTrusted, now.Add(2*time.Minute)), http.StatusCreated)
}

// TestAdmitSelfRevoked: Config.AdmitSelfRevoked turns the refusal off (the
// verifiers' tests write statements after a revocation with it).
func TestAdmitSelfRevoked(t *testing.T) {
	tl := startLedger(t, Config{AdmitSelfRevoked: true})
	k := newTestSigner(t)
	now := time.Now().Add(-time.Hour)
	tl.submit(t, k.revoke(t, k.keyID, "", now), http.StatusCreated)
	tl.submit(t, k.sign(t, randomDigest(t), notarize.StatusTrusted, now.Add(time.Minute)), http.StatusCreated)
}

// TestRedteam11SelfRevokedFloodRefused is the old DoS: a thief holding a
// key that revoked itself floods statements by it about one digest, which
// every verifier of that digest must read (all of the revoked key's
// statements about it, proven complete) although none counts, until
// verify and ls give up ("could not verify"). With the rate limits off (a
// patient thief stays under them), every one of them must be refused and
// the log must not grow by them.
func TestRedteam11SelfRevokedFloodRefused(t *testing.T) {
	const flood = 50
	tl := startLedger(t, Config{RateLimits: RateLimits{Off: true}})
	k, other := newTestSigner(t), newTestSigner(t)
	d := randomDigest(t)
	now := time.Now().Add(-time.Hour)
	tl.submit(t, k.sign(t, d, notarize.StatusTrusted, now), http.StatusCreated)
	rev := tl.submit(t, k.revoke(t, k.keyID, "stolen", now.Add(time.Minute)), http.StatusCreated)

	logged := 0
	for i := range flood {
		e := k.sign(t, d, []notarize.Status{notarize.StatusUnsupported, notarize.StatusUntrusted}[i%2], now.Add(time.Duration(2+i)*time.Minute))
		status, _, b := do(t, http.MethodPost, tl.url+api.PathEntries, mustMarshal(t, e))
		switch {
		case status == http.StatusCreated || status == http.StatusOK:
			logged++
		case status != http.StatusForbidden || decodeError(t, b).Code != api.CodeKeyRevoked:
			t.Fatalf("flood statement %d: status %d, want 403 %s: %s", i, status, api.CodeKeyRevoked, b)
		}
	}
	probe := tl.submit(t, other.sign(t, d, notarize.StatusTrusted, now.Add(time.Hour)), http.StatusCreated)
	if logged > 0 || probe.Index != rev.Index+1 {
		t.Fatalf("DoS: %d of %d statements by key %s after its self-revocation at %d were logged (the next entry is at %d, want %d): every verifier of %s must read them, none counts",
			logged, flood, k.keyID, rev.Index, probe.Index, rev.Index+1, d)
	}
}

// TestSelfRevokedClientError: the verifying client surfaces the refusal as
// an *ledgerclient.APIError, 403 KEY_REVOKED, whose text names the key and
// the revocation's log index.
func TestSelfRevokedClientError(t *testing.T) {
	tl := startLedger(t, Config{})
	c := newLedgerClient(t, tl.url, tl.VerifierKey(), t.TempDir())
	k := newTestSigner(t)
	now := time.Now().Add(-time.Hour)
	rev, err := c.Submit(t.Context(), k.revoke(t, k.keyID, "", now))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Submit(t.Context(), k.sign(t, randomDigest(t), notarize.StatusTrusted, now.Add(time.Minute)))
	ae, ok := errors.AsType[*ledgerclient.APIError](err)
	want := fmt.Sprintf("key %s revoked itself at log index %d", k.keyID, rev.Index)
	if !ok || ae.StatusCode != http.StatusForbidden || ae.Code != api.CodeKeyRevoked || !strings.Contains(err.Error(), want) {
		t.Fatalf("client Submit = %v, want an APIError 403 %s containing %q", err, api.CodeKeyRevoked, want)
	}
}

// BenchmarkSelfRevokedCheck is what the check costs a statement new to the
// log by a key that did not revoke itself (the hot path: one index point
// read), and by one that did (a cached answer).
func BenchmarkSelfRevokedCheck(b *testing.B) {
	tl := startLedger(b, Config{})
	live, revoked := newTestSigner(b), newTestSigner(b)
	now := time.Now().Add(-time.Hour)
	tl.submit(b, live.sign(b, randomDigest(b), notarize.StatusTrusted, now), http.StatusCreated)
	tl.submit(b, revoked.revoke(b, revoked.keyID, "", now), http.StatusCreated)
	for _, s := range []struct {
		name   string
		signer *testSigner
		want   error
	}{{"live", live, nil}, {"revoked", revoked, ErrSelfRevoked}} {
		e := s.signer.sign(b, randomDigest(b), notarize.StatusTrusted, now.Add(time.Minute))
		v, err := e.Verify()
		if err != nil {
			b.Fatal(err)
		}
		b.Run(s.name, func(b *testing.B) {
			for b.Loop() {
				if err := tl.refuseSelfRevoked(b.Context(), v); !errors.Is(err, s.want) {
					b.Fatalf("refuseSelfRevoked = %v, want %v", err, s.want)
				}
			}
		})
	}
}
