package ledgerclient_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// Red team 9: attacks on the anchored lookups (issue 11, Config.MaxIndexLag,
// AwaitIndexed). Each test fails with "BYPASS:" when the attack succeeds.

// rt9CurrentAnswer asks the ledger at base directly for keyID's current
// statement about d (no tail) and decodes it.
func rt9CurrentAnswer(t *testing.T, base string, d notarize.Digest, keyID string) *api.LookupResponse {
	t.Helper()
	resp, err := http.Get(base + api.PathDigests + string(d) + api.PathCurrentSuffix + "?" + api.QueryKeyID + "=" + keyID)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("current answer: %d %s", resp.StatusCode, b)
	}
	return decodeAnswer(t, b)
}

// rt9CheckpointSize reads the size line of a checkpoint note.
func rt9CheckpointSize(cp string) (uint64, error) {
	lines := strings.SplitN(cp, "\n", 3)
	if len(lines) < 3 {
		return 0, errors.New("short checkpoint")
	}
	return strconv.ParseUint(lines[1], 10, 64)
}

// rt9Prover recomputes inclusion proofs from the ledger's public tiles, as
// any front can.
type rt9Prover struct{ f *client.HTTPFetcher }

func newRT9Prover(t *testing.T, base string) *rt9Prover {
	u, err := url.Parse(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	f, err := client.NewHTTPFetcher(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &rt9Prover{f: f}
}

// proofs returns the inclusion proofs of idx under a checkpoint of size n.
func (p *rt9Prover) proofs(ctx context.Context, n uint64, idx ...uint64) ([][][]byte, error) {
	pb, err := client.NewProofBuilder(ctx, n, p.f.ReadTile)
	if err != nil {
		return nil, err
	}
	out := make([][][]byte, len(idx))
	for i, x := range idx {
		if out[i], err = pb.InclusionProof(ctx, x); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// replayOldRoot returns a rewrite for an inlineFront that answers every
// current lookup of d with the map proof old (captured while it was the
// ledger's newest root, before the untrust) and the entry trust as the
// current statement, both with inclusion proofs recomputed under the
// answer's own (newest) checkpoint, and no tail: a well-formed answer
// anchored at an older root that does not cover the untrust.
func replayOldRoot(t *testing.T, p *rt9Prover, d notarize.Digest, old *api.MapProof, trust api.LookupEntry) func(*http.Request, *api.LookupResponse) {
	return func(r *http.Request, lr *api.LookupResponse) {
		if lr.Digest != string(d) || !strings.HasSuffix(r.URL.Path, api.PathCurrentSuffix) {
			return
		}
		n, err := rt9CheckpointSize(lr.Checkpoint)
		if err != nil {
			t.Error(err)
			return
		}
		ps, err := p.proofs(r.Context(), n, trust.Index, *old.RootIndex)
		if err != nil {
			t.Error(err)
			return
		}
		m := *old
		m.RootInclusionProof, m.Tail = ps[1], nil
		lr.Map = &m
		lr.Entries = []api.LookupEntry{{Index: trust.Index, Entry: trust.Entry, InclusionProof: ps[0]}}
	}
}

// rt9Fix is a real ledger committing a map root every 200 ms: alice
// trusted d (before root0, whose current answer before0 was captured) and
// untrusted it after; a root covering the untrust has been committed.
type rt9Fix struct {
	srv       *ledgertest.Server
	alice     signature.SignerVerifier
	ka        string
	d         notarize.Digest
	trust, un uint64
	before0   *api.LookupResponse
	root0     *notarize.MapRoot
	prover    *rt9Prover
}

func newRT9Fix(t *testing.T, name string) *rt9Fix {
	t.Helper()
	srv := ledgertest.Start(t, ledgertest.WithConfig(func(c *ledger.Config) { c.MapCommitInterval = 200 * time.Millisecond }))
	fx := &rt9Fix{srv: srv, alice: notarizetest.NewSigner(t), d: digest(name), prover: newRT9Prover(t, srv.URL)}
	fx.ka = notarizetest.KeyID(t, fx.alice)
	direct := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	fx.trust = submit(t, direct, notarizetest.Entry(t, fx.alice, fx.d, notarize.StatusTrusted, t0)).Index
	waitMapRoot(t, srv.URL, fx.d, fx.ka, fx.trust+1)
	fx.before0 = rt9CurrentAnswer(t, srv.URL, fx.d, fx.ka)
	if fx.before0.Map == nil || fx.before0.Map.RootIndex == nil || len(fx.before0.Entries) != 1 {
		t.Fatalf("the answer before the untrust: %+v", fx.before0)
	}
	v, err := note.NewVerifier(srv.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	if fx.root0, err = notarize.ParseMapRoot(fx.before0.Map.RootEntry, v); err != nil || fx.root0.Time.IsZero() {
		t.Fatalf("root before the untrust: %+v %v", fx.root0, err)
	}
	fx.un = submit(t, direct, notarizetest.Entry(t, fx.alice, fx.d, notarize.StatusUntrusted, t0.Add(time.Minute))).Index
	waitMapRoot(t, srv.URL, fx.d, fx.ka, fx.un+1)
	return fx
}

// replay is a front answering current lookups of d with root0's map
// proof and alice's trust, re-proven under the newest checkpoint.
func (fx *rt9Fix) replay(t *testing.T) *inlineFront {
	front := newInlineFront(t, fx.srv.URL)
	front.set(replayOldRoot(t, fx.prover, fx.d, fx.before0.Map, fx.before0.Entries[0]))
	return front
}

// client is a fresh client of url taking roots at most lag old.
func (fx *rt9Fix) client(t *testing.T, url string, lag time.Duration) *ledgerclient.Client {
	c, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: url, Home: t.TempDir(), VerifierKey: fx.srv.VerifierKey, MaxIndexLag: lag})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRedteam9ReplayedRootPastLag: a front replaying a genuine older root
// (inclusion re-proven under the newest checkpoint, so no rollback) to hide
// the untrust after it is believed only while the root is within the
// client's lag: once the root is older, the client reads the tail after it
// and the answer is ErrIncomplete; a client taking no recent roots always
// reads it.
func TestRedteam9ReplayedRootPastLag(t *testing.T) {
	fx := newRT9Fix(t, "redteam9-replay-past-lag")
	front := fx.replay(t)
	for time.Since(fx.root0.Time) <= 1500*time.Millisecond {
		time.Sleep(50 * time.Millisecond)
	}
	for name, lag := range map[string]time.Duration{"root older than the lag": time.Second, "strict": 0} {
		res, err := fx.client(t, front.URL, lag).Current(t.Context(), fx.d, fx.ka)
		if err == nil {
			t.Errorf("BYPASS: %s: the replayed root %v old hid the untrust at %d: %+v", name, time.Since(fx.root0.Time), fx.un, res)
		} else if !errors.Is(err, ledgerclient.ErrIncomplete) {
			t.Errorf("%s: %v, want ErrIncomplete", name, err)
		}
	}
}

// TestRedteam9ForgedRootRefused: a front cannot make an old or foreign root
// look recent: a genuine root entry re-dated to now (its signature no
// longer checks, nor its inclusion), a root of a fork signed by the same
// ledger key and dated now (not in the checkpoint the client verified), or
// a statement entry named as the root, all fail the lookup of an anchored
// client (lag: an hour) instead of anchoring it.
func TestRedteam9ForgedRootRefused(t *testing.T) {
	fx := newRT9Fix(t, "redteam9-forged-root")
	// A fork: the same identity, another history, its own fresh roots.
	fork := ledgertest.Start(t, ledgertest.WithSignerKey(fx.srv.SignerKey), ledgertest.WithOrigin(fx.srv.Origin),
		ledgertest.WithConfig(func(c *ledger.Config) { c.MapCommitInterval = 200 * time.Millisecond }))
	fc := newClient(t, fork.URL, t.TempDir(), fork.VerifierKey)
	ftrust := submit(t, fc, notarizetest.Entry(t, fx.alice, fx.d, notarize.StatusTrusted, t0)).Index
	waitMapRoot(t, fork.URL, fx.d, fx.ka, ftrust+1)
	forkAnswer := rt9CurrentAnswer(t, fork.URL, fx.d, fx.ka)

	redated := strings.Split(string(fx.before0.Map.RootEntry), "\n")
	for i, l := range redated {
		if l == strconv.FormatInt(fx.root0.Time.Unix(), 10) {
			// Another second than the root's own, always: a root made in
			// this second, "re-dated" to it, would be the genuine one.
			redated[i] = strconv.FormatInt(max(time.Now().Unix(), fx.root0.Time.Unix()+1), 10)
		}
	}
	for name, forge := range map[string]func(n uint64, m *api.MapProof, lr *api.LookupResponse) error{
		"root re-dated to now": func(n uint64, m *api.MapProof, _ *api.LookupResponse) error {
			m.RootEntry = []byte(strings.Join(redated, "\n"))
			return nil
		},
		"a fork's root, same key, dated now": func(_ uint64, m *api.MapProof, _ *api.LookupResponse) error {
			*m = *forkAnswer.Map
			m.Tail = nil
			return nil
		},
		"a statement entry as the root": func(n uint64, m *api.MapProof, lr *api.LookupResponse) error {
			ps, err := fx.prover.proofs(context.Background(), n, fx.trust)
			if err != nil {
				return err
			}
			idx := fx.trust
			m.RootIndex, m.RootEntry, m.RootInclusionProof = &idx, lr.Entries[0].Entry, ps[0]
			return nil
		},
	} {
		front := newInlineFront(t, fx.srv.URL)
		replay := replayOldRoot(t, fx.prover, fx.d, fx.before0.Map, fx.before0.Entries[0])
		front.set(func(r *http.Request, lr *api.LookupResponse) {
			replay(r, lr)
			if lr.Map == nil || lr.Digest != string(fx.d) {
				return
			}
			n, _ := rt9CheckpointSize(lr.Checkpoint)
			if err := forge(n, lr.Map, lr); err != nil {
				t.Error(err)
			}
		})
		res, err := fx.client(t, front.URL, time.Hour).Current(t.Context(), fx.d, fx.ka)
		if err == nil {
			t.Errorf("BYPASS: %s: the untrust at %d hidden: %+v", name, fx.un, res)
		} else if !errors.Is(err, ledgerclient.ErrIncomplete) && !errors.Is(err, ledgerclient.ErrBadProof) {
			t.Errorf("%s: %v, want ErrIncomplete or ErrBadProof", name, err)
		}
	}
}

// TestRedteam9AwaitIndexedNotFooledByReplay: a front that keeps answering
// AwaitIndexed's lookups with the root before the entry never makes it
// report the entry indexed: an anchored client (the plugin's) waits until
// its context ends (ErrNotIndexed), a strict one fails on the first answer.
func TestRedteam9AwaitIndexedNotFooledByReplay(t *testing.T) {
	fx := newRT9Fix(t, "redteam9-await-replay")
	front := fx.replay(t)
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	if done, err := fx.client(t, front.URL, time.Hour).AwaitIndexed(ctx, fx.d, fx.ka, fx.un, 0); !errors.Is(err, ledgerclient.ErrNotIndexed) {
		t.Errorf("anchored: AwaitIndexed %+v %v, want ErrNotIndexed (BYPASS if nil)", done, err)
	}
	if done, err := fx.client(t, front.URL, 0).AwaitIndexed(t.Context(), fx.d, fx.ka, fx.un, 0); err == nil {
		t.Errorf("BYPASS: strict: AwaitIndexed returned %+v through a replaying front", done)
	}
}

// TestRedteam9AnchoredPageInjection: an anchored paginated lookup takes the
// records after the root as the ledger gives them, but each is still
// checked: a page repeating the untrust, carrying another key's statement
// about d (a key not asked for), or a statement about another digest, is
// ErrBadProof, not folded in.
func TestRedteam9AnchoredPageInjection(t *testing.T) {
	fx := newRT9Fix(t, "redteam9-pages")
	direct := newClient(t, fx.srv.URL, t.TempDir(), fx.srv.VerifierKey)
	bob := notarizetest.NewSigner(t)
	bobs := submit(t, direct, notarizetest.Entry(t, bob, fx.d, notarize.StatusTrusted, t0.Add(2*time.Minute))).Index
	other := digest("redteam9-pages-other")
	elsewhere := submit(t, direct, notarizetest.Entry(t, fx.alice, other, notarize.StatusTrusted, t0.Add(2*time.Minute))).Index
	pageOf := func(d notarize.Digest, keyID string) *api.LookupResponse {
		resp, err := http.Get(fx.srv.URL + api.PathDigests + string(d) + "?" + api.QueryKeyID + "=" + keyID)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return decodeAnswer(t, b)
	}
	var bobEntry, otherEntry api.LookupEntry
	for _, e := range pageOf(fx.d, notarizetest.KeyID(t, bob)).Entries {
		if e.Index == bobs {
			bobEntry = e
		}
	}
	for _, e := range pageOf(other, fx.ka).Entries {
		if e.Index == elsewhere {
			otherEntry = e
		}
	}
	if bobEntry.Entry == nil || otherEntry.Entry == nil {
		t.Fatal("entries to inject not found")
	}
	// Each injected entry is re-proven under the answer's checkpoint, and
	// the map proof is root0's: anchored, the untrust after it as given.
	for name, inject := range map[string]func(lr *api.LookupResponse, n uint64){
		"untrust repeated": func(lr *api.LookupResponse, _ uint64) {
			lr.Entries = append(lr.Entries, lr.Entries[len(lr.Entries)-1])
		},
		"another key's statement": func(lr *api.LookupResponse, n uint64) {
			ps, _ := fx.prover.proofs(context.Background(), n, bobEntry.Index)
			lr.Entries = append(lr.Entries, api.LookupEntry{Index: bobEntry.Index, Entry: bobEntry.Entry, InclusionProof: ps[0]})
		},
		"a statement about another digest": func(lr *api.LookupResponse, n uint64) {
			ps, _ := fx.prover.proofs(context.Background(), n, otherEntry.Index)
			lr.Entries = append(lr.Entries, api.LookupEntry{Index: otherEntry.Index, Entry: otherEntry.Entry, InclusionProof: ps[0]})
		},
	} {
		front := newInlineFront(t, fx.srv.URL)
		front.set(func(r *http.Request, lr *api.LookupResponse) {
			if lr.Digest != string(fx.d) || strings.HasSuffix(r.URL.Path, api.PathCurrentSuffix) || lr.Map == nil {
				return
			}
			n, err := rt9CheckpointSize(lr.Checkpoint)
			if err != nil {
				t.Error(err)
				return
			}
			ps, err := fx.prover.proofs(r.Context(), n, *fx.before0.Map.RootIndex)
			if err != nil {
				t.Error(err)
				return
			}
			m := *fx.before0.Map
			m.RootInclusionProof, m.Tail = ps[0], nil
			lr.Map = &m
			inject(lr, n)
		})
		res, err := fx.client(t, front.URL, time.Hour).Lookup(t.Context(), fx.d, fx.ka)
		if err == nil {
			t.Errorf("BYPASS: %s: taken into an anchored lookup: %+v", name, res.Records)
		} else if !errors.Is(err, ledgerclient.ErrBadProof) {
			t.Errorf("%s: %v, want ErrBadProof", name, err)
		}
	}
	// The same front without an injection is taken (anchored at root0):
	// the injections above are what it refused.
	front := newInlineFront(t, fx.srv.URL)
	front.set(func(r *http.Request, lr *api.LookupResponse) {
		if lr.Digest == string(fx.d) && lr.Map != nil {
			n, _ := rt9CheckpointSize(lr.Checkpoint)
			ps, err := fx.prover.proofs(r.Context(), n, *fx.before0.Map.RootIndex)
			if err != nil {
				t.Error(err)
				return
			}
			m := *fx.before0.Map
			m.RootInclusionProof, m.Tail = ps[0], nil
			lr.Map = &m
		}
	})
	res, err := fx.client(t, front.URL, time.Hour).Lookup(t.Context(), fx.d, fx.ka)
	if err != nil || len(res.Records) != 2 || res.Complete.AnchoredAt.IsZero() {
		t.Fatalf("the uninjected answer: %v %+v", err, res)
	}
}

// TestRedteam9AwaitIndexedOtherDigestsRoot: AwaitIndexed cannot be made to
// report an entry indexed with another lookup's map proof: a front that
// answers the lookup of d with the (genuine, newest, covering) map proof of
// another digest's answer fails each lookup, so AwaitIndexed returns an
// error, never success.
func TestRedteam9AwaitIndexedOtherDigestsRoot(t *testing.T) {
	fx := newRT9Fix(t, "redteam9-await-other")
	direct := newClient(t, fx.srv.URL, t.TempDir(), fx.srv.VerifierKey)
	other := digest("redteam9-await-other-2")
	o := submit(t, direct, notarizetest.Entry(t, fx.alice, other, notarize.StatusTrusted, t0)).Index
	waitMapRoot(t, fx.srv.URL, other, fx.ka, o+1)
	for _, lag := range []time.Duration{0, time.Hour} {
		front := newInlineFront(t, fx.srv.URL)
		front.set(func(r *http.Request, lr *api.LookupResponse) {
			if lr.Digest != string(fx.d) {
				return
			}
			oa := rt9CurrentAnswer(t, fx.srv.URL, other, fx.ka)
			lr.Checkpoint, lr.Map = oa.Checkpoint, oa.Map
			n, _ := rt9CheckpointSize(lr.Checkpoint)
			// The entries re-proven under the other answer's checkpoint.
			for i, e := range lr.Entries {
				ps, err := fx.prover.proofs(r.Context(), n, e.Index)
				if err != nil {
					t.Error(err)
					return
				}
				lr.Entries[i].InclusionProof = ps[0]
			}
		})
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		done, err := fx.client(t, front.URL, lag).AwaitIndexed(ctx, fx.d, fx.ka, fx.un, 0)
		cancel()
		if err == nil {
			t.Errorf("BYPASS: lag %v: AwaitIndexed returned %+v with another digest's map proof", lag, done)
		} else if !errors.Is(err, ledgerclient.ErrIncomplete) {
			t.Errorf("lag %v: %v, want ErrIncomplete", lag, err)
		}
	}
}
