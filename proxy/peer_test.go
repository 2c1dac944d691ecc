package proxy_test

import (
	"crypto/rand"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/peer"
)

// TestPeersCatchASplitView: one ledger key, two histories (two ledgers
// sharing the key stand for a ledger that forks its log per client). Each
// proxy alone sees a consistent, signed history. Comparing with the peer's
// /notarize/v1/checkpoint, the proxy that was shown history B finds two
// signed checkpoints that cannot both be true, logs the evidence and fails
// closed; a peer with the same history changes nothing.
func TestPeersCatchASplitView(t *testing.T) {
	skey, _, err := note.GenerateKey(rand.Reader, "split.test/ledger")
	if err != nil {
		t.Fatal(err)
	}
	la := ledgertest.Start(t, ledgertest.WithSignerKey(skey), ledgertest.WithOrigin("split.test/ledger"))
	lb := ledgertest.Start(t, ledgertest.WithSignerKey(skey), ledgertest.WithOrigin("split.test/ledger"))
	if la.VerifierKey != lb.VerifierKey {
		t.Fatal("the two ledgers do not share a key")
	}
	pa := newEnv(t, withLedger(la))
	pb := newEnv(t, withLedger(lb), withPeer(pa))
	honest := newEnv(t, withLedger(la), withPeer(pa))

	d := digestOf(t, pa.push("split", "v1"))
	pa.sign(pa.release, d, notarize.StatusUntrusted) // history A: revoked
	pb.sign(pb.release, d, notarize.StatusTrusted)   // history B: trusted
	for _, e := range []*env{pa, pb, honest} {
		e.sync()
	}
	if err := pb.pull("local/split:v1"); err != nil {
		t.Fatalf("proxy B alone sees nothing wrong: %v", err)
	}

	checker := func(e *env, peers ...*env) *peer.Checker {
		t.Helper()
		// The proxy's own ledger client state (the one its replica follows with).
		lc, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: e.follow, Home: filepath.Join(e.dir, "proxy-home"), VerifierKey: e.ledger.VerifierKey})
		if err != nil {
			t.Fatal(err)
		}
		var urls []string
		for _, p := range peers {
			urls = append(urls, p.proxy.URL)
		}
		c, err := peer.New(peer.Config{Peers: urls, Ledger: lc, OnFork: e.replica.ReportFork})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	gone := newEnv(t, withLedger(la), withPeer(pa))
	gone.proxy.Close()
	if err := checker(honest, pa, gone).Check(t.Context()); err != nil {
		t.Fatalf("same history, one peer unreachable: %v", err)
	}
	if code, _, body := honest.do(http.MethodGet, "/healthz", nil); code != http.StatusOK {
		t.Fatalf("honest peer: healthz %d %s", code, body)
	}

	// Same size, two roots.
	err = checker(pb, pa).Check(t.Context())
	var fe *ledgerclient.ForkError
	if !errors.As(err, &fe) {
		t.Fatalf("split view between peers: %v", err)
	}
	code, _, body := pb.do(http.MethodGet, "/healthz", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "SECURITY ERROR") || !strings.Contains(string(body), pa.proxy.URL) {
		t.Fatalf("healthz after a fork: %d %s", code, body)
	}
	code, _, body = pb.do(http.MethodGet, manifestPath("local/split", "v1"), nil)
	if c, msg := ociErr(t, body); code != http.StatusServiceUnavailable || !strings.Contains(msg, "another proxy") {
		t.Fatalf("pull after a fork: %d %s %s", code, c, msg)
	}

	// Different sizes: the proxy with the longer history B proves, from its
	// ledger's tiles, that A's checkpoint is not a prefix of it.
	pc := newEnv(t, withLedger(lb), withPeer(pa))
	pc.sign(pc.release, digestOf(t, pa.push("split", "v2")), notarize.StatusTrusted)
	pc.sync()
	if err := checker(pc, pa).Check(t.Context()); !errors.As(err, &fe) {
		t.Fatalf("split view, peer behind: %v", err)
	}
}
