package proxy_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
)

// TestMultiProxyMySQL runs one ledger as two instances on one MariaDB
// database and two proxies, each with its own replica following a
// different instance: with statements written through both instances, the
// proxies make identical decisions. A restarted proxy then decides from its
// own replica while the ledger is out of its reach, within max staleness,
// and when the ledger is back it fetches only what it lacks.
func TestMultiProxyMySQL(t *testing.T) {
	began := time.Now()
	a, b := mysqlInstances(t)
	front := newLedgerFront(t, b.URL)
	clk := &testClock{now: time.Now()}
	const maxStaleness = time.Minute
	p1 := newEnv(t, withLedger(a))
	p2 := newEnv(t, withLedger(b), withPeer(p1), withFollow(front.URL), withMaxStaleness(maxStaleness), withClock(clk.Now))

	images := []struct {
		repo string
		want string // "" = pulls; else what the DENIED message says after the digest
	}{
		{"multi/trusted", ""},
		{"multi/untrusted", " is UNTRUSTED by release ("},
		{"multi/revoked", " is UNTRUSTED by release ("},
		{"multi/retrusted", ""},
		{"multi/unsigned", " is UNKNOWN: no statement from release"},
		{"multi/ops", " is UNKNOWN: no statement from release"},
	}
	refs := make([]string, len(images))
	d := map[string]notarize.Digest{}
	for i, im := range images {
		d[im.repo] = digestOf(t, p1.push(im.repo, "v1"))
		refs[i] = "local/" + im.repo + ":v1"
	}
	// p1 writes through instance a, p2 through instance b.
	var size uint64
	signed := func(r *ledgerclient.SubmitResult) *ledgerclient.SubmitResult {
		size = max(size, r.Index+1)
		return r
	}
	signed(p1.sign(p1.release, d["multi/trusted"], notarize.StatusTrusted))
	signed(p2.sign(p2.release, d["multi/untrusted"], notarize.StatusUntrusted))
	// The same signer changes its mind through the other instance: the later statement decides.
	for _, x := range []struct {
		repo         string
		first, later *env
		was, becomes notarize.Status
	}{
		{"multi/revoked", p1, p2, notarize.StatusTrusted, notarize.StatusUntrusted},
		{"multi/retrusted", p2, p1, notarize.StatusUntrusted, notarize.StatusTrusted},
	} {
		first := signed(x.first.sign(x.first.release, d[x.repo], x.was))
		if later := signed(x.later.sign(x.later.release, d[x.repo], x.becomes)); later.Index <= first.Index {
			t.Fatalf("%s: acknowledged by one instance at %d, then by the other at %d", x.repo, first.Index, later.Index)
		}
	}
	signed(p2.sign(p2.ops, d["multi/ops"], notarize.StatusTrusted)) // a signer the rule does not require

	p1.syncTo(size)
	p2.syncTo(size)
	ca, err := p1.lc.Latest(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cb, err := p2.lc.Latest(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ca.Size != size || cb.Size != size || !bytes.Equal(ca.Hash, cb.Hash) {
		t.Fatalf("instances disagree: a at %d %x, b at %d %x, want size %d", ca.Size, ca.Hash, cb.Size, cb.Hash, size)
	}

	want := p1.pullAll(refs)
	for i, im := range images {
		o := want[i]
		if im.want == "" {
			if o.Status != http.StatusOK {
				t.Errorf("pull %s through proxy 1: %+v, want it served", refs[i], o)
			}
		} else if o.Status != http.StatusForbidden || o.Code != string(transport.DeniedErrorCode) || !strings.Contains(o.Message, string(d[im.repo])+im.want) {
			t.Errorf("pull %s through proxy 1: %+v, want DENIED with %q", refs[i], o, im.want)
		}
	}
	wantDec := p1.decisionsSince(0)
	if len(wantDec) != len(images) {
		t.Fatalf("proxy 1 logged %d decisions for %d pulls: %v", len(wantDec), len(images), wantDec)
	}
	assertSame(t, "proxy 2", want, wantDec, p2, refs)

	// Restart proxy 2 with its ledger instance out of reach: it must decide
	// from its own replica, not from the ledger.
	before := p2.replica.Status()
	front.down.Store(true)
	p2.restart()
	if st := p2.replica.Status(); st.Size != before.Size || st.Records != before.Records || st.Size != size {
		t.Fatalf("reopened replica: %+v, before the restart %+v", st, before)
	}
	if _, err := p2.replica.Sync(t.Context()); err == nil || front.refused.Load() == 0 {
		t.Fatalf("sync with the ledger out of reach: %v after %d refused requests", err, front.refused.Load())
	}
	clk.Add(maxStaleness - time.Second)
	assertSame(t, "restarted proxy 2", want, wantDec, p2, refs)

	// Past max staleness it fails closed, even for the image it trusts.
	clk.Add(2 * time.Second)
	// (Asked directly: go-containerregistry retries a 503 for seconds.)
	code, _, body := p2.do(http.MethodGet, manifestPath("local/multi/trusted", "v1"), nil)
	if c, msg := ociErr(t, body); code != http.StatusServiceUnavailable || c != "UNAVAILABLE" || !strings.Contains(msg, "stale") {
		t.Fatalf("%s from a stale replica: %d %s %s, want 503 UNAVAILABLE stale", refs[0], code, c, msg)
	}

	// A revocation through instance a while proxy 2 was cut off; once the
	// ledger is back, proxy 2 fetches that entry only.
	signed(p1.sign(p1.release, d["multi/trusted"], notarize.StatusUntrusted))
	front.down.Store(false)
	if added := p2.syncTo(size); added != 1 {
		t.Fatalf("restarted replica fetched %d entries to reach size %d, want 1", added, size)
	}
	p1.syncTo(size)
	mark := len(p1.decisions())
	want = p1.pullAll(refs)
	if o := want[0]; o.Status != http.StatusForbidden || !strings.Contains(o.Message, string(d["multi/trusted"])+" is UNTRUSTED by release (") {
		t.Fatalf("pull %s after its revocation: %+v", refs[0], o)
	}
	assertSame(t, "proxy 2 after the revocation", want, p1.decisionsSince(mark), p2, refs)
	t.Logf("two proxies on two instances of a MySQL ledger, one restarted: %v", time.Since(began).Round(time.Millisecond))
}

// mysqlInstances starts two instances of one ledger on a MariaDB database
// of the test's own, or skips the test loudly when MariaDB cannot be had.
func mysqlInstances(t *testing.T) (a, b *ledgertest.Server) {
	t.Helper()
	servers := ledgertest.StartInstances(t, 2, "proxytest.example/mysql")
	a, b = servers[0], servers[1]
	return a, b
}

// ledgerFront is a load balancer in front of one ledger instance whose
// backend can be cut off: while down, it drops every request unanswered.
type ledgerFront struct {
	URL     string
	down    atomic.Bool
	refused atomic.Int64
}

func newLedgerFront(t *testing.T, target string) *ledgerFront {
	f := &ledgerFront{}
	rp := httputil.NewSingleHostReverseProxy(mustURL(t, target))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.down.Load() {
			f.refused.Add(1)
			panic(http.ErrAbortHandler) // closes the connection, no answer
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// syncTo syncs the replica until it holds, at a checkpoint of that size,
// exactly n entries, and returns how many it added.
func (e *env) syncTo(n uint64) int {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	added := 0
	for {
		k, err := e.replica.Sync(e.t.Context())
		if err != nil {
			e.t.Fatal(err)
		}
		added += k
		st := e.replica.Status()
		switch {
		case st.Size > n:
			e.t.Fatalf("replica at size %d, want %d", st.Size, n)
		case st.Size == n && st.CheckpointSize == n:
			return added
		case time.Now().After(deadline):
			e.t.Fatalf("replica at size %d (checkpoint %d) after 10 s, want %d", st.Size, st.CheckpointSize, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// outcome is what a client sees of a pull.
type outcome struct {
	Status        int
	Code, Message string
}

// pullAll pulls every ref through the proxy with go-containerregistry.
func (e *env) pullAll(refs []string) []outcome {
	e.t.Helper()
	out := make([]outcome, len(refs))
	for i, ref := range refs {
		err := e.pull(ref)
		if err == nil {
			out[i] = outcome{Status: http.StatusOK}
			continue
		}
		var te *transport.Error
		if !errors.As(err, &te) || len(te.Errors) == 0 {
			e.t.Fatalf("pull %s: %v", ref, err)
		}
		out[i] = outcome{Status: te.StatusCode, Code: string(te.Errors[0].Code), Message: te.Errors[0].Message}
	}
	return out
}

// decisionsSince returns the decision lines after the first n, without
// their times.
func (e *env) decisionsSince(n int) []map[string]any {
	ds := e.decisions()[n:]
	for _, d := range ds {
		delete(d, "time")
		delete(d, "decision_time")
	}
	return ds
}

// assertSame pulls refs through e and checks that it answers as want and
// logs the decisions wantDec.
func assertSame(t *testing.T, who string, want []outcome, wantDec []map[string]any, e *env, refs []string) {
	t.Helper()
	mark := len(e.decisions())
	got := e.pullAll(refs)
	for i := range refs {
		if got[i] != want[i] {
			t.Errorf("%s: pull %s = %+v, proxy 1: %+v", who, refs[i], got[i], want[i])
		}
	}
	if dec := e.decisionsSince(mark); !reflect.DeepEqual(dec, wantDec) {
		t.Errorf("%s decided otherwise:\n%s\nproxy 1:\n%s", who, fmt.Sprint(dec), fmt.Sprint(wantDec))
	}
}
