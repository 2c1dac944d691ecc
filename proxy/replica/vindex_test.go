package replica_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/replica"
)

// rootForger is a Source that hands out the real Follower's batches with
// every map-root entry replaced by one whose root is wrong, signed with the
// ledger's own key: what a ledger that commits a wrong root publishes.
type rootForger struct {
	next     replica.Source
	signer   note.Signer
	verifier note.Verifier
}

func (f *rootForger) Next(ctx context.Context, st ledgerclient.FollowState) (*ledgerclient.FollowBatch, error) {
	b, err := f.next.Next(ctx, st)
	if err != nil || b == nil {
		return b, err
	}
	for i, e := range b.Entries {
		if !notarize.IsMapRoot(e.Leaf) {
			continue
		}
		mr, err := notarize.ParseMapRoot(e.Leaf, f.verifier)
		if err != nil {
			return nil, err
		}
		mr.Root[0] ^= 1
		if b.Entries[i].Leaf, err = mr.Sign(f.signer); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// TestMapAuditChecksRoots: a replica with a MapAudit recomputes the map
// from a real ledger's entries and finds every root the ledger committed
// right (the same roots, recomputed from the log); a ledger whose committed
// root is wrong (forged here with the ledger's key after the Follower's
// proofs, as the ledger itself could sign it) is caught: the sync fails
// with a *WrongMapRootError holding the signed entry, lookups fail closed,
// and the evidence survives a reopen.
func TestMapAuditChecksRoots(t *testing.T) {
	srv := ledgertest.Start(t, ledgertest.WithConfig(func(c *ledger.Config) { c.MapCommitInterval = 50 * time.Millisecond }))
	lc, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: srv.URL, Home: t.TempDir(), VerifierKey: srv.VerifierKey})
	if err != nil {
		t.Fatal(err)
	}
	sv := newSigner(t)
	d := notarize.DigestOf([]byte("audited"))
	at := time.Now().UTC().Add(-time.Hour)
	var last uint64
	for i, st := range []notarize.Status{notarize.StatusTrusted, notarize.StatusUntrusted, notarize.StatusTrusted} {
		res, err := lc.Submit(t.Context(), entry(t, sv, d, st, at.Add(time.Duration(i)*time.Minute)))
		if err != nil {
			t.Fatal(err)
		}
		last = res.Index
		time.Sleep(120 * time.Millisecond) // a root between statements, some of the time
	}
	// Wait for a root after the last statement (the log grows past it).
	deadline := time.Now().Add(20 * time.Second)
	for {
		cp, err := lc.Latest(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if cp.Size > last+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the ledger committed no map root")
		}
		time.Sleep(50 * time.Millisecond)
	}

	open := func(dir string, src replica.Source) (*replica.Replica, *replica.MapAudit) {
		a, err := replica.OpenMapAudit(filepath.Join(dir, "vindex.db"), srv.VerifierKey)
		if err != nil {
			t.Fatal(err)
		}
		r, err := replica.Open(replica.Config{Path: filepath.Join(dir, "replica.db"), Source: src, MapAudit: a})
		if err != nil {
			t.Fatal(err)
		}
		return r, a
	}

	honest, audit := open(t.TempDir(), ledgerclient.NewFollower(lc, 0))
	if _, err := honest.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if audit.RootsChecked() == 0 || audit.Err() != nil {
		t.Fatalf("honest ledger: %d roots checked, %v", audit.RootsChecked(), audit.Err())
	}
	if recs, err := honest.Records(t.Context(), d); err != nil || len(recs) != 3 {
		t.Fatalf("honest records: %v %d", err, len(recs))
	}
	honest.Close()
	audit.Close()

	signer, err := note.NewSigner(srv.SignerKey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(srv.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	lying, audit := open(dir, &rootForger{next: ledgerclient.NewFollower(lc, 0), signer: signer, verifier: v})
	_, err = lying.Sync(t.Context())
	var wrong *replica.WrongMapRootError
	if !errors.As(err, &wrong) || !errors.Is(err, replica.ErrWrongMapRoot) {
		t.Fatalf("wrong root: sync %v", err)
	}
	if mr, err := notarize.ParseMapRoot(wrong.Entry, v); err != nil || mr.Root != wrong.Got || mr.Root == wrong.Want {
		t.Fatalf("evidence is not the ledger-signed wrong root: %v %+v", err, wrong)
	}
	if _, err := lying.Records(t.Context(), d); !errors.Is(err, replica.ErrWrongMapRoot) {
		t.Fatalf("lookups after a wrong root: %v, want fail closed", err)
	}
	lying.Close()
	audit.Close()
	a, err := replica.OpenMapAudit(filepath.Join(dir, "vindex.db"), srv.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if !errors.Is(a.Err(), replica.ErrWrongMapRoot) || a.Evidence().Index != wrong.Index {
		t.Fatalf("evidence after reopen: %v", a.Err())
	}
}
