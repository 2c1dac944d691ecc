package ledgerclient_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// TestRevocationsAgainstThief: against a real ledger, key K is revoked by
// itself, then its thief signs with it: a backdated "trusted" on a new
// digest, a newer "trusted" over K's earlier "untrusted", and a "trusted"
// about sha256:K (an un-revoke). Revocations finds the revocation at its
// log index; CurrentRevoked gives the records before it, so the verdicts
// are what they were before the theft. Current alone (no revocation)
// would have read the thief's statements: the test checks that too, so
// it fails if the revocation stops mattering.
func TestRevocationsAgainstThief(t *testing.T) {
	srv := ledgertest.Start(t, ledgertest.WithConfig(fastMap))
	c := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	k := notarizetest.NewSigner(t)
	kid := notarizetest.KeyID(t, k)
	approved, vetoed, stolen := digest("approved"), digest("vetoed"), digest("stolen")
	submit(t, c, notarizetest.Entry(t, k, approved, notarize.StatusTrusted, t0))
	veto := submit(t, c, notarizetest.Entry(t, k, vetoed, notarize.StatusUntrusted, t0))
	rev := submit(t, c, notarizetest.KeyRevocation(t, k, kid, t0.Add(time.Minute)))
	// The thief, after the revocation.
	submit(t, c, notarizetest.Entry(t, k, stolen, notarize.StatusTrusted, t0.Add(-24*time.Hour)))
	submit(t, c, notarizetest.Entry(t, k, vetoed, notarize.StatusTrusted, t0.Add(time.Hour)))
	kd, _ := notarize.KeyRevocationDigest(kid)
	submit(t, c, notarizetest.Entry(t, k, kd, notarize.StatusTrusted, t0.Add(time.Hour)))

	revs, err := c.Revocations(t.Context(), []string{kid}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := revs[kid]; !ok || r.Index != rev.Index || r.By != kid {
		t.Fatalf("revocations = %+v, want key %s at %d", revs, kid, rev.Index)
	}
	for _, tc := range []struct {
		d              notarize.Digest
		want, unrevoke notarize.Verdict
	}{
		{approved, notarize.Trusted, notarize.Trusted},
		{stolen, notarize.Unknown, notarize.Trusted},
		{vetoed, notarize.Untrusted, notarize.Trusted},
	} {
		res, err := c.CurrentRevoked(t.Context(), tc.d, []string{kid}, revs)
		if err != nil {
			t.Fatal(err)
		}
		dec := notarize.DecideWithRevocations(res.Records, tc.d, []string{kid}, revs)
		if dec.Verdict != tc.want {
			t.Fatalf("%s: %v, want %v (%s)", tc.d, dec.Verdict, tc.want, dec.Reason(func(s string) string { return s }))
		}
		if tc.d == vetoed && dec.Deciding.Index != veto.Index {
			t.Fatalf("vetoed decided by entry %d, want %d", dec.Deciding.Index, veto.Index)
		}
		both, revs2, err := c.CurrentWithRevocations(t.Context(), tc.d, []string{kid}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := notarize.DecideWithRevocations(both.Records, tc.d, []string{kid}, revs2).Verdict; got != tc.want {
			t.Fatalf("%s by CurrentWithRevocations: %v, want %v", tc.d, got, tc.want)
		}
		plain, err := c.Current(t.Context(), tc.d, kid)
		if err != nil {
			t.Fatal(err)
		}
		if got := notarize.Decide(plain.Records, tc.d, []string{kid}).Verdict; got != tc.unrevoke {
			t.Fatalf("%s without the revocation: %v, want %v", tc.d, got, tc.unrevoke)
		}
	}
}

// TestRevocationsWhoMayRevoke: a revocation counts only by the key itself
// or a revoker the verifier designates; a thief's revocation of a key it
// does not hold, and one by a revoker the verifier did not name, do not.
func TestRevocationsWhoMayRevoke(t *testing.T) {
	srv := ledgertest.Start(t, ledgertest.WithConfig(fastMap))
	c := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	k, revoker, thief := notarizetest.NewSigner(t), notarizetest.NewSigner(t), notarizetest.NewSigner(t)
	kid, rid := notarizetest.KeyID(t, k), notarizetest.KeyID(t, revoker)
	submit(t, c, notarizetest.KeyRevocation(t, thief, kid, t0))
	byRevoker := submit(t, c, notarizetest.KeyRevocation(t, revoker, kid, t0))

	revs, err := c.Revocations(t.Context(), []string{kid}, nil)
	if err != nil || len(revs) != 0 {
		t.Fatalf("no revoker designated: %+v %v, want none", revs, err)
	}
	revs, err = c.Revocations(t.Context(), []string{kid}, map[string][]string{kid: {rid}})
	if err != nil || revs[kid].Index != byRevoker.Index || revs[kid].By != rid {
		t.Fatalf("revoker designated: %+v %v, want the revoker's at %d", revs, err, byRevoker.Index)
	}
}

// TestRevocationsFrontHidesRevocation: a front that drops the revocation
// from the lookup answer, before or after the ledger's map root covers
// it, fails the call with ErrIncomplete: never "not revoked".
func TestRevocationsFrontHidesRevocation(t *testing.T) {
	srv := ledgertest.Start(t, ledgertest.WithConfig(fastMap))
	front := newLyingFront(t, srv.URL)
	direct := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	k := notarizetest.NewSigner(t)
	kid := notarizetest.KeyID(t, k)
	submit(t, direct, notarizetest.Entry(t, k, digest("x"), notarize.StatusTrusted, t0))
	rev := submit(t, direct, notarizetest.KeyRevocation(t, k, kid, t0))
	kd, _ := notarize.KeyRevocationDigest(kid)

	check := func(stage string) {
		t.Helper()
		c := newClient(t, front.URL, t.TempDir(), srv.VerifierKey)
		front.dropIndex.Store(int64(rev.Index))
		if revs, err := c.Revocations(t.Context(), []string{kid}, nil); !errors.Is(err, ledgerclient.ErrIncomplete) {
			t.Fatalf("%s: revocation hidden: %+v %v, want ErrIncomplete", stage, revs, err)
		}
		if res, _, err := c.CurrentWithRevocations(t.Context(), digest("x"), []string{kid}, nil); !errors.Is(err, ledgerclient.ErrIncomplete) {
			t.Fatalf("%s: revocation hidden from CurrentWithRevocations: %+v %v, want ErrIncomplete", stage, res, err)
		}
		front.dropIndex.Store(-1)
		if revs, err := c.Revocations(t.Context(), []string{kid}, nil); err != nil || revs[kid].Index != rev.Index {
			t.Fatalf("%s: honest front: %+v %v", stage, revs, err)
		}
	}
	check("in the log's tail")
	waitMapRoot(t, srv.URL, kd, kid, rev.Index+1)
	check("under the map root")
}

// TestRevocationsFrozenByFront: a front answers the lookup of K's
// revocation digest with a genuine answer recorded before the revocation
// (an older, consistent checkpoint), and the current lookup, a little
// later, from the ledger as it is, with the thief's statement made after
// the revocation. The revocations were then proven only for a log too
// short to hold the revocation: CurrentWithRevocations asks again, and
// the frozen answer, now older than what the client has verified, fails.
func TestRevocationsFrozenByFront(t *testing.T) {
	srv := ledgertest.Start(t, ledgertest.WithConfig(fastMap))
	direct := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	k := notarizetest.NewSigner(t)
	kid := notarizetest.KeyID(t, k)
	kd, _ := notarize.KeyRevocationDigest(kid)
	submit(t, direct, notarizetest.Entry(t, k, digest("before"), notarize.StatusTrusted, t0))

	var frozen atomic.Pointer[[]byte]
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		revLookup := r.URL.Path == api.PathDigests+string(kd)
		if b := frozen.Load(); revLookup && b != nil {
			w.Header().Set("Content-Type", api.MediaTypeJSON)
			_, _ = w.Write(*b)
			return
		}
		if strings.HasSuffix(r.URL.Path, api.PathCurrentSuffix) {
			time.Sleep(300 * time.Millisecond) // after the revocation lookups
		}
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, srv.URL+r.URL.RequestURI(), r.Body)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if revLookup && resp.StatusCode == http.StatusOK {
			frozen.Store(&body) // the answer before the revocation
		}
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(body)
	}))
	t.Cleanup(front.Close)
	if revs, err := newClient(t, front.URL, t.TempDir(), srv.VerifierKey).Revocations(t.Context(), []string{kid}, nil); err != nil || len(revs) != 0 {
		t.Fatalf("before the revocation: %+v %v", revs, err)
	}

	submit(t, direct, notarizetest.KeyRevocation(t, k, kid, t0))
	stolen := digest("stolen")
	submit(t, direct, notarizetest.Entry(t, k, stolen, notarize.StatusTrusted, t0.Add(-time.Hour)))
	c := newClient(t, front.URL, t.TempDir(), srv.VerifierKey)
	res, revs, err := c.CurrentWithRevocations(t.Context(), stolen, []string{kid}, nil)
	if err == nil {
		t.Fatalf("a frozen revocation lookup verified: %v, revocations %+v", notarize.DecideWithRevocations(res.Records, stolen, []string{kid}, revs).Verdict, revs)
	}
	t.Logf("refused: %v", err)
}
