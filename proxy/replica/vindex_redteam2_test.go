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

// rootRewriter is a Source that hands out the real Follower's batches with
// map-root entries rewritten by rewrite (given the root's log index, the
// roots seen before it, and the root itself) and re-signed with the
// ledger's own key: what a lying ledger can publish. rewrite returns false
// to leave a root alone.
type rootRewriter struct {
	next     replica.Source
	signer   note.Signer
	verifier note.Verifier
	rewrite  func(index uint64, before []notarize.MapRoot, mr *notarize.MapRoot) bool
	seen     []notarize.MapRoot
}

func (f *rootRewriter) Next(ctx context.Context, st ledgerclient.FollowState) (*ledgerclient.FollowBatch, error) {
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
		orig := *mr
		if f.rewrite(e.Index, f.seen, mr) {
			if b.Entries[i].Leaf, err = mr.Sign(f.signer); err != nil {
				return nil, err
			}
		}
		f.seen = append(f.seen, orig)
	}
	return b, nil
}

// TestRedteam2MapAuditRootLies: a ledger that signs, with its own key, a
// map root that is out of place — one covering entries after itself, one
// beyond any checkpoint, one covering fewer entries than a root before it,
// a second root at the same size with another hash — is caught by the
// replica's MapAudit: the sync fails with a *WrongMapRootError holding the
// signed entry and lookups fail closed. A root signed by another key is
// not evidence (no client believes it either) and changes nothing.
func TestRedteam2MapAuditRootLies(t *testing.T) {
	srv := ledgertest.Start(t, ledgertest.WithConfig(func(c *ledger.Config) { c.MapCommitInterval = 50 * time.Millisecond }))
	lc, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: srv.URL, Home: t.TempDir(), VerifierKey: srv.VerifierKey})
	if err != nil {
		t.Fatal(err)
	}
	sv := newSigner(t)
	d := notarize.DigestOf([]byte("redteam2 audited"))
	at := time.Now().UTC().Add(-time.Hour)
	signer, err := note.NewSigner(srv.SignerKey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(srv.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	// Statements with roots between them: wait for each to be covered by
	// a root, so the log holds at least three roots.
	roots := 0
	for i := range 3 {
		res, err := lc.Submit(t.Context(), entry(t, sv, d, []notarize.Status{notarize.StatusTrusted, notarize.StatusUntrusted, notarize.StatusTrusted}[i], at.Add(time.Duration(i)*time.Minute)))
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for {
			cp, err := lc.Latest(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if cp.Size > res.Index+1 {
				roots++
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the ledger committed no map root")
			}
			time.Sleep(30 * time.Millisecond)
		}
	}
	if roots < 3 {
		t.Fatalf("%d roots", roots)
	}

	run := func(t *testing.T, rewrite func(uint64, []notarize.MapRoot, *notarize.MapRoot) bool) (error, *replica.Replica) {
		t.Helper()
		dir := t.TempDir()
		a, err := replica.OpenMapAudit(filepath.Join(dir, "vindex.db"), srv.VerifierKey)
		if err != nil {
			t.Fatal(err)
		}
		src := &rootRewriter{next: ledgerclient.NewFollower(lc, 0), signer: signer, verifier: v, rewrite: rewrite}
		r, err := replica.Open(replica.Config{Path: filepath.Join(dir, "replica.db"), Source: src, MapAudit: a})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		_, err = r.Sync(t.Context())
		return err, r
	}
	caught := func(t *testing.T, name string, rewrite func(uint64, []notarize.MapRoot, *notarize.MapRoot) bool) {
		t.Helper()
		err, r := run(t, rewrite)
		var wrong *replica.WrongMapRootError
		if !errors.As(err, &wrong) {
			t.Fatalf("BYPASS: %s: the replica's sync accepted it: %v", name, err)
		}
		if mr, perr := notarize.ParseMapRoot(wrong.Entry, v); perr != nil || mr.Root != wrong.Got {
			t.Fatalf("%s: the evidence is not the ledger-signed root: %v", name, perr)
		}
		if _, err := r.Records(t.Context(), d); !errors.Is(err, replica.ErrWrongMapRoot) {
			t.Fatalf("BYPASS: %s: lookups after the wrong root: %v, want fail closed", name, err)
		}
	}

	t.Run("honest", func(t *testing.T) {
		err, r := run(t, func(uint64, []notarize.MapRoot, *notarize.MapRoot) bool { return false })
		if err != nil {
			t.Fatal(err)
		}
		if recs, err := r.Records(t.Context(), d); err != nil || len(recs) != 3 {
			t.Fatalf("honest records: %v %d", err, len(recs))
		}
	})
	t.Run("covers entries after itself", func(t *testing.T) {
		caught(t, "a root covering itself and the entry after it", func(idx uint64, _ []notarize.MapRoot, mr *notarize.MapRoot) bool {
			mr.Size = idx + 1
			return true
		})
	})
	t.Run("covers beyond any checkpoint", func(t *testing.T) {
		caught(t, "a root of 2^62 entries", func(_ uint64, _ []notarize.MapRoot, mr *notarize.MapRoot) bool {
			mr.Size = 1 << 62
			return true
		})
	})
	t.Run("fewer entries than a root before it", func(t *testing.T) {
		caught(t, "a root going back", func(_ uint64, before []notarize.MapRoot, mr *notarize.MapRoot) bool {
			if len(before) == 0 || before[len(before)-1].Size == 0 {
				return false
			}
			mr.Size = before[len(before)-1].Size - 1
			return true
		})
	})
	t.Run("two roots at one size", func(t *testing.T) {
		// The second root claims the first one's size with the root the
		// map has now (after more statements): a different root for the
		// same entries.
		caught(t, "a second, different root at the first one's size", func(_ uint64, before []notarize.MapRoot, mr *notarize.MapRoot) bool {
			if len(before) == 0 || before[len(before)-1].Root == mr.Root {
				return false
			}
			mr.Size = before[len(before)-1].Size
			return true
		})
	})
	t.Run("empty root", func(t *testing.T) {
		caught(t, "a root claiming an empty map", func(_ uint64, _ []notarize.MapRoot, mr *notarize.MapRoot) bool {
			if mr.Size < 2 {
				return false
			}
			mr.Root = [32]byte{}
			return true
		})
	})
	t.Run("signed by another key", func(t *testing.T) {
		other, _, err := note.GenerateKey(nil, srv.Origin)
		if err != nil {
			t.Fatal(err)
		}
		os, err := note.NewSigner(other)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		a, err := replica.OpenMapAudit(filepath.Join(dir, "vindex.db"), srv.VerifierKey)
		if err != nil {
			t.Fatal(err)
		}
		src := &rootRewriter{next: ledgerclient.NewFollower(lc, 0), signer: os, verifier: v,
			rewrite: func(_ uint64, _ []notarize.MapRoot, mr *notarize.MapRoot) bool { mr.Root[0] ^= 1; return true }}
		r, err := replica.Open(replica.Config{Path: filepath.Join(dir, "replica.db"), Source: src, MapAudit: a})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := r.Sync(t.Context()); err != nil {
			t.Fatalf("roots under another key are no evidence: %v", err)
		}
		if a.RootsChecked() != 0 || a.Err() != nil {
			t.Fatalf("BYPASS: a root under another key counted as checked (%d) or as evidence (%v)", a.RootsChecked(), a.Err())
		}
	})
}
