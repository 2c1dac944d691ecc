package ledgerclient_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
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

// TestPendingRevocationsLoggedMeanwhile: verify asks for a key's
// revocations while the registry resolves the image. The key is revoked,
// and its thief's backdated "trusted" logged, after those lookups were
// answered and before the statement lookup. The thief's statement is in
// the statement lookup's answer; the revocation must be too, so the
// verdict is UNKNOWN, never TRUSTED.
func TestPendingRevocationsLoggedMeanwhile(t *testing.T) {
	srv := ledgertest.Start(t, ledgertest.WithConfig(fastMap))
	direct := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	k := notarizetest.NewSigner(t)
	kid := notarizetest.KeyID(t, k)
	stolen := digest("stolen while the registry answered")
	submit(t, direct, notarizetest.Entry(t, k, digest("before"), notarize.StatusTrusted, t0))

	c := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	p := c.StartRevocations(t.Context(), []string{kid}, nil)
	ledgerclient.WaitStarted(p)
	rev := submit(t, direct, notarizetest.KeyRevocation(t, k, kid, t0))
	submit(t, direct, notarizetest.Entry(t, k, stolen, notarize.StatusTrusted, t0.Add(-24*time.Hour)))

	// Without its revocation, the thief's statement decides.
	if cur, err := direct.Current(t.Context(), stolen, kid); err != nil || len(cur.Records) != 1 || cur.Records[0].Statement.Predicate.Status != notarize.StatusTrusted {
		t.Fatalf("the ledger should hold the thief's statement: %+v %v", cur, err)
	}

	res, revs, err := p.Current(t.Context(), stolen)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Records) != 0 {
		t.Fatalf("records after the revocation counted: %+v", res.Records)
	}
	if r, ok := revs[kid]; !ok || r.Index != rev.Index {
		t.Fatalf("revocations = %+v, want key %s revoked at %d", revs, kid, rev.Index)
	}
	if v := notarize.DecideWithRevocations(res.Records, stolen, []string{kid}, revs).Verdict; v != notarize.Unknown {
		t.Fatalf("BYPASS: a revocation logged after the revocation lookups hid: verdict %v", v)
	}
	if _, _, err := p.Current(t.Context(), stolen); err == nil {
		t.Fatal("pending revocations taken twice")
	}
}

// TestPendingRevocationsFailureReported: the revocation lookups fail
// before the digest is known (a front refuses them). The statement lookup
// succeeds, and the call still fails, naming the revocations: a verifier
// never reads "not revoked" from a lookup that did not answer.
func TestPendingRevocationsFailureReported(t *testing.T) {
	f, c, kid, d := heldFrontSetup(t)
	f.revFail.Store(true)
	p := c.StartRevocations(t.Context(), []string{kid}, nil)
	ledgerclient.WaitStarted(p)
	res, revs, err := p.Current(t.Context(), d)
	if err == nil {
		t.Fatalf("BYPASS: revocation lookups that failed read as none: %+v, revocations %+v", res.Records, revs)
	}
	if !strings.Contains(err.Error(), "revocations of key "+kid) {
		t.Fatalf("error %q does not name the revocation lookup", err)
	}
	// Stop after a start ends the lookups.
	c.StartRevocations(t.Context(), []string{kid}, nil).Stop()
}

// heldFront passes everything to the ledger except: requests about
// revD (the revocation lookups) and about d (the statement lookup), each
// of which it fails with 503 or holds until the client gives up, as set.
type heldFront struct {
	*httptest.Server
	revFail, revHold, stmtFail, stmtHold atomic.Bool
	revHeld, revCancelled                atomic.Int32
	stmtCancelled                        atomic.Int32
}

func newHeldFront(t *testing.T, ledgerURL string, revD, d notarize.Digest) *heldFront {
	up, _ := url.Parse(ledgerURL)
	rp := httputil.NewSingleHostReverseProxy(up)
	f := &heldFront{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, api.PathDigests+string(revD)):
			if f.revFail.Load() {
				http.Error(w, "no revocations today", http.StatusServiceUnavailable)
				return
			}
			if f.revHold.Load() {
				f.revHeld.Add(1)
				<-r.Context().Done()
				f.revCancelled.Add(1)
				return
			}
		case strings.HasPrefix(r.URL.Path, api.PathDigests+string(d)):
			if f.stmtFail.Load() {
				http.Error(w, "no statements today", http.StatusServiceUnavailable)
				return
			}
			if f.stmtHold.Load() {
				<-r.Context().Done()
				f.stmtCancelled.Add(1)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

// heldFrontSetup starts a ledger holding one statement by a new key
// about a digest, and a heldFront before it; it returns the front, a
// client of it, the key ID and the digest.
func heldFrontSetup(t *testing.T) (*heldFront, *ledgerclient.Client, string, notarize.Digest) {
	srv := ledgertest.Start(t, ledgertest.WithConfig(fastMap))
	direct := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	k := notarizetest.NewSigner(t)
	kid := notarizetest.KeyID(t, k)
	d := digest("signed")
	submit(t, direct, notarizetest.Entry(t, k, d, notarize.StatusTrusted, t0))
	revD, _ := notarize.KeyRevocationDigest(kid)
	f := newHeldFront(t, srv.URL, revD, d)
	c, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: f.URL, Home: t.TempDir(), VerifierKey: srv.VerifierKey, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return f, c, kid, d
}

// TestPendingRevocationsFailFirst: the revocation lookups fail (early,
// while the registry answers) and the front holds the statement lookup:
// Current ends at once with the revocations' error, never waiting out
// the client's timeout.
func TestPendingRevocationsFailFirst(t *testing.T) {
	f, c, kid, d := heldFrontSetup(t)
	f.revFail.Store(true)
	f.stmtHold.Store(true)
	p := c.StartRevocations(t.Context(), []string{kid}, nil)
	ledgerclient.WaitStarted(p)
	start := time.Now()
	_, _, err := p.Current(t.Context(), d)
	if err == nil || !strings.Contains(err.Error(), "revocations of key") {
		t.Fatalf("err = %v, want the revocation lookup's", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("Current waited %v for a held statement lookup after the revocations failed", el)
	}
}

// TestPendingStatementLookupFailsFirst: the statement lookup fails while
// the front holds the revocation lookups: the statement's error is
// reported at once, and the held lookups are cancelled before Current
// returns (none outlives it).
func TestPendingStatementLookupFailsFirst(t *testing.T) {
	f, c, kid, d := heldFrontSetup(t)
	f.revHold.Store(true)
	f.stmtFail.Store(true)
	p := c.StartRevocations(t.Context(), []string{kid}, nil)
	for f.revHeld.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	_, _, err := p.Current(t.Context(), d)
	if err == nil || !strings.Contains(err.Error(), "current statements about") {
		t.Fatalf("err = %v, want the statement lookup's", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("Current took %v", el)
	}
	if !ledgerclient.StartedDone(p) {
		t.Fatal("the revocation lookups outlive Current")
	}
}

// TestPendingRevocationsTakenTwice: a second call of Current is refused
// and leaves the first alone (it once cancelled the first call's
// revocation lookups, which then failed as cancelled).
func TestPendingRevocationsTakenTwice(t *testing.T) {
	f, c, kid, d := heldFrontSetup(t) // pending_review_test.go: a front before a real ledger
	f.revHold.Store(true)             // hold the revocation lookups
	p := c.StartRevocations(t.Context(), []string{kid}, nil)
	for f.revHeld.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	first := make(chan error, 1)
	go func() { _, _, err := p.Current(t.Context(), d); first <- err }()
	time.Sleep(200 * time.Millisecond)
	if _, _, err := p.Current(t.Context(), d); err == nil {
		t.Fatal("taken twice")
	}
	f.revHold.Store(false)
	select {
	case err := <-first:
		if err != nil {
			t.Fatalf("the second, refused call broke the first one: %v", err)
		}
	case <-time.After(2 * time.Second): // still waiting: left alone
	}
}
