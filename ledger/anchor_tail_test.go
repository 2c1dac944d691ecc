package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/transparency-dev/tessera"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// testClock is a ledger clock (Config.clock) that a test moves: the real
// time until set, then the time set; while legacy is on, no time at all,
// so that roots are signed without their time line, as they were before
// it existed.
type testClock struct {
	fixed  atomic.Pointer[time.Time]
	legacy atomic.Bool
}

func (c *testClock) now() time.Time {
	if c.legacy.Load() {
		return time.Time{}
	}
	if p := c.fixed.Load(); p != nil {
		return *p
	}
	return time.Now()
}

func (c *testClock) set(t time.Time) { c.fixed.Store(&t) }

// storedRoot returns the stored map root, parsed as lookups see it; nil
// while there is none.
func storedRoot(t testing.TB, tl *testLedger) *parsedRoot {
	t.Helper()
	st, err := tl.vmap.m.MapState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Root == nil {
		return nil
	}
	pr, err := tl.vmap.parsed(st.Root)
	if err != nil {
		t.Fatal(err)
	}
	return pr
}

// waitRootCovering waits for a stored map root covering at least n
// entries and returns it.
func waitRootCovering(t testing.TB, tl *testLedger, n uint64) *parsedRoot {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if pr := storedRoot(t, tl); pr != nil && pr.size >= n {
			return pr
		}
		if time.Now().After(deadline) {
			t.Fatalf("no map root covering %d entries", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// anchorLedger returns a ledger on clock whose newest map root covers
// alice's trust of d, followed by a tail of n raw entries and her untrust
// of d (no root after it), then alice, d and that root. The ledger was
// restarted after the root was committed: it read the stored root at
// start, as a ledger does from a data directory written before.
func anchorLedger(t *testing.T, clock *testClock, n int) (*testLedger, *testSigner, notarize.Digest, *parsedRoot) {
	t.Helper()
	tl := startLedger(t, Config{MapCommitInterval: 20 * time.Millisecond, clock: clock.now})
	alice, d := newTestSigner(t), randomDigest(t)
	t0 := time.Now().Add(-time.Hour).UTC()
	tl.submit(t, alice.sign(t, d, notarize.StatusTrusted, t0), http.StatusCreated)
	appendRaw(t, tl, rawEntries(300, "before"))
	rec := tl.submit(t, alice.sign(t, randomDigest(t), notarize.StatusTrusted, t0), http.StatusCreated)
	waitRootCovering(t, tl, rec.Index+1)
	waitRootIndexed(t, tl)
	tl.close(t)
	tl.cfg.MapCommitInterval, tl.cfg.MapCommitEntries = time.Hour, 1<<20 // no root from here on
	tl.open(t)
	root := storedRoot(t, tl)
	appendRaw(t, tl, rawEntries(n, "after"))
	tl.submit(t, alice.sign(t, d, notarize.StatusUntrusted, t0.Add(time.Minute)), http.StatusCreated)
	return tl, alice, d, root
}

// rawGet GETs u from tl and returns the body and its content type,
// failing t unless it is a 200.
func rawGet(t *testing.T, u string) ([]byte, string) {
	t.Helper()
	status, h, b := do(t, http.MethodGet, u, nil)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, status, b)
	}
	return b, h.Get("Content-Type")
}

// decodeAnswer decodes a lookup answer, framed or JSON.
func decodeAnswer(t *testing.T, b []byte) *api.LookupResponse {
	t.Helper()
	if api.IsTailAnswer(b) {
		lr, err := api.UnmarshalTailAnswer(b)
		if err != nil {
			t.Fatal(err)
		}
		return lr
	}
	var lr api.LookupResponse
	if err := json.Unmarshal(b, &lr); err != nil {
		t.Fatal(err)
	}
	return &lr
}

// tailQuery is keyQuery(keyID) asking for tail (none when empty).
func tailQuery(keyID, tail string) url.Values {
	q := keyQuery(keyID)
	if tail != "" {
		q.Set(api.QueryTail, tail)
	}
	return q
}

// metricValue returns the value of the metric name with labels in tl's
// registry; NaN for a gauge reporting NaN; -1 when absent.
func metricValue(t *testing.T, tl *testLedger, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := tl.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if labelValue(m, labels[i]) != labels[i+1] {
					continue metrics
				}
			}
			switch {
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// TestAnchorRootTime: the roots the follower commits carry the time their
// size was read, within [before, after] the statement's commit (to the
// second, truncated down), and cover the statement; a ledger that
// committed the root itself never parses it for a lookup.
func TestAnchorRootTime(t *testing.T) {
	tl := startLedger(t, Config{MapCommitInterval: 20 * time.Millisecond})
	alice, d := newTestSigner(t), randomDigest(t)
	before := time.Now()
	rec := tl.submit(t, alice.sign(t, d, notarize.StatusTrusted, before), http.StatusCreated)
	root := waitRootCovering(t, tl, rec.Index+1)
	after := time.Now()
	if root.time.IsZero() {
		t.Fatalf("root entry %d carries no time: %q", root.Index, root.Entry)
	}
	if root.time.Before(before.Truncate(time.Second)) || root.time.After(after) {
		t.Fatalf("root time %v, want within [%v, %v]", root.time, before.Truncate(time.Second), after)
	}
	mr, err := notarize.ParseMapRoot(root.Entry, tl.id.Verifier)
	if err != nil || !mr.Time.Equal(root.time) || mr.Size != root.size {
		t.Fatalf("the signed root %+v %v, the kept one size %d time %v", mr, err, root.size, root.time)
	}
	waitRootIndexed(t, tl)
	for _, tail := range []string{"", api.TailInline, api.TailAnchor} {
		tl.getLookup(t, lookupURL(tl.url, d, api.PathCurrentSuffix, tailQuery(alice.keyID, tail)))
	}
	if n := tl.vmap.rootParses.Load(); n != 0 {
		t.Fatalf("the root this ledger committed was parsed %d times", n)
	}
}

// TestAnchorRootTimeCoversEntriesIndexedBefore: every entry indexed before
// a root's time is among the entries it covers. The clock here indexes an
// entry while it is read (as the index may between any two instructions),
// and returns a time after that: the root must cover the entry, so the
// index's size must be read after the time, not before.
func TestAnchorRootTimeCoversEntriesIndexedBefore(t *testing.T) {
	var (
		ledger atomic.Pointer[Ledger]
		armed  atomic.Bool
		slipIn atomic.Int64 // the index of the entry indexed while the clock was read
		fail   atomic.Pointer[error]
	)
	slipIn.Store(-1)
	clock := func() time.Time {
		l := ledger.Load()
		if l == nil || !armed.CompareAndSwap(true, false) {
			return time.Now()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		idx, err := l.add(ctx, tessera.NewEntry([]byte("indexed while the clock was read")))()
		if err == nil {
			err = l.store.WaitProcessed(ctx, idx.Index+1)
		}
		if err != nil {
			fail.Store(&err)
			return time.Now()
		}
		slipIn.Store(int64(idx.Index))
		return time.Now()
	}
	tl := startLedger(t, Config{MapCommitInterval: 20 * time.Millisecond, clock: clock})
	ledger.Store(tl.Ledger)
	alice := newTestSigner(t)
	rec := tl.submit(t, alice.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
	waitRootCovering(t, tl, rec.Index+1)
	waitRootIndexed(t, tl)

	armed.Store(true)
	rec = tl.submit(t, alice.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
	root := waitRootCovering(t, tl, rec.Index+1)
	if p := fail.Load(); p != nil {
		t.Fatal(*p)
	}
	i := slipIn.Load()
	if i < 0 {
		t.Fatal("the clock was not read for the root")
	}
	if uint64(i) >= root.size {
		t.Fatalf("root entry %d (time %v) covers %d entries: entry %d, indexed before that time, is not among them", root.Index, root.time, root.size, i)
	}
}

// TestAnchorFreshRootOmitsTail: asked with tail=anchor, an answer whose
// root is recent by the ledger's clock carries no tail and is plain JSON,
// and still holds every indexed statement after the root with its
// inclusion proof: alice's untrust, after the root, is her current
// statement, and the last page holds it. tail=inline still carries the
// tail, and no value or a value the ledger does not know carries none.
func TestAnchorFreshRootOmitsTail(t *testing.T) {
	clock := &testClock{}
	tl, alice, d, root := anchorLedger(t, clock, 300)
	if root.time.IsZero() {
		t.Fatal("the root carries no time")
	}
	clock.set(root.time.Add(time.Second))
	current := func(tail string) string {
		return lookupURL(tl.url, d, api.PathCurrentSuffix, tailQuery(alice.keyID, tail))
	}

	b, ct := rawGet(t, current(api.TailAnchor))
	if api.IsTailAnswer(b) || ct != api.MediaTypeJSON {
		t.Fatalf("an anchored answer is framed (%s): want plain JSON", ct)
	}
	lr := decodeAnswer(t, b)
	tl.checkLookup(t, *lr)
	if lr.Map == nil || lr.Map.RootIndex == nil || *lr.Map.RootIndex != root.Index || lr.Map.Tail != nil || len(lr.Map.Keys) != 1 {
		t.Fatalf("anchored current answer's map: %+v; want a proof against root entry %d and no tail", lr.Map, root.Index)
	}
	if len(lr.Entries) != 1 || lr.Entries[0].Index <= root.size {
		t.Fatalf("anchored current answer: %d entries (%+v); want alice's untrust, after the root's %d entries", len(lr.Entries), lr.Entries, root.size)
	}
	if v := verifiedStatus(t, lr.Entries[0].Entry); v != notarize.StatusUntrusted {
		t.Fatalf("the current statement after the root is %q, want untrusted", v)
	}

	// As clients ask it: tail=inline&anchor=1, which a ledger from before
	// the anchored check answers with the tail.
	q := tailQuery(alice.keyID, api.TailInline)
	q.Set(api.QueryAnchor, api.AnchorYes)
	if b, ct := rawGet(t, lookupURL(tl.url, d, api.PathCurrentSuffix, q)); api.IsTailAnswer(b) || ct != api.MediaTypeJSON {
		t.Fatalf("tail=inline&anchor=1 with a recent root: framed (%s), want plain JSON without the tail", ct)
	}

	page, _ := rawGet(t, lookupURL(tl.url, d, "", tailQuery(alice.keyID, api.TailAnchor)))
	pr := decodeAnswer(t, page)
	tl.checkLookup(t, *pr)
	if api.IsTailAnswer(page) || pr.Map == nil || pr.Map.Tail != nil || pr.Next != nil || len(pr.Entries) != 2 || pr.Entries[1].Index <= root.size {
		t.Fatalf("anchored page: framed %v, map %+v, %d entries; want both of alice's statements, the untrust after the root, and no tail", api.IsTailAnswer(page), pr.Map, len(pr.Entries))
	}

	inline, ct := rawGet(t, current(api.TailInline))
	if il := decodeAnswer(t, inline); !api.IsTailAnswer(inline) || ct != api.MediaTypeTailAnswer || il.Map == nil || il.Map.Tail == nil || len(il.Map.Tail.Bundles) == 0 {
		t.Fatalf("tail=inline with a recent root: framed %v (%s); want the tail", api.IsTailAnswer(inline), ct)
	}
	for _, tail := range []string{"", "bogus", "ANCHOR"} {
		b, _ := rawGet(t, current(tail))
		if lr := decodeAnswer(t, b); api.IsTailAnswer(b) || lr.Map == nil || lr.Map.Tail != nil {
			t.Fatalf("tail=%q: framed %v; want the map proof and no tail", tail, api.IsTailAnswer(b))
		}
	}
	if n := metricValue(t, tl, "notarize_ledger_lookup_tails_total", "asked", "anchor", "answer", "anchored"); n != 3 {
		t.Fatalf("anchored answers counted: %v, want 3 (current, tail=inline&anchor=1, page)", n)
	}
	if n := metricValue(t, tl, "notarize_ledger_lookup_tails_total", "asked", "inline", "answer", "inline"); n != 1 {
		t.Fatalf("inline answers counted: %v, want 1", n)
	}
	if n := tl.vmap.rootParses.Load(); n != 1 {
		t.Fatalf("the stored root was parsed %d times: want once, when the ledger started", n)
	}
}

// verifiedStatus returns the status of the logged statement entry b.
func verifiedStatus(t *testing.T, b []byte) notarize.Status {
	t.Helper()
	v, ok := mapStatement(b)
	if !ok {
		t.Fatalf("entry %q is no statement", b)
	}
	return v.Statement.Predicate.Status
}

// TestAnchorRootAgeBounds: an answer asked with tail=anchor goes without
// its tail while its root's time is at most api.AnchorMaxAge from the
// ledger's clock, either way; past it (a root that is old, or one in the
// future: a clock set back), the answer is byte for byte the tail=inline
// one. The age gauge follows the clock.
func TestAnchorRootAgeBounds(t *testing.T) {
	clock := &testClock{}
	tl, alice, d, root := anchorLedger(t, clock, 300)
	for _, c := range []struct {
		name     string
		offset   time.Duration
		anchored bool
	}{
		{"just made", 0, true},
		{"AnchorMaxAge old", api.AnchorMaxAge, true},
		{"older than AnchorMaxAge", api.AnchorMaxAge + time.Second, false},
		{"an hour old", time.Hour, false},
		{"AnchorMaxAge ahead", -api.AnchorMaxAge, true},
		{"further ahead than AnchorMaxAge", -api.AnchorMaxAge - time.Second, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock.set(root.time.Add(c.offset))
			anchor, _ := rawGet(t, lookupURL(tl.url, d, api.PathCurrentSuffix, tailQuery(alice.keyID, api.TailAnchor)))
			inline, _ := rawGet(t, lookupURL(tl.url, d, api.PathCurrentSuffix, tailQuery(alice.keyID, api.TailInline)))
			switch {
			case c.anchored && api.IsTailAnswer(anchor):
				t.Fatal("the root is recent: want no tail")
			case !c.anchored && !bytes.Equal(anchor, inline):
				t.Fatalf("the root is not recent: want the tail=inline answer (framed %v, %d bytes; inline %d bytes)", api.IsTailAnswer(anchor), len(anchor), len(inline))
			}
			if age := metricValue(t, tl, "notarize_ledger_map_root_age_seconds"); age != c.offset.Seconds() {
				t.Fatalf("root age gauge %v, want %v", age, c.offset.Seconds())
			}
		})
	}
	if n := tl.vmap.rootParses.Load(); n != 1 {
		t.Fatalf("the stored root was parsed %d times: want once, when the ledger started", n)
	}
	if lag, want := metricValue(t, tl, "notarize_ledger_map_root_lag_entries"), float64(tl.store.Processed()-root.size); lag != want || lag < 302 {
		t.Fatalf("root lag gauge %v, want %v (the tail of 300 raw entries, the untrust and the root's own entry)", lag, want)
	}
}

// TestAnchorLegacyRootCarriesTail: a root committed before roots carried a
// time (three lines), read from the data directory at start, is never
// recent: tail=anchor answers as tail=inline, and the age gauge is NaN.
func TestAnchorLegacyRootCarriesTail(t *testing.T) {
	clock := &testClock{}
	clock.legacy.Store(true)
	tl, alice, d, root := anchorLedger(t, clock, 300)
	clock.legacy.Store(false)
	if !root.time.IsZero() || strings.Count(strings.SplitN(string(root.Entry), "\n\n", 2)[0], "\n") != 3 {
		t.Fatalf("the root is not a legacy one: time %v, entry %q", root.time, root.Entry)
	}
	for _, at := range []time.Time{time.Now(), time.Unix(0, 0)} {
		clock.set(at)
		anchor, _ := rawGet(t, lookupURL(tl.url, d, api.PathCurrentSuffix, tailQuery(alice.keyID, api.TailAnchor)))
		inline, _ := rawGet(t, lookupURL(tl.url, d, api.PathCurrentSuffix, tailQuery(alice.keyID, api.TailInline)))
		if !api.IsTailAnswer(anchor) || !bytes.Equal(anchor, inline) {
			t.Fatalf("a legacy root at clock %v: framed %v; want the tail=inline answer", at, api.IsTailAnswer(anchor))
		}
	}
	if age := metricValue(t, tl, "notarize_ledger_map_root_age_seconds"); !math.IsNaN(age) {
		t.Fatalf("root age gauge %v for a root without a time, want NaN", age)
	}
	if n := metricValue(t, tl, "notarize_ledger_lookup_tails_total", "asked", "anchor", "answer", "inline"); n != 2 {
		t.Fatalf("anchor answers with the tail counted: %v, want 2", n)
	}
}

// TestAnchored: the recency bounds, inclusive, both ways; a root without a
// time is never recent.
func TestAnchored(t *testing.T) {
	at := time.Unix(1796072405, 0).UTC()
	root := &parsedRoot{time: at}
	for _, c := range []struct {
		now  time.Time
		want bool
	}{
		{at, true},
		{at.Add(api.AnchorMaxAge), true},
		{at.Add(api.AnchorMaxAge + time.Nanosecond), false},
		{at.Add(-api.AnchorMaxAge), true},
		{at.Add(-api.AnchorMaxAge - time.Nanosecond), false},
		{time.Time{}, false},
	} {
		if got := anchored(root, c.now); got != c.want {
			t.Errorf("root at %v, now %v: anchored %v, want %v", at, c.now, got, c.want)
		}
	}
	if anchored(&parsedRoot{}, at) || anchored(&parsedRoot{}, time.Time{}) || anchored(nil, at) {
		t.Error("a root without a time is recent")
	}
}

// TestAnchorRootTimeOutOfRange: a clock before 1970 or after 9999 (or
// none) signs a root without a time rather than one that does not parse.
func TestAnchorRootTimeOutOfRange(t *testing.T) {
	for _, at := range []time.Time{{}, time.Unix(-5, 0), time.Unix(0, 0), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)} {
		clock := func() time.Time { return at }
		tl := startLedger(t, Config{MapCommitInterval: 20 * time.Millisecond, clock: clock})
		rec := tl.submit(t, newTestSigner(t).sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
		if root := waitRootCovering(t, tl, rec.Index+1); !root.time.IsZero() {
			t.Fatalf("clock %v: root time %v", at, root.time)
		}
	}
}
