package proxy_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/internal/witnesstest"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
)

// TestFrozenCheckpointFailsClosedWithWitnesses is the attack of issue 9: a
// front before the ledger freezes /checkpoint just before an untrust. The
// proxy's polls keep succeeding (nothing is forged), so without witnesses
// it serves the revoked image for ever. With a witness policy its
// freshness counts from the newest quorum's cosignatures: past
// --max-staleness enforced pulls are 503 and /healthz is 503 naming the
// age; when the front lets the ledger through again, the revocation is
// enforced and the proxy is healthy.
func TestFrozenCheckpointFailsClosedWithWitnesses(t *testing.T) {
	ledger := ledgertest.Start(t)
	w1, w2, w3 := witnesstest.Three(t)
	policy, err := ledgerclient.ParseWitnessPolicy(witnesstest.Policy(2, w1, w2, w3))
	if err != nil {
		t.Fatal(err)
	}
	clk := &testClock{now: time.Now().Truncate(time.Second)}
	front := witnesstest.NewFront(t, ledger.URL, w1, w2)
	front.SetClock(clk.Now)
	e := newEnv(t, withLedger(ledger), withFollow(front.URL), withWitnesses(policy), withMaxStaleness(time.Minute), withClock(clk.Now))
	control := newEnv(t, withLedger(ledger), withPeer(e), withFollow(front.URL), withMaxStaleness(time.Minute), withClock(clk.Now))

	d := digestOf(t, e.push("frozen", "v1"))
	e.sign(e.release, d, notarize.StatusTrusted)
	e.sync()
	control.sync()
	if err := e.pull("local/frozen:v1"); err != nil {
		t.Fatal(err)
	}
	// The proxy serves its verified cosigned checkpoint to its peers.
	code, _, cp := e.do(http.MethodGet, "/notarize/v1/checkpoint", nil)
	if code != http.StatusOK {
		t.Fatalf("/notarize/v1/checkpoint: %d %s", code, cp)
	}
	if got, err := policy.Witnessed(ledgerclient.Checkpoint{Raw: cp}); err != nil || !got.WitnessedAt.Equal(clk.Now()) {
		t.Fatalf("served checkpoint: %v %v\n%s", got.WitnessedAt, err, cp)
	}

	front.Freeze()
	e.sign(e.release, d, notarize.StatusUntrusted)
	clk.Add(30 * time.Second)
	e.sync()
	if err := e.pull("local/frozen:v1"); err != nil {
		t.Fatalf("within max staleness: %v", err)
	}
	clk.Add(31 * time.Second)
	e.sync() // succeeds: the front answers, with the old checkpoint
	control.sync()
	if err := control.pull("local/frozen:v1"); err != nil {
		t.Fatalf("the control proxy without witnesses should still serve the revoked image (the attack): %v", err)
	}
	code, _, body := e.do(http.MethodGet, manifestPath("local/frozen", "v1"), nil)
	c, msg := ociErr(t, body)
	if code != http.StatusServiceUnavailable || c != "UNAVAILABLE" || !strings.Contains(msg, "cosigned 1m1s ago") {
		t.Fatalf("frozen front past max staleness: %d %s %s", code, c, msg)
	}
	code, _, body = e.do(http.MethodGet, "/healthz", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "cosigned 1m1s ago") || !strings.Contains(string(body), "witness") {
		t.Fatalf("healthz with a frozen front: %d %s", code, body)
	}

	front.Thaw()
	e.sync()
	if code, _, body := e.do(http.MethodGet, "/healthz", nil); code != http.StatusOK {
		t.Fatalf("healthz after the thaw: %d %s", code, body)
	}
	code, _, body = e.do(http.MethodGet, manifestPath("local/frozen", "v1"), nil)
	if c, msg := ociErr(t, body); code != http.StatusForbidden || !strings.Contains(msg, "UNTRUSTED") {
		t.Fatalf("revoked image after the thaw: %d %s %s", code, c, msg)
	}
	// Unfrozen, time passing keeps the proxy fresh: the witnesses cosign again.
	clk.Add(5 * time.Minute)
	e.sync()
	if code, _, body := e.do(http.MethodGet, "/healthz", nil); code != http.StatusOK {
		t.Fatalf("healthz later: %d %s", code, body)
	}
}
