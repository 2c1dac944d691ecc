package ledgerclient_test

import (
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	lwitnesstest "github.com/notarize/docker-notarize/ledger/witnesstest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// TestWitnessedLedgerEndToEnd: a real ledger witnessed by three real
// omniwitness processes (2-of-3), and a client taking the same policy
// file: receipts, lookups and the latest checkpoint carry a quorum whose
// age is recent; a client whose policy names other witnesses refuses every
// checkpoint, naming them; with two witnesses down the ledger cannot get
// its checkpoint cosigned again, and the client refuses it once the
// quorum is older than its bound.
func TestWitnessedLedgerEndToEnd(t *testing.T) {
	t.Parallel()
	const origin = "example.com/witnessed-e2e"
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	ws := lwitnesstest.StartN(t, 3, origin, vkey)
	policyFile := lwitnesstest.Policy(2, ws...)
	srv := ledgertest.Start(t, ledgertest.WithSignerKey(skey), ledgertest.WithOrigin(origin), ledgertest.WithConfig(func(c *ledger.Config) {
		c.WitnessPolicy = policyFile
		c.CheckpointInterval = 200 * time.Millisecond
		c.CheckpointRepublishInterval = 500 * time.Millisecond
		c.WitnessTimeout = 2 * time.Second
		c.ReceiptTimeout = 3 * time.Second
		// No map root while the witnesses are stopped: it could never be
		// published, and Close would wait for it.
		c.MapCommitInterval = time.Hour
	}))
	policy, err := ledgerclient.ParseWitnessPolicy(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	const maxAge = 5 * time.Second
	c, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: srv.URL, Home: t.TempDir(), VerifierKey: vkey, WitnessPolicy: policy, MaxWitnessAge: maxAge})
	if err != nil {
		t.Fatal(err)
	}
	d := notarize.DigestOf([]byte("witnessed e2e"))
	res, err := c.Submit(t.Context(), notarizetest.Entry(t, notarizetest.NewSigner(t), d, notarize.StatusTrusted, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	if age := time.Since(res.Checkpoint.WitnessedAt); res.Checkpoint.WitnessedAt.IsZero() || age > maxAge {
		t.Fatalf("receipt checkpoint witnessed at %v", res.Checkpoint.WitnessedAt)
	}
	lr, err := c.Lookup(t.Context(), d)
	if err != nil || len(lr.Records) != 1 || lr.Checkpoint.WitnessedAt.IsZero() {
		t.Fatalf("lookup: %+v, %v", lr, err)
	}

	// A policy naming witnesses that never saw this ledger.
	others, err := ledgerclient.ParseWitnessPolicy([]byte(strings.Join([]string{
		"witness x1 " + lwitnesstest.New(t, "x1", origin, vkey).VKey + " http://127.0.0.1:1/",
		"quorum x1", ""}, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: srv.URL, Home: t.TempDir(), WitnessPolicy: others}); !errors.Is(err, ledgerclient.ErrWitnessQuorum) || !strings.Contains(err.Error(), "missing x1") {
		t.Fatalf("first use under a policy of other witnesses: %v", err)
	}

	// Two of three down: nothing is cosigned any more, the quorum ages.
	ws[1].Stop(t)
	ws[2].Stop(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := c.Latest(t.Context())
		var se *ledgerclient.StaleCheckpointError
		if errors.As(err, &se) {
			if se.MaxAge != maxAge || se.Age <= maxAge {
				t.Fatalf("stale error %+v", se)
			}
			break
		}
		if err != nil {
			t.Fatalf("latest with the quorum down: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the checkpoint was never refused as stale with two of three witnesses down")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
