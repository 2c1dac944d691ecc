package ledgerclient_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// TestRedteam3FrozenKeyHistory: K trusted a digest, then vetoed it
// (untrusted), then K was revoked. A verifier then reads all of K's
// statements about the digest to choose the current one among those
// before the revocation. A front answers that one lookup with a genuine
// answer recorded before the veto (an older, consistent checkpoint in
// which K's only statement is the "trusted"). The verdict must never
// become TRUSTED: the frozen answer is a rollback.
func TestRedteam3FrozenKeyHistory(t *testing.T) {
	srv := ledgertest.Start(t, ledgertest.WithConfig(fastMap))
	direct := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	k := notarizetest.NewSigner(t)
	kid := notarizetest.KeyID(t, k)
	d := digest("vetoed later")
	submit(t, direct, notarizetest.Entry(t, k, d, notarize.StatusTrusted, t0))

	historyPath := api.PathDigests + string(d)
	var frozen atomic.Pointer[[]byte]
	var record atomic.Bool
	record.Store(true)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		history := r.URL.Path == historyPath && r.URL.Query().Get(api.QueryKeyID) == kid
		if b := frozen.Load(); history && b != nil && !record.Load() {
			w.Header().Set("Content-Type", api.MediaTypeJSON)
			_, _ = w.Write(*b)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, srv.URL+r.URL.RequestURI(), r.Body)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if history && record.Load() && resp.StatusCode == http.StatusOK {
			frozen.Store(&body)
		}
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(body)
	}))
	t.Cleanup(front.Close)
	if res, err := newClient(t, front.URL, t.TempDir(), srv.VerifierKey).Lookup(t.Context(), d, kid); err != nil || len(res.Records) != 1 {
		t.Fatalf("recording the history before the veto: %+v %v", res, err)
	}
	record.Store(false)

	submit(t, direct, notarizetest.Entry(t, k, d, notarize.StatusUntrusted, t0.Add(time.Minute)))
	submit(t, direct, notarizetest.KeyRevocation(t, k, kid, t0.Add(2*time.Minute)))
	submit(t, direct, notarizetest.Entry(t, k, d, notarize.StatusTrusted, t0.Add(time.Hour))) // the thief

	for _, fresh := range []bool{true, false} {
		t.Run(fmt.Sprintf("fresh client %v", fresh), func(t *testing.T) {
			home := t.TempDir()
			if !fresh {
				// A client that verified the ledger before the veto.
				if _, err := newClient(t, front.URL, home, srv.VerifierKey).Current(t.Context(), digest("other"), kid); err != nil {
					t.Fatal(err)
				}
			}
			c := newClient(t, front.URL, home, srv.VerifierKey)
			res, revs, err := c.CurrentWithRevocations(t.Context(), d, []string{kid}, nil)
			if err != nil {
				t.Logf("refused: %v", err)
				return
			}
			if v := notarize.DecideWithRevocations(res.Records, d, []string{kid}, revs).Verdict; v != notarize.Untrusted {
				t.Fatalf("BYPASS: a frozen history of the revoked key hid its veto: verdict %v (revocations %+v)", v, revs)
			}
		})
	}
}

// TestRedteam3KeyIDSpellings: a key ID in another spelling (upper-case
// hex, a sha256: prefix, another length) is never answered "not
// revoked": the revocation lookups refuse it.
func TestRedteam3KeyIDSpellings(t *testing.T) {
	srv := ledgertest.Start(t, ledgertest.WithConfig(fastMap))
	c := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	k := notarizetest.NewSigner(t)
	kid := notarizetest.KeyID(t, k)
	submit(t, c, notarizetest.KeyRevocation(t, k, kid, t0))
	for _, id := range []string{strings.ToUpper(kid), "sha256:" + kid, kid[:63], kid + "0", " " + kid} {
		if revs, err := c.Revocations(t.Context(), []string{id}, nil); err == nil {
			t.Fatalf("BYPASS: Revocations(%q) = %+v, nil: a key ID in another spelling read as not revoked", id, revs)
		}
		if _, revs, err := c.CurrentWithRevocations(t.Context(), digest("x"), []string{id}, nil); err == nil {
			t.Fatalf("BYPASS: CurrentWithRevocations(%q) = %+v, nil", id, revs)
		}
	}
	if revs, err := c.Revocations(t.Context(), []string{kid}, map[string][]string{kid: {strings.ToUpper(kid)}}); err == nil && len(revs) != 1 {
		t.Fatalf("a revoker in another spelling: %+v", revs)
	}
}

// TestRedteam3RevocationRace: while a revocation and then the thief's
// backdated "trusted" reach the ledger, verifiers ask about the thief's
// digest over and over. No answer may count the thief's statement: an
// answer holding it was read in a log that holds the revocation before
// it, and the revocation lookups must have seen that log.
func TestRedteam3RevocationRace(t *testing.T) {
	t.Parallel()
	srv := ledgertest.Start(t, ledgertest.WithConfig(fastMap))
	direct := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	const rounds = 6
	for i := range rounds {
		k := notarizetest.NewSigner(t)
		kid := notarizetest.KeyID(t, k)
		stolen := digest(fmt.Sprintf("stolen %d", i))
		submit(t, direct, notarizetest.Entry(t, k, digest(fmt.Sprintf("before %d", i)), notarize.StatusTrusted, t0))
		var (
			done    atomic.Bool
			wg      sync.WaitGroup
			mu      sync.Mutex
			bypass  error
			answers int
		)
		for w := range 3 {
			c := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
			wg.Go(func() {
				for !done.Load() {
					res, revs, err := c.CurrentWithRevocations(t.Context(), stolen, []string{kid}, nil)
					if err != nil {
						continue // a refusal is no verdict
					}
					mu.Lock()
					answers++
					if v := notarize.DecideWithRevocations(res.Records, stolen, []string{kid}, revs).Verdict; v == notarize.Trusted && bypass == nil {
						bypass = fmt.Errorf("verifier %d: the thief's statement counted (records %+v, revocations %+v)", w, res.Records, revs)
					}
					mu.Unlock()
				}
			})
		}
		submit(t, direct, notarizetest.KeyRevocation(t, k, kid, t0))
		submit(t, direct, notarizetest.Entry(t, k, stolen, notarize.StatusTrusted, t0.Add(-24*time.Hour)))
		time.Sleep(400 * time.Millisecond)
		done.Store(true)
		wg.Wait()
		if bypass != nil {
			t.Fatalf("BYPASS: round %d: %v", i, bypass)
		}
		if answers == 0 {
			t.Fatalf("round %d: no verifier got an answer", i)
		}
	}
}

// TestRedteam3RevocationFromAnotherLog: a front answers the revocation
// lookups from another ledger (its own log, where K is not revoked, or
// where a thief "revoked" the key of a signer it wants to silence) and
// everything else from the real one. The answers are signed by another
// log's key: the call fails, it never reads "not revoked" nor "revoked".
func TestRedteam3RevocationFromAnotherLog(t *testing.T) {
	ledgerA := ledgertest.Start(t, ledgertest.WithConfig(fastMap))
	other := ledgertest.Start(t, ledgertest.WithConfig(fastMap))
	direct := newClient(t, ledgerA.URL, t.TempDir(), ledgerA.VerifierKey)
	k, victim := notarizetest.NewSigner(t), notarizetest.NewSigner(t)
	kid, vid := notarizetest.KeyID(t, k), notarizetest.KeyID(t, victim)
	stolen := digest("stolen elsewhere")
	submit(t, direct, notarizetest.KeyRevocation(t, k, kid, t0))
	submit(t, direct, notarizetest.Entry(t, k, stolen, notarize.StatusTrusted, t0.Add(-time.Hour)))
	submit(t, direct, notarizetest.Entry(t, victim, stolen, notarize.StatusTrusted, t0))
	submit(t, newClient(t, other.URL, t.TempDir(), other.VerifierKey), notarizetest.KeyRevocation(t, victim, vid, t0))

	kd, _ := notarize.KeyRevocationDigest(kid)
	vd, _ := notarize.KeyRevocationDigest(vid)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := ledgerA.URL
		if strings.HasPrefix(r.URL.Path, api.PathDigests+string(kd)) || strings.HasPrefix(r.URL.Path, api.PathDigests+string(vd)) {
			up = other.URL
		}
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, up+r.URL.RequestURI(), r.Body)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(body)
	}))
	t.Cleanup(front.Close)
	for _, ids := range [][]string{{kid}, {vid}, {kid, vid}} {
		c := newClient(t, front.URL, t.TempDir(), ledgerA.VerifierKey)
		if res, revs, err := c.CurrentWithRevocations(t.Context(), stolen, ids, nil); err == nil {
			t.Fatalf("BYPASS: revocations of %v answered from another log: %v, revocations %+v", ids,
				notarize.DecideWithRevocations(res.Records, stolen, ids, revs).Verdict, revs)
		}
	}
}
