package ledgerclient_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// busyFront is a front before a real ledger that answers the next
// requests 503 with a Retry-After, as a ledger with a full lookup gate
// does, and forwards the rest.
type busyFront struct {
	*httptest.Server
	mu         sync.Mutex
	refuse     int    // requests still to refuse
	retryAfter string // their Retry-After
	sent       []time.Time
	methods    []string
}

func newBusyFront(t *testing.T, upstream string) *busyFront {
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	f := &busyFront{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.sent = append(f.sent, time.Now())
		f.methods = append(f.methods, r.Method)
		refuse := f.refuse > 0
		if refuse {
			f.refuse--
		}
		ra := f.retryAfter
		f.mu.Unlock()
		if !refuse {
			proxy.ServeHTTP(w, r)
			return
		}
		if ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		w.Header().Set("Content-Type", api.MediaTypeJSON)
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"code":"` + api.CodeUnavailable + `","message":"lookup: ledger unavailable: 32 lookups in progress"}`))
	}))
	t.Cleanup(f.Close)
	return f
}

// busy makes the front refuse the next n requests with retryAfter, and
// forgets the requests seen.
func (f *busyFront) busy(n int, retryAfter string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refuse, f.retryAfter, f.sent, f.methods = n, retryAfter, nil, nil
}

// seen returns the times and methods of the requests since busy.
func (f *busyFront) seen() ([]time.Time, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.sent...), append([]string(nil), f.methods...)
}

// TestReadRetriedWhenBusy: a read refused 503 (a full lookup gate) is sent
// again after the Retry-After asked for, and gets its answer: a first
// checkpoint read and a current lookup (untrust's first step) each succeed
// through two refusals. Without the retry, each failed at the first.
func TestReadRetriedWhenBusy(t *testing.T) {
	srv := ledgertest.Start(t)
	f := newBusyFront(t, srv.URL)
	s := notarizetest.NewSigner(t)
	d := digest("busy")
	direct := newClient(t, srv.URL, t.TempDir(), srv.VerifierKey)
	submit(t, direct, notarizetest.Entry(t, s, d, notarize.StatusTrusted, t0))

	f.busy(2, "0") // the first request of New (its checkpoint) is refused twice
	c := newClient(t, f.URL, t.TempDir(), srv.VerifierKey)
	for _, retryAfter := range []string{"0", "1"} {
		f.busy(2, retryAfter)
		res, err := c.Current(t.Context(), d, notarizetest.KeyID(t, s))
		if err != nil {
			t.Fatalf("current lookup refused twice with Retry-After %q: %v, want it retried", retryAfter, err)
		}
		if len(res.Records) != 1 {
			t.Fatalf("current lookup: %d records, want 1", len(res.Records))
		}
		sent, _ := f.seen()
		if len(sent) < 3 {
			t.Fatalf("%d requests, want the 2 refused and the retry", len(sent))
		}
		if retryAfter == "1" {
			for i := 1; i < 3; i++ {
				if gap := sent[i].Sub(sent[i-1]); gap < time.Second {
					t.Errorf("retry %d sent %v after a Retry-After: 1 refusal, want at least 1s", i, gap)
				}
			}
		}
	}
}

// TestRetryBounded: a read always refused is sent 1+3 times, then the
// refusal is returned (an *APIError with its Retry-After); the waits
// together are bounded; one whose Retry-After is long, or past the
// client's timeout, is not waited for;
// a submission refused is never sent again.
func TestRetryBounded(t *testing.T) {
	t.Parallel()
	srv := ledgertest.Start(t)
	f := newBusyFront(t, srv.URL)
	s := notarizetest.NewSigner(t)
	kid := notarizetest.KeyID(t, s)
	d := digest("bounded")
	c := newClient(t, f.URL, t.TempDir(), srv.VerifierKey)

	refused := func(err error, want time.Duration) {
		t.Helper()
		ae, ok := errors.AsType[*ledgerclient.APIError](err)
		if !ok || ae.StatusCode != http.StatusServiceUnavailable || ae.RetryAfter != want {
			t.Fatalf("%v, want the 503 refusal with RetryAfter %v", err, want)
		}
	}
	f.busy(1000, "0")
	_, err := c.Current(t.Context(), d, kid)
	refused(err, 0)
	if sent, _ := f.seen(); len(sent) != 4 {
		t.Errorf("a read always refused: %d requests, want 4 (3 retries)", len(sent))
	}

	f.busy(1000, "3") // one wait of 3s fits in maxRetryWait (5s), two do not
	_, err = c.Current(t.Context(), d, kid)
	refused(err, 3*time.Second)
	if sent, _ := f.seen(); len(sent) != 2 {
		t.Errorf("Retry-After: 3 always: %d requests, want 2 (the waits bounded in all)", len(sent))
	}

	f.busy(1000, "3600")
	start := time.Now()
	_, err = c.Current(t.Context(), d, kid)
	refused(err, time.Hour)
	if sent, _ := f.seen(); len(sent) != 1 || time.Since(start) > 30*time.Second {
		t.Errorf("Retry-After: 3600: %d requests in %v, want 1, not waited for", len(sent), time.Since(start))
	}

	short, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: f.URL, Home: t.TempDir(), VerifierKey: srv.VerifierKey, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.busy(1000, "1")
	_, err = short.Current(t.Context(), d, kid)
	refused(err, time.Second)
	if sent, _ := f.seen(); len(sent) != 1 {
		t.Errorf("Retry-After: 1 with a 500ms timeout: %d requests, want 1 (the wait does not fit)", len(sent))
	}

	f.busy(1000, "0")
	_, err = c.Submit(t.Context(), notarizetest.Entry(t, s, d, notarize.StatusTrusted, t0))
	refused(err, 0)
	if _, methods := f.seen(); len(methods) != 1 || methods[0] != http.MethodPost {
		t.Errorf("a submission refused 503: requests %v, want one POST (never retried)", methods)
	}
}
