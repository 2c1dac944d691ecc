package ledger

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// Red team 6: the lookup gate (maxConcurrentLookups places, one more is
// 503) is shared by every anonymous reader, with no per-client share. One
// client keeping more than 32 page views or lookups in flight takes every
// place, and the owner's `untrust` (whose first step is a current lookup,
// which the client does not retry on 503) fails. The test fails when an
// honest current lookup is refused while one anonymous client floods
// page views of a digest.
func TestRedteam6LookupGateStarvedByOneClient(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("floods the ledger for a few seconds")
	}
	tl := startLedger(t, Config{})
	owner, stranger := newTestSigner(t), newTestSigner(t)
	d, hot := randomDigest(t), randomDigest(t)
	tl.submit(t, owner.sign(t, d, notarize.StatusTrusted, time.Now()), http.StatusCreated)
	// A digest whose page reads pageMaxEntries large entries: each view
	// holds a place a little longer.
	flood := make([]*notarize.Entry, 64)
	now := time.Now()
	for i := range flood {
		flood[i] = stranger.signLarge(t, hot, notarize.StatusTrusted, now.Add(-time.Duration(i)*time.Second))
	}
	submitAll(t, tl.url, flood)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	var views, busy atomic.Int64
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	defer tr.CloseIdleConnections()
	attacker := &http.Client{Transport: tr}
	page := tl.url + "/?" + url.Values{"digest": {string(hot)}}.Encode()
	for range 96 {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, page, nil)
				resp, err := attacker.Do(req)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				views.Add(1)
				if resp.StatusCode == http.StatusServiceUnavailable {
					busy.Add(1)
				}
			}
		})
	}
	defer wg.Wait()
	defer cancel()
	time.Sleep(300 * time.Millisecond)

	refused := 0
	const tries = 40
	for range tries {
		resp, err := http.Get(lookupURL(tl.url, d, api.PathCurrentSuffix, keyQuery(owner.keyID)))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			refused++
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("attacker: %d page views, %d refused; owner: %d of %d current lookups refused", views.Load(), busy.Load(), refused, tries)
	if refused > 0 {
		t.Errorf("BYPASS (DoS): one anonymous client flooding page views made %d of %d of the owner's current lookups 503 (untrust's first step; the client does not retry)", refused, tries)
	}
}
