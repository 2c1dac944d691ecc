package replica_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/internal/witnesstest"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/replica"
)

// TestReplicaWitnessedFreshness: a front before a real ledger adds the
// witnesses' cosignatures to its checkpoints, then freezes /checkpoint just
// before a revocation. The replica keeps polling successfully (nothing is
// forged), but with a witness policy its freshness counts from the
// cosignatures: after MaxStaleness it refuses, naming the age. Without a
// policy the same replica keeps serving the revoked state (the attack).
// Thawed, it catches up and is fresh again.
func TestReplicaWitnessedFreshness(t *testing.T) {
	srv := ledgertest.Start(t)
	w1, w2, w3 := witnesstest.Three(t)
	policy, err := ledgerclient.ParseWitnessPolicy(witnesstest.Policy(2, w1, w2, w3))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Now().Truncate(time.Second)}
	front := witnesstest.NewFront(t, srv.URL, w1, w3)
	front.SetClock(clk.Now)

	signer, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: srv.URL, Home: t.TempDir(), VerifierKey: srv.VerifierKey})
	if err != nil {
		t.Fatal(err)
	}
	open := func(p *ledgerclient.WitnessPolicy) *replica.Replica {
		lc, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: front.URL, Home: t.TempDir(), VerifierKey: srv.VerifierKey, WitnessPolicy: p})
		if err != nil {
			t.Fatal(err)
		}
		r, err := replica.Open(replica.Config{Path: filepath.Join(t.TempDir(), "replica.db"), Source: ledgerclient.NewFollower(lc, 0),
			MaxStaleness: time.Minute, Now: clk.Now, Witnesses: p})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() })
		return r
	}
	witnessed, unwitnessed := open(policy), open(nil)
	if err := witnessed.Fresh(); !errors.Is(err, replica.ErrStale) {
		t.Fatalf("before any sync: %v", err)
	}
	sync := func(r *replica.Replica) {
		t.Helper()
		if _, err := r.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	sv := newSigner(t)
	d := notarize.DigestOf([]byte("frozen"))
	if _, err := signer.Submit(t.Context(), entry(t, sv, d, notarize.StatusTrusted, time.Now().Add(-time.Hour))); err != nil {
		t.Fatal(err)
	}
	sync(witnessed)
	sync(unwitnessed)
	st := witnessed.Status()
	if !st.WitnessedAt.Equal(clk.Now()) || st.Size != 1 || !strings.Contains(string(st.Checkpoint), "— witness1.test ") {
		t.Fatalf("status %+v", st)
	}
	if !unwitnessed.Status().WitnessedAt.IsZero() {
		t.Fatal("WitnessedAt without a policy")
	}

	front.Freeze()
	if _, err := signer.Submit(t.Context(), entry(t, sv, d, notarize.StatusUntrusted, time.Now())); err != nil {
		t.Fatal(err)
	}
	clk.Add(30 * time.Second)
	sync(witnessed)
	if _, err := witnessed.Records(t.Context(), d); err != nil {
		t.Fatalf("within max staleness: %v", err)
	}
	clk.Add(31 * time.Second)
	sync(witnessed)
	sync(unwitnessed)
	if _, err := unwitnessed.Records(t.Context(), d); err != nil {
		t.Fatalf("without a witness policy the frozen view should still be served (the attack): %v", err)
	}
	_, err = witnessed.Records(t.Context(), d)
	if !errors.Is(err, replica.ErrStale) || !strings.Contains(err.Error(), "cosigned 1m1s ago") || !strings.Contains(err.Error(), "holding back") {
		t.Fatalf("frozen front past max staleness: %v", err)
	}
	if err := witnessed.Fresh(); err == nil {
		t.Fatal("Fresh with a frozen front")
	}

	front.Thaw()
	sync(witnessed)
	recs, err := witnessed.Records(t.Context(), d)
	if err != nil || len(recs) != 2 {
		t.Fatalf("after the thaw: %v, %d records", err, len(recs))
	}
	// Without the freeze, time passing keeps it fresh: the witnesses cosign again.
	clk.Add(5 * time.Minute)
	sync(witnessed)
	if err := witnessed.Fresh(); err != nil {
		t.Fatal(err)
	}

	// A checkpoint cosigned by one witness only: the client refuses it and
	// the replica goes stale after the bound.
	front.SetWitnesses(w2)
	if _, err := witnessed.Sync(t.Context()); !errors.Is(err, ledgerclient.ErrWitnessQuorum) {
		t.Fatalf("sync of a checkpoint without quorum: %v", err)
	}
	clk.Add(61 * time.Second)
	if err := witnessed.Fresh(); err == nil || !strings.Contains(err.Error(), "missing w1 (witness1.test), w3 (witness3.test)") {
		t.Fatalf("stale without quorum: %v", err)
	}
}

// TestReplicaWitnessedAtSurvivesRestart: the stored checkpoint's quorum is
// checked again at Open, so a restarted proxy knows how fresh it is.
func TestReplicaWitnessedAtSurvivesRestart(t *testing.T) {
	srv := ledgertest.Start(t)
	w1 := witnesstest.New(t, "w1", "witness1.test")
	policy, err := ledgerclient.ParseWitnessPolicy(witnesstest.Policy(1, w1))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Now().Truncate(time.Second)}
	front := witnesstest.NewFront(t, srv.URL, w1)
	front.SetClock(clk.Now)
	lc, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: front.URL, Home: t.TempDir(), VerifierKey: srv.VerifierKey, WitnessPolicy: policy})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "replica.db")
	cfg := replica.Config{Path: path, Source: ledgerclient.NewFollower(lc, 0), MaxStaleness: time.Minute, Now: clk.Now, Witnesses: policy}
	r, err := replica.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	_ = r.Close()
	if r, err = replica.Open(cfg); err != nil {
		t.Fatal(err)
	}
	if got := r.Status().WitnessedAt; !got.Equal(clk.Now()) {
		t.Fatalf("WitnessedAt after reopening = %v, want %v", got, clk.Now())
	}
	// Under another policy the stored checkpoint has no quorum: stale.
	_ = r.Close()
	other, _ := ledgerclient.ParseWitnessPolicy(witnesstest.Policy(1, witnesstest.New(t, "w9", "witness9.test")))
	cfg.Witnesses = other
	if r, err = replica.Open(cfg); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Fresh(); !errors.Is(err, replica.ErrStale) {
		t.Fatalf("stored checkpoint under another policy: %v", err)
	}
}

// TestReplicaWitnessClockAhead: cosignatures dated minutes ahead (witness
// clocks ahead) count from the replica's now, so a front that freezes such
// a checkpoint still goes stale after MaxStaleness, not after the witnesses'
// date plus MaxStaleness.
func TestReplicaWitnessClockAhead(t *testing.T) {
	srv := ledgertest.Start(t)
	w1 := witnesstest.New(t, "w1", "witness1.test")
	policy, err := ledgerclient.ParseWitnessPolicy(witnesstest.Policy(1, w1))
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Now().Truncate(time.Second)}
	front := witnesstest.NewFront(t, srv.URL, w1)
	front.SetClock(func() time.Time { return clk.Now().Add(5 * time.Minute) })
	lc, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: front.URL, Home: t.TempDir(), VerifierKey: srv.VerifierKey, WitnessPolicy: policy})
	if err != nil {
		t.Fatal(err)
	}
	r, err := replica.Open(replica.Config{Path: filepath.Join(t.TempDir(), "replica.db"), Source: ledgerclient.NewFollower(lc, 0),
		MaxStaleness: time.Minute, Now: clk.Now, Witnesses: policy})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := r.Status().WitnessedAt; !got.Equal(clk.Now()) {
		t.Fatalf("WitnessedAt = %v, want the replica's now %v", got, clk.Now())
	}
	front.Freeze()
	clk.Add(61 * time.Second)
	if _, err := r.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := r.Fresh(); !errors.Is(err, replica.ErrStale) {
		t.Fatalf("frozen front, cosignatures dated ahead: %v", err)
	}
}
