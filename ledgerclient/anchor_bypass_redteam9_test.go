// Red team 9's F1 and F2 (ledgerclient): a root from before a revocation
// replayed after AwaitIndexed returned, and a stripped map ending the wait
// at once. Both were bypasses until AwaitIndexed also waits for its hold
// (the receipt plus the verifiers' lag).
package ledgerclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// TestRedteam9RootReplayAfterAwaitIndexed attacks the claim "after untrust
// returns, no front can hide it": alice untrusts d and AwaitIndexed
// returns (a root covers the untrust). A verifier that starts after that,
// through a front, is answered with the root before the untrust (genuine,
// in the log, its time within the verifier's lag) and alice's trust. The
// client checks that the root is in the checkpoint and recent, never that
// it is the newest: if it takes the answer, the untrust is hidden after
// AwaitIndexed returned.
func TestRedteam9RootReplayAfterAwaitIndexed(t *testing.T) {
	t.Parallel()
	srv := ledgertest.Start(t, ledgertest.WithConfig(func(c *ledger.Config) { c.MapCommitInterval = 200 * time.Millisecond }))
	direct := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	alice := notarizetest.NewSigner(t)
	ka := notarizetest.KeyID(t, alice)
	d := digest("redteam9-replay")
	trust := submit(t, direct, notarizetest.Entry(t, alice, d, notarize.StatusTrusted, t0)).Index
	waitMapRoot(t, srv.URL, d, ka, trust+1)
	a0 := rt9CurrentAnswer(t, srv.URL, d, ka)
	if a0.Map == nil || a0.Map.RootIndex == nil || len(a0.Entries) != 1 || a0.Entries[0].Index != trust {
		t.Fatalf("the answer before the untrust: %+v", a0)
	}
	un := submit(t, direct, notarizetest.Entry(t, alice, d, notarize.StatusUntrusted, t0.Add(time.Minute))).Index
	done, err := direct.AwaitIndexed(t.Context(), d, ka, un, ledgerclient.DefaultMaxIndexLag+time.Second)
	if err != nil || done.MapSize <= un {
		t.Fatalf("await: %+v %v", done, err)
	}
	returned := time.Now()

	front := newInlineFront(t, srv.URL)
	front.set(replayOldRoot(t, newRT9Prover(t, srv.URL), d, a0.Map, a0.Entries[0]))
	// The front's answer is otherwise well-formed: a client reading the
	// tail after the replayed root catches it.
	strict, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: front.URL, Home: t.TempDir(), VerifierKey: srv.VerifierKey})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := strict.Current(t.Context(), d, ka); !errors.Is(err, ledgerclient.ErrIncomplete) {
		t.Fatalf("strict client through the replaying front: %v, want ErrIncomplete", err)
	}
	v, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: front.URL, Home: t.TempDir(), VerifierKey: srv.VerifierKey, MaxIndexLag: ledgerclient.DefaultMaxIndexLag})
	if err != nil {
		t.Fatal(err)
	}
	res, err := v.Current(t.Context(), d, ka)
	if err == nil && len(res.Records) == 1 && res.Records[0].Index == trust {
		t.Fatalf("BYPASS: %v after AwaitIndexed returned (a root covering the untrust at %d), a front replaying the older root (covers %d entries, anchored at %v) hid the untrust from a client with the default lag: TRUSTED",
			time.Since(returned).Round(time.Millisecond), un, res.Complete.MapSize, res.Complete.AnchoredAt)
	}
	if !errors.Is(err, ledgerclient.ErrIncomplete) {
		t.Fatalf("anchored client through the replaying front: %v %+v, want ErrIncomplete", err, res)
	}
}

// TestRedteam9AwaitIndexedStrippedMap: AwaitIndexed through a front that
// strips the map proof from current answers (or answers 404 for the
// current endpoint) while no root covers the untrust. MapSize 0 is taken
// as "a ledger without a map": if AwaitIndexed returns nil, untrust reports
// "indexed": true while the untrust is still after the newest root.
func TestRedteam9AwaitIndexedStrippedMap(t *testing.T) {
	t.Parallel()
	slow := ledgertest.Start(t) // a root every 1,024 entries or hour
	c := newClient(t, slow.URL, t.TempDir(), slow.VerifierKey)
	alice := notarizetest.NewSigner(t)
	ka := notarizetest.KeyID(t, alice)
	d := digest("redteam9-strip")
	submit(t, c, notarizetest.Entry(t, alice, d, notarize.StatusTrusted, t0))
	fx := &inlineFix{srv: slow, filler: notarizetest.NewSigner(t)}
	fx.fill(t, 1030, "rt9-strip")
	waitMapRoot(t, slow.URL, d, ka, 1024)
	un := submit(t, c, notarizetest.Entry(t, alice, d, notarize.StatusUntrusted, t0.Add(time.Minute))).Index

	for name, rw := range map[string]func(*http.Request, *api.LookupResponse){
		"map proof stripped": func(_ *http.Request, lr *api.LookupResponse) { lr.Map = nil },
		"root index stripped": func(_ *http.Request, lr *api.LookupResponse) {
			if lr.Map != nil {
				lr.Map = &api.MapProof{Keys: lr.Map.Keys}
			}
		},
	} {
		front := newInlineFront(t, slow.URL)
		front.set(rw)
		fc := newClient(t, front.URL, t.TempDir(), slow.VerifierKey)
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		done, err := fc.AwaitIndexed(ctx, d, ka, un, ledgerclient.DefaultMaxIndexLag+time.Second)
		cancel()
		if err == nil {
			t.Errorf("BYPASS: %s: AwaitIndexed returned %+v (\"indexed\") for entry %d while the ledger's newest root covers 1,024..%d entries", name, done, un, un)
		}
	}
	// The current endpoint answered 404 NOT_FOUND: the client falls back
	// to pages and proves with the whole log (no map).
	front := http404Current(t, slow.URL)
	fc := newClient(t, front, t.TempDir(), slow.VerifierKey)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if done, err := fc.AwaitIndexed(ctx, d, ka, un, ledgerclient.DefaultMaxIndexLag+time.Second); err == nil {
		t.Errorf("BYPASS: current endpoint hidden (404): AwaitIndexed returned %+v (\"indexed\") for entry %d while no root covers it", done, un)
	}
}

// http404Current is a front before the ledger at upstream that answers
// every current lookup 404 NOT_FOUND, as a ledger without the endpoint
// does, and passes everything else through.
func http404Current(t *testing.T, upstream string) string {
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, api.PathDigests) && strings.HasSuffix(r.URL.Path, api.PathCurrentSuffix) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(api.ErrorResponse{Code: api.CodeNotFound, Message: "not found"})
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	return front.URL
}

// TestRedteam9KeyRevokeReplayedRoot: F1 for `key revoke`: the key's owner
// revokes it and AwaitIndexed returns (a root covers the revocation); the
// thief's statement after it, through a front answering the revocation
// lookup with the map root before the revocation (re-proven under the
// newest checkpoint, no records), counts for an anchored verifier.
func TestRedteam9KeyRevokeReplayedRoot(t *testing.T) {
	t.Parallel()
	srv := ledgertest.Start(t, ledgertest.WithConfig(func(c *ledger.Config) { c.MapCommitInterval = 200 * time.Millisecond }))
	direct := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	k := notarizetest.NewSigner(t)
	kid := notarizetest.KeyID(t, k)
	kd, _ := notarize.KeyRevocationDigest(kid)
	first := submit(t, direct, notarizetest.Entry(t, k, digest("rt9-approved"), notarize.StatusTrusted, t0)).Index
	waitMapRoot(t, srv.URL, kd, kid, first+1)
	resp, err := http.Get(srv.URL + api.PathDigests + string(kd) + "?" + api.QueryKeyID + "=" + kid)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	before := decodeAnswer(t, b)
	if before.Map == nil || before.Map.RootIndex == nil || len(before.Entries) != 0 {
		t.Fatalf("revocation lookup before the revocation: %+v", before)
	}
	rev := submit(t, direct, notarizetest.KeyRevocation(t, k, kid, t0.Add(time.Minute))).Index
	if done, err := direct.AwaitIndexed(t.Context(), kd, kid, rev, ledgerclient.DefaultMaxIndexLag+time.Second); err != nil || done.MapSize <= rev {
		t.Fatalf("await: %+v %v", done, err)
	}
	stolen := digest("rt9-stolen")
	submit(t, direct, notarizetest.Entry(t, k, stolen, notarize.StatusTrusted, t0.Add(-24*time.Hour))) // the thief
	p := newRT9Prover(t, srv.URL)
	front := newInlineFront(t, srv.URL)
	front.set(func(r *http.Request, lr *api.LookupResponse) {
		if lr.Digest != string(kd) || strings.HasSuffix(r.URL.Path, api.PathCurrentSuffix) {
			return
		}
		n, err := rt9CheckpointSize(lr.Checkpoint)
		if err != nil {
			t.Error(err)
			return
		}
		ps, err := p.proofs(r.Context(), n, *before.Map.RootIndex)
		if err != nil {
			t.Error(err)
			return
		}
		m := *before.Map
		m.RootInclusionProof, m.Tail = ps[0], nil
		lr.Map, lr.Entries, lr.Next = &m, nil, nil
	})
	v, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: front.URL, Home: t.TempDir(), VerifierKey: srv.VerifierKey, MaxIndexLag: ledgerclient.DefaultMaxIndexLag})
	if err != nil {
		t.Fatal(err)
	}
	res, revs, err := v.CurrentWithRevocations(t.Context(), stolen, []string{kid}, nil)
	if err == nil {
		if dec := notarize.DecideWithRevocations(res.Records, stolen, []string{kid}, revs); dec.Verdict == notarize.Trusted {
			t.Fatalf("BYPASS: after key revoke's AwaitIndexed returned (revocation at %d), a front replaying the root before it hid the revocation: the thief's statement is TRUSTED (revocations %v)", rev, revs)
		}
	}
}
