package ledgerclient

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// BenchmarkCurrentCompleteness: a current lookup against a real ledger of
// 5,000 entries (the map committed), whole (what verify does) and the
// completeness step alone (the map proofs and the log's tail after the
// root): the lookup without the map costs the difference.
//
//	go test -run '^$' -bench CurrentCompleteness -benchtime 200x ./ledgerclient/
func BenchmarkCurrentCompleteness(b *testing.B) {
	const n = 5_000
	srv := ledgertest.Start(b, ledgertest.WithConfig(func(c *ledger.Config) { c.MapCommitInterval = 200 * time.Millisecond }))
	c, err := New(b.Context(), Config{URL: srv.URL, Home: b.TempDir(), VerifierKey: srv.VerifierKey})
	if err != nil {
		b.Fatal(err)
	}
	signers := make([]*notarize.Entry, 0, n)
	s := notarizetest.NewSigner(b)
	for i := range n {
		signers = append(signers, notarizetest.Entry(b, s, notarize.DigestOf(fmt.Appendf(nil, "bench %d", i)), notarize.StatusTrusted, time.Now().Add(-time.Hour)))
	}
	var wg sync.WaitGroup
	work := make(chan *notarize.Entry)
	for range 64 {
		wg.Go(func() {
			for e := range work {
				if _, err := c.Submit(b.Context(), e); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for _, e := range signers {
		work <- e
	}
	close(work)
	wg.Wait()
	d := notarize.DigestOf([]byte("bench 7"))
	kid := notarizetest.KeyID(b, s)
	// Wait for a root after the last entry: the tail is what arrived since.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		b1, err := c.ops.Current(b.Context(), d, []string{kid})
		if err != nil {
			b.Fatal(err)
		}
		resp, err := decodeLookup(b1, maxLookupAnswer(1))
		if err != nil {
			b.Fatal(err)
		}
		if resp.Map != nil && resp.Map.RootIndex != nil && *resp.Map.RootIndex >= n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("no map root after the entries")
		}
	}
	b.Run("current", func(b *testing.B) {
		for b.Loop() {
			res, err := c.Current(b.Context(), d, kid)
			if err != nil || len(res.Records) != 1 {
				b.Fatal(err)
			}
		}
	})
	// What verify asks since key revocations (revoke.go): the current
	// lookup with the key's revocation lookup alongside, for a key that is
	// not revoked, then (last) for a revoked one, whose statements about
	// the digest are read whole.
	b.Run("current+revocations", func(b *testing.B) {
		for b.Loop() {
			res, revs, err := c.CurrentWithRevocations(b.Context(), d, []string{kid}, nil)
			if err != nil || len(res.Records) != 1 || len(revs) != 0 {
				b.Fatal(err)
			}
		}
	})
	b.Run("lookup", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.Lookup(b.Context(), d, kid); err != nil {
				b.Fatal(err)
			}
		}
	})
	defer b.Run("current+revocations, revoked", func(b *testing.B) {
		if _, err := c.Submit(b.Context(), notarizetest.KeyRevocation(b, s, kid, time.Now())); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			res, revs, err := c.CurrentWithRevocations(b.Context(), d, []string{kid}, nil)
			if err != nil || len(res.Records) != 1 || len(revs) != 1 {
				b.Fatal(err)
			}
		}
	})
	b.Run("completeness-step", func(b *testing.B) {
		before, err := c.stored()
		if err != nil {
			b.Fatal(err)
		}
		raw, err := c.ops.Current(b.Context(), d, []string{kid})
		if err != nil {
			b.Fatal(err)
		}
		resp, cp, err := c.lookupAnswer(b.Context(), before, raw, 1)
		if err != nil {
			b.Fatal(err)
		}
		recs, err := verifyCurrent(resp, cp, d, []string{kid})
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := c.verifyComplete(b.Context(), resp.Map, cp, d, []string{kid}, recs); err != nil {
				b.Fatal(err)
			}
		}
	})
}
