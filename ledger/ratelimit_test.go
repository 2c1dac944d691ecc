package ledger

import (
	"bytes"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// fakeClock is a settable clock for limiters.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock           { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }
func isRateLimited(err error, limit string) bool {
	rl, ok := errors.AsType[*RateLimitError](err)
	return ok && errors.Is(err, ErrRateLimited) && rl.Limit == limit
}

func TestLimiterTokenBucket(t *testing.T) {
	clock := newFakeClock()
	l := newLimiter("key", 2, 3, 100, clock.now) // 2 per second, burst 3
	for i := range 3 {
		if err := l.allow("a"); err != nil {
			t.Fatalf("burst %d: %v", i, err)
		}
	}
	err := l.allow("a")
	rl, ok := errors.AsType[*RateLimitError](err)
	if !ok || rl.RetryAfter != 500*time.Millisecond || rl.retryAfterSeconds() != "1" {
		t.Fatalf("over the burst: %v, want retry in 500ms (Retry-After 1)", err)
	}
	if err := l.allow("b"); err != nil {
		t.Fatalf("another name is limited too: %v", err)
	}
	clock.add(500 * time.Millisecond)
	if err := l.allow("a"); err != nil {
		t.Fatalf("after refilling one token: %v", err)
	}
	if err := l.allow("a"); err == nil {
		t.Fatal("a second token out of one refilled")
	}
	clock.add(time.Hour)
	for i := range 3 { // refilled to the burst, not beyond
		if err := l.allow("a"); err != nil {
			t.Fatalf("after an hour, token %d: %v", i, err)
		}
	}
	if err := l.allow("a"); err == nil {
		t.Fatal("more than the burst after an hour idle")
	}
	if newLimiter("off", 0, 1, 1, clock.now) != nil || newLimiter("off", -1, 1, 1, clock.now).allow("x") != nil {
		t.Fatal("a limiter of rate <= 0 limits")
	}
	// A slow rate: Retry-After in whole seconds, rounded up.
	slow := newLimiter("key-digest", 10.0/60, 1, 100, clock.now)
	_ = slow.allow("k")
	if rl, ok := errors.AsType[*RateLimitError](slow.allow("k")); !ok || rl.retryAfterSeconds() != "6" {
		t.Fatalf("10 per minute: %v, want Retry-After 6", rl)
	}
}

func TestLimiterMemoryIsBounded(t *testing.T) {
	clock := newFakeClock()
	l := newLimiter("client", 1, 1, 1000, clock.now)
	for i := range 100_000 {
		_ = l.allow(strconv.Itoa(i)) // each name spends its token: no bucket is idle
		if n := l.size(); n > 1000 {
			t.Fatalf("%d buckets after %d names, at most 1000", n, i+1)
		}
	}
	// Idle (refilled) buckets go first: a busy name keeps its bucket.
	clock.add(time.Hour)
	_ = l.allow("busy")
	for i := range 2000 {
		_ = l.allow("idle" + strconv.Itoa(i))
		clock.add(time.Second) // every bucket but the newest refills
		if err := l.allow("busy"); err != nil && i > 0 {
			t.Fatalf("busy name refused at %d: %v", i, err)
		}
	}
}

func TestClientName(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, tc := range []struct {
		name, remote, xff string
		trusted           []netip.Prefix
		want              string
	}{
		{"ipv4", "192.0.2.7:4000", "", nil, "192.0.2.7"},
		{"ipv6 by /64", "[2001:db8:1:2:3:4:5:6]:4000", "", nil, "2001:db8:1:2::/64"},
		{"ipv4-mapped", "[::ffff:192.0.2.7]:1", "", nil, "192.0.2.7"},
		{"X-Forwarded-For ignored by default", "192.0.2.7:4000", "198.51.100.1", nil, "192.0.2.7"},
		{"X-Forwarded-For from an untrusted peer ignored", "192.0.2.7:4000", "198.51.100.1", trusted, "192.0.2.7"},
		{"trusted proxy", "10.1.1.1:4000", "198.51.100.1", trusted, "198.51.100.1"},
		{"spoofed hops before the last untrusted one", "10.1.1.1:4000", "203.0.113.9, 198.51.100.1, 10.2.2.2", trusted, "198.51.100.1"},
		{"malformed hop", "10.1.1.1:4000", "junk", trusted, "10.1.1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			r.RemoteAddr = tc.remote
			if tc.xff != "" {
				r.Header.Set("X-Forwarded-For", tc.xff)
			}
			if got := clientName(r, tc.trusted); got != tc.want {
				t.Fatalf("client %q, want %q", got, tc.want)
			}
		})
	}
}

// submitStatus posts e (with an X-Forwarded-For header when xff is set)
// and returns the status, Retry-After and API error code.
func (tl *testLedger) submitStatus(t testing.TB, body []byte, xff string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, tl.url+api.PathEntries, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var er api.ErrorResponse
	if resp.StatusCode >= 400 {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		er = decodeError(t, b)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), er.Code
}

func TestRateLimitPerKey(t *testing.T) {
	tl := startLedger(t, Config{RateLimits: RateLimits{KeyPerSecond: 0.001, KeyBurst: 2, ClientPerSecond: -1, KeyDigestPerMinute: -1}})
	a, b := newTestSigner(t), newTestSigner(t)
	first := a.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())
	tl.submit(t, first, http.StatusCreated)
	tl.submit(t, a.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
	status, retry, code := tl.submitStatus(t, mustMarshal(t, a.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())), "")
	if status != http.StatusTooManyRequests || code != api.CodeRateLimited {
		t.Fatalf("third statement of a key over its burst: %d %s, want 429 %s", status, code, api.CodeRateLimited)
	}
	if n, err := strconv.Atoi(retry); err != nil || n < 1 {
		t.Fatalf("Retry-After %q, want whole seconds >= 1", retry)
	}
	if _, _, m := do(t, http.MethodGet, tl.url+"/metrics", nil); !bytes.Contains(m, []byte(`notarize_ledger_rate_limited_total{limit="key"} 1`)) {
		t.Errorf("refusal not counted in /metrics")
	}
	// Another key is not affected, and a replay costs the limited key nothing.
	tl.submit(t, b.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()), http.StatusCreated)
	if rec := tl.submit(t, first, http.StatusOK); !rec.Duplicate {
		t.Fatal("replay of a limited key's statement is not answered as a duplicate")
	}
}

// TestRateLimitNotSpentByOthers: a key's budget is charged only for its
// own new, verified statements. Forged entries naming the victim's key and
// replays of its logged statements must not use it up.
func TestRateLimitNotSpentByOthers(t *testing.T) {
	tl := startLedger(t, Config{RateLimits: RateLimits{KeyPerSecond: 0.001, KeyBurst: 2, ClientPerSecond: -1, KeyDigestPerMinute: 0.001}})
	victim := newTestSigner(t)
	logged := victim.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())
	tl.submit(t, logged, http.StatusCreated)
	for range 10 {
		forged := victim.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())
		forged.Envelope.Signatures[0].Sig = logged.Envelope.Signatures[0].Sig // not its signature
		if status, _, _ := tl.submitStatus(t, mustMarshal(t, forged), ""); status != http.StatusBadRequest {
			t.Fatalf("forged entry: %d, want 400", status)
		}
		if rec := tl.submit(t, logged, http.StatusOK); !rec.Duplicate {
			t.Fatal("replay not a duplicate")
		}
	}
	tl.submit(t, victim.sign(t, randomDigest(t), notarize.StatusUntrusted, time.Now()), http.StatusCreated)
}

func TestRateLimitPerKeyAndDigest(t *testing.T) {
	tl := startLedger(t, Config{RateLimits: RateLimits{KeyPerSecond: -1, ClientPerSecond: -1, KeyDigestPerMinute: 2}})
	k := newTestSigner(t)
	d := randomDigest(t)
	now := time.Now()
	for i := range 2 {
		tl.submit(t, k.signAt(t, d, notarize.StatusTrusted, now.Add(time.Duration(i))), http.StatusCreated)
	}
	status, retry, code := tl.submitStatus(t, mustMarshal(t, k.signAt(t, d, notarize.StatusTrusted, now.Add(time.Second))), "")
	if status != http.StatusTooManyRequests || code != api.CodeRateLimited || retry == "" {
		t.Fatalf("third statement about one digest in a minute: %d %s Retry-After %q, want 429", status, code, retry)
	}
	// A statement that changes the key's current status (newer, another
	// status) is never refused by the cap; an older one is.
	status, _, _ = tl.submitStatus(t, mustMarshal(t, k.signAt(t, d, notarize.StatusUntrusted, now.Add(-time.Second))), "")
	if status != http.StatusTooManyRequests {
		t.Fatalf("an older statement of another status over the cap: %d, want 429", status)
	}
	tl.submit(t, k.signAt(t, d, notarize.StatusUntrusted, now.Add(time.Second)), http.StatusCreated)
	tl.submit(t, k.sign(t, randomDigest(t), notarize.StatusTrusted, now), http.StatusCreated)  // another digest
	tl.submit(t, newTestSigner(t).sign(t, d, notarize.StatusTrusted, now), http.StatusCreated) // another key
}

func TestRateLimitPerClient(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		// whether two X-Forwarded-For values are two clients
		separate bool
	}{
		{"X-Forwarded-For ignored", nil, false},
		{"behind a trusted proxy", trusted, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tl := startLedger(t, Config{TrustedProxies: tc.trusted,
				RateLimits: RateLimits{ClientPerSecond: 0.001, ClientBurst: 3, KeyPerSecond: -1, KeyDigestPerMinute: -1}})
			// The limit is charged before the body is read: junk counts.
			for i := range 3 {
				if status, _, _ := tl.submitStatus(t, []byte("junk"), "198.51.100.1"); status != http.StatusBadRequest {
					t.Fatalf("request %d: %d, want 400", i, status)
				}
			}
			s := newTestSigner(t)
			status, retry, code := tl.submitStatus(t, mustMarshal(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())), "198.51.100.1")
			if status != http.StatusTooManyRequests || code != api.CodeRateLimited || retry == "" {
				t.Fatalf("fourth request of a client: %d %s Retry-After %q, want 429", status, code, retry)
			}
			status, _, _ = tl.submitStatus(t, mustMarshal(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())), "198.51.100.2")
			if want := map[bool]int{true: http.StatusCreated, false: http.StatusTooManyRequests}[tc.separate]; status != want {
				t.Fatalf("another X-Forwarded-For: %d, want %d", status, want)
			}
		})
	}
}

func TestRateLimitDefaults(t *testing.T) {
	r := RateLimits{}.withDefaults()
	want := RateLimits{KeyPerSecond: 20, KeyBurst: 40, ClientPerSecond: 50, ClientBurst: 100, KeyDigestPerMinute: 10, Tracked: 1 << 16}
	if r != want {
		t.Fatalf("defaults %+v, want %+v", r, want)
	}
	w := newWriteLimits(Config{}.withDefaults().RateLimits, nil, time.Now)
	if w.client == nil || w.key == nil || w.keyDigest == nil {
		t.Fatal("a zero Config has a limit off")
	}
	if off := newWriteLimits(RateLimits{Off: true}, nil, time.Now); off.client != nil || off.key != nil || off.keyDigest != nil {
		t.Fatal("Off leaves a limit on")
	}
	for _, bad := range []RateLimits{{KeyBurst: -1}, {Tracked: -1}, {KeyPerSecond: math.NaN()}} {
		if err := (&Config{RateLimits: bad}).Validate(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// TestDefaultLimitsBoundAFlood is the attack of issue 8 under the default
// limits: a throwaway key posts 110 large statements about the owner's
// digest at once. The (key, digest) cap lets DefaultKeyDigestPerMinute of
// them in (plus what refills while the test runs), the rest are 429, and
// the owner still revokes and reads its own statement.
func TestDefaultLimitsBoundAFlood(t *testing.T) {
	tl := startLedger(t, Config{RateLimits: RateLimits{Tracked: DefaultRateLimitTracked}}) // defaults, not Off
	owner, stranger := newTestSigner(t), newTestSigner(t)
	d := randomDigest(t)
	now := time.Now()
	tl.submit(t, owner.sign(t, d, notarize.StatusTrusted, now.Add(-time.Hour)), http.StatusCreated)

	start := time.Now()
	statuses := make([]int, 110)
	var wg sync.WaitGroup
	for i := range statuses {
		body := mustMarshal(t, stranger.signLarge(t, d, notarize.StatusTrusted, now.Add(time.Duration(i)*time.Millisecond)))
		wg.Go(func() { statuses[i], _, _ = post(t.Context(), http.DefaultClient, tl.url, body) })
	}
	wg.Wait()
	counts := map[int]int{}
	for _, s := range statuses {
		counts[s]++
	}
	refilled := int(time.Since(start)/(time.Minute/DefaultKeyDigestPerMinute)) + 1
	if c := counts[http.StatusCreated]; c < DefaultKeyDigestPerMinute || c > DefaultKeyDigestPerMinute+refilled ||
		c+counts[http.StatusTooManyRequests] != len(statuses) {
		t.Fatalf("answers %v: want %d created (+%d refilled) and the rest 429", counts, DefaultKeyDigestPerMinute, refilled)
	}
	revoked := tl.submit(t, owner.sign(t, d, notarize.StatusUntrusted, now), http.StatusCreated)
	resp, _ := tl.getLookup(t, lookupURL(tl.url, d, api.PathCurrentSuffix, keyQuery(owner.keyID)))
	if got := indices(resp); len(got) != 1 || got[0] != revoked.Index {
		t.Fatalf("owner's current statement %v, want [%d]", got, revoked.Index)
	}
}

// TestLimiterFloodCannotResetABucket: a writer who spent its key's budget
// cannot win a fresh one by flooding the table with new names (other keys
// of its own, other clients): before, a full table dropped arbitrary
// buckets, the spent one among them.
func TestLimiterFloodCannotResetABucket(t *testing.T) {
	clock := newFakeClock()
	l := newLimiter("key", 1, 1, 100, clock.now)
	if err := l.allow("spent"); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		_ = l.allow("flood" + strconv.Itoa(i))
	}
	if err := l.allow("spent"); err == nil {
		t.Fatal("a flood of new names reset a spent bucket")
	}
}
