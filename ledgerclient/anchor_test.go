package ledgerclient_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// anchoredClient is a fresh client through fx's front that takes map roots
// at most lag old as proof of completeness (0: reads every tail).
func anchoredClient(t *testing.T, fx *inlineFix, lag time.Duration) *ledgerclient.Client {
	t.Helper()
	c, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: fx.front.URL, Home: t.TempDir(), VerifierKey: fx.srv.VerifierKey, MaxIndexLag: lag})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// noTail drops an answer's inline tail, as a ledger asked tail=anchor
// does when its root is recent (and as a front may do to any answer).
func noTail(_ *http.Request, lr *api.LookupResponse) {
	if lr.Map != nil {
		lr.Map.Tail = nil
	}
}

// TestAnchoredLookupReadsNoTail: with a recent map root and no inline
// tail, a client that takes recent roots proves a current lookup and a
// paginated lookup by key complete without reading the log after the
// root (no bundle, no tile), and still counts the untrust the ledger gives
// from the tail; it says so (Completeness.AnchoredAt). A client that takes
// none reads the tail for the same answers.
func TestAnchoredLookupReadsNoTail(t *testing.T) {
	t.Parallel()
	fx := newInlineFix(t)
	fx.front.set(noTail)
	c := anchoredClient(t, fx, time.Hour)
	res, err := c.Current(t.Context(), fx.d, fx.ka)
	if err != nil || len(res.Records) != 1 || res.Records[0].Index != fx.untrust {
		t.Fatalf("current lookup: %v %+v, want the untrust at %d", err, res, fx.untrust)
	}
	if res.Complete.AnchoredAt.IsZero() || res.Complete.MapSize < 1024 || res.Complete.MapSize > fx.untrust {
		t.Fatalf("completeness %+v: want anchored at a root covering 1,024..%d entries", res.Complete, fx.untrust)
	}
	if since := time.Since(res.Complete.AnchoredAt); since < 0 || since > time.Minute {
		t.Fatalf("anchored at %v, %v ago: want the root's time, just now", res.Complete.AnchoredAt, since)
	}
	all, err := c.Lookup(t.Context(), fx.d, fx.ka)
	if err != nil || len(all.Records) != 2 || all.Complete.AnchoredAt.IsZero() {
		t.Fatalf("paginated lookup: %v %+v", err, all)
	}
	if n, m := fx.front.bundles.Load(), fx.front.tiles.Load(); n+m != 0 {
		t.Fatalf("anchored lookups read %d bundles and %d tiles", n, m)
	}

	fx.front.set(noTail)
	strict := anchoredClient(t, fx, 0)
	res, err = strict.Current(t.Context(), fx.d, fx.ka)
	if err != nil || len(res.Records) != 1 || res.Records[0].Index != fx.untrust || !res.Complete.AnchoredAt.IsZero() {
		t.Fatalf("strict current lookup: %v %+v", err, res)
	}
	if fx.front.bundles.Load() == 0 {
		t.Fatal("a client taking no recent roots did not read the tail")
	}
}

// TestAnchoredBoundedByLag: a front that hides the untrust in the tail
// (the answer gives alice's trust from before the root, and no tail) hides
// it only from a client whose bound the root is within: the documented
// window. Once the root is older than the client's bound, the client reads
// the tail itself and the hidden untrust is ErrIncomplete; so it is for a
// root dated ahead of the client's clock by more than the bound.
func TestAnchoredBoundedByLag(t *testing.T) {
	t.Parallel()
	fx := newInlineFix(t)
	hide := func(r *http.Request, lr *api.LookupResponse) {
		noTail(r, lr)
		if lr.Digest == string(fx.d) && len(lr.Entries) == 1 && lr.Entries[0].Index == fx.untrust {
			lr.Entries[0] = fx.trustEntry
		}
	}
	fx.front.set(hide)
	res, err := anchoredClient(t, fx, time.Hour).Current(t.Context(), fx.d, fx.ka)
	if err != nil || len(res.Records) != 1 || res.Records[0].Index != fx.trust {
		t.Fatalf("within the bound: %v %+v (the window the bound documents)", err, res)
	}
	for name, lag := range map[string]time.Duration{"root older than the bound": time.Nanosecond, "strict": 0} {
		fx.front.set(hide)
		_, err := anchoredClient(t, fx, lag).Current(t.Context(), fx.d, fx.ka)
		if !errors.Is(err, ledgerclient.ErrIncomplete) {
			t.Fatalf("%s: %v, want ErrIncomplete", name, err)
		}
	}
}

// TestAnchoredKeepsTheInlineTail: an answer that carries its tail is proven
// with it, even by a client that would take the root: the front hiding the
// untrust but passing the tail (which it had the ledger carry) is caught.
func TestAnchoredKeepsTheInlineTail(t *testing.T) {
	fx := newInlineFix(t)
	fx.front.set(func(_ *http.Request, lr *api.LookupResponse) {
		if lr.Map != nil && lr.Map.Tail == nil {
			t.Error("the ledger sent no inline tail when asked tail=inline")
		}
		if lr.Digest == string(fx.d) && len(lr.Entries) == 1 && lr.Entries[0].Index == fx.untrust {
			lr.Entries[0] = fx.trustEntry
		}
	})
	fx.front.inline.Store(true)
	if _, err := anchoredClient(t, fx, time.Hour).Current(t.Context(), fx.d, fx.ka); !errors.Is(err, ledgerclient.ErrIncomplete) {
		t.Fatalf("anchored client, tail carried: %v, want ErrIncomplete", err)
	}
}

// TestAnchoredChecksBeforeTheRoot: anchored, the part of the answer the map
// covers is still proven: a front that leaves out the map's current
// statement (d2: alice's trust before the root, nothing after), or gives a
// statement from after the root that is older than it, or drops a page
// entry from before the root, is caught.
func TestAnchoredChecksBeforeTheRoot(t *testing.T) {
	fx := newInlineFix(t)
	// alice's stale statement about d2, dated before her trust but logged
	// after the root: never her current statement.
	alice := fx.alice
	stale := submit(t, newClient(t, fx.srv.URL, t.TempDir(), fx.srv.VerifierKey),
		notarizetest.Entry(t, alice, fx.d2, notarize.StatusUntrusted, t0.Add(-time.Hour))).Index
	var staleEntry api.LookupEntry
	fx.front.set(func(r *http.Request, lr *api.LookupResponse) {
		noTail(r, lr)
		for _, e := range lr.Entries {
			if e.Index == stale {
				staleEntry = e
			}
		}
	})
	page, err := anchoredClient(t, fx, time.Hour).Lookup(t.Context(), fx.d2, fx.ka)
	if err != nil || len(page.Records) != 2 || staleEntry.Entry == nil {
		t.Fatalf("d2's history: %v %+v, want the trust and the stale untrust at %d", err, page, stale)
	}

	for name, rw := range map[string]func(*http.Request, *api.LookupResponse){
		"current statement left out": func(r *http.Request, lr *api.LookupResponse) {
			noTail(r, lr)
			if lr.Digest == string(fx.d2) {
				lr.Entries = nil
			}
		},
		"older statement from after the root": func(r *http.Request, lr *api.LookupResponse) {
			noTail(r, lr)
			if lr.Digest == string(fx.d2) && len(lr.Entries) == 1 {
				lr.Entries[0] = staleEntry
			}
		},
	} {
		fx.front.set(rw)
		if _, err := anchoredClient(t, fx, time.Hour).Current(t.Context(), fx.d2, fx.ka); !errors.Is(err, ledgerclient.ErrIncomplete) {
			t.Fatalf("%s: %v, want ErrIncomplete", name, err)
		}
	}
	fx.front.set(func(r *http.Request, lr *api.LookupResponse) {
		noTail(r, lr)
		if lr.Digest == string(fx.d) {
			var kept []api.LookupEntry
			for _, e := range lr.Entries {
				if e.Index != fx.trust {
					kept = append(kept, e)
				}
			}
			lr.Entries = kept
		}
	})
	if _, err := anchoredClient(t, fx, time.Hour).Lookup(t.Context(), fx.d, fx.ka); !errors.Is(err, ledgerclient.ErrIncomplete) {
		t.Fatalf("a page entry before the root left out: %v, want ErrIncomplete", err)
	}
}

// TestAwaitIndexed: AwaitIndexed returns once a map root covers the entry
// and the lag has passed from that root's time, and, when the lag has not
// passed or the ledger commits no root in time, ErrNotIndexed when its
// context ends.
func TestAwaitIndexed(t *testing.T) {
	t.Parallel()
	srv := ledgertest.Start(t, ledgertest.WithConfig(func(c *ledger.Config) { c.MapCommitInterval = 200 * time.Millisecond }))
	c := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	alice := notarizetest.NewSigner(t)
	ka := notarizetest.KeyID(t, alice)
	d := digest("await-indexed")
	submit(t, c, notarizetest.Entry(t, alice, d, notarize.StatusTrusted, t0))
	waitMapRoot(t, srv.URL, d, ka, 1)
	un := submit(t, c, notarizetest.Entry(t, alice, d, notarize.StatusUntrusted, t0.Add(time.Minute))).Index
	done, err := c.AwaitIndexed(t.Context(), d, ka, un, time.Second)
	if err != nil || done.MapSize <= un || done.RootTime.IsZero() {
		t.Fatalf("await: %+v %v, want a timed root covering %d", done, err, un)
	}
	if time.Now().Before(done.RootTime.Add(time.Second)) {
		t.Fatal("AwaitIndexed returned before the covering root's time plus the lag")
	}
	// A root covers the entry, but an older root is still recent for the
	// lag: the wait goes on, and ends with ErrNotIndexed when ctx ends
	// first.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.AwaitIndexed(ctx, d, ka, un, time.Hour); !errors.Is(err, ledgerclient.ErrNotIndexed) {
		t.Fatalf("lag not passed: %v, want ErrNotIndexed", err)
	}

	slow := ledgertest.Start(t) // a root every 1,024 entries or hour
	c = newClient(t, slow.URL, t.TempDir(), slow.VerifierKey)
	submit(t, c, notarizetest.Entry(t, alice, d, notarize.StatusTrusted, t0))
	fx := &inlineFix{srv: slow, filler: notarizetest.NewSigner(t)}
	fx.fill(t, 1030, "await")
	waitMapRoot(t, slow.URL, d, ka, 1024)
	un = submit(t, c, notarizetest.Entry(t, alice, d, notarize.StatusUntrusted, t0.Add(time.Minute))).Index
	ctx, cancel = context.WithTimeout(t.Context(), 600*time.Millisecond)
	defer cancel()
	if _, err := c.AwaitIndexed(ctx, d, ka, un, 0); !errors.Is(err, ledgerclient.ErrNotIndexed) {
		t.Fatalf("no root in time: %v, want ErrNotIndexed", err)
	}
}
