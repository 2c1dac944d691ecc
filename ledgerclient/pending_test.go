package ledgerclient_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
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
	srv := ledgertest.Start(t, ledgertest.WithConfig(fastMap))
	direct := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	k := notarizetest.NewSigner(t)
	kid := notarizetest.KeyID(t, k)
	d := digest("signed")
	submit(t, direct, notarizetest.Entry(t, k, d, notarize.StatusTrusted, t0))
	kd, _ := notarize.KeyRevocationDigest(kid)
	up, _ := url.Parse(srv.URL)
	rp := httputil.NewSingleHostReverseProxy(up)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, api.PathDigests+string(kd)) {
			http.Error(w, "no", http.StatusServiceUnavailable)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	c := newClient(t, front.URL, t.TempDir(), srv.VerifierKey)
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
