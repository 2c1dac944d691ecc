package ledgerclient_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// TestLookupAgainstFloodedLedger: on a real open ledger where a stranger
// wrote many statements about a digest, the owner's filtered lookup
// and current statement read only the owner's entries, and an unfiltered
// walk reads every entry over several pages, each verified.
func TestLookupAgainstFloodedLedger(t *testing.T) {
	t.Parallel()
	srv := ledgertest.Start(t)
	c := newClient(t, srv.URL, t.TempDir(), "")
	d := digest("flooded")
	alice, mallory := notarizetest.NewSigner(t), notarizetest.NewSigner(t)
	submit(t, c, notarizetest.Entry(t, alice, d, notarize.StatusTrusted, t0))

	// 4 KiB statements: the walk's pages are cut by count (PageLimit); the
	// 30 KiB of the first version cost 50 s under -race and showed no more.
	attrs := map[string]string{}
	for i := range 4 {
		attrs[fmt.Sprintf("pad%02d", i)] = strings.Repeat("x", 1000)
	}
	const strangers = 2*ledgerclient.PageLimit + 10
	var wg sync.WaitGroup
	work := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				e, err := notarize.Sign(t.Context(), mallory, notarize.NewStatement(d, "x", notarize.Predicate{
					Status: notarize.StatusTrusted, Kind: notarize.KindImage, Attributes: attrs,
					Timestamp: t0.Add(time.Duration(i) * time.Millisecond),
				}))
				if err == nil {
					_, err = c.Submit(t.Context(), e)
				}
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	for i := range strangers {
		work <- i
	}
	close(work)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	last := submit(t, c, notarizetest.Entry(t, alice, d, notarize.StatusUntrusted, t0.Add(time.Minute)))

	aliceID := notarizetest.KeyID(t, alice)
	mine, err := c.Lookup(t.Context(), d, aliceID)
	if err != nil || len(mine.Records) != 2 || mine.Records[1].Index != last.Index {
		t.Fatalf("alice's lookup: %v, %+v", err, mine)
	}
	cur, err := c.Current(t.Context(), d, aliceID, notarizetest.KeyID(t, notarizetest.NewSigner(t)))
	if err != nil || len(cur.Records) != 1 || cur.Records[0].Index != last.Index || cur.Records[0].Status() != notarize.StatusUntrusted {
		t.Fatalf("alice's current statement: %v, %+v", err, cur)
	}
	pages, n := 0, 0
	prev := int64(-1)
	for p, err := range c.LookupPages(t.Context(), d) {
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range p.Records {
			if int64(r.Index) <= prev {
				t.Fatalf("entry %d after %d", r.Index, prev)
			}
			prev = int64(r.Index)
			n++
		}
	}
	if n != strangers+2 || pages < 3 {
		t.Fatalf("walk: %d records in %d pages, want %d in at least 3", n, pages, strangers+2)
	}
}
