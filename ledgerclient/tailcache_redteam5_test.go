package ledgerclient

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// TestRedteam5TailLieNotKept: the tail's bundles are shared between a
// client's lookups (a fetch cache). A front lies once about a bundle of
// the tail: the lookups reading that answer fail (ErrBadProof), and the
// next lookup, the front honest again, succeeds: the lie is not kept for
// it. Two lookups at once (verify's current and revocation lookups share
// the tail) both fail on the lie, neither counts it.
func TestRedteam5TailLieNotKept(t *testing.T) {
	f, c, _ := pinnedClient(t, 3)
	alice := newEntrySigner(t)
	ka := notarizetest.KeyID(t, alice)
	want := appendStatements(t, f, alice, digestA, notarize.StatusUntrusted, t0, 1)[0]
	f.grow(700)
	var lies atomic.Int32
	lies.Store(1)
	var served atomic.Int32
	var target atomic.Uint64
	target.Store(want / 256)
	lie := func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error) {
		if index == target.Load() && err == nil && lies.Add(-1) >= 0 {
			served.Add(1)
			es := redteam5Split(b)
			for i, e := range es {
				if bytes.Contains(e, []byte(`"payload"`)) {
					es[i] = []byte("leaf hidden") // the statement replaced
				}
			}
			return redteam5Join(es), nil
		}
		return b, err
	}
	f.bundleHook = lie
	if res, err := c.Current(t.Context(), digestA, ka); !errors.Is(err, ErrBadProof) || res != nil {
		t.Fatalf("BYPASS: a lying bundle: %v %+v, want ErrBadProof", err, res)
	}
	res, err := c.Current(t.Context(), digestA, ka)
	if err != nil || len(res.Records) != 1 || res.Records[0].Index != want {
		t.Fatalf("the front honest again: %v %+v, want entry %d (the lie was kept?)", err, res, want)
	}

	// Two lookups at once, the lie served once to whichever asks first,
	// about a newer statement in a bundle not read yet.
	f.grow(300)
	want = appendStatements(t, f, alice, digestA, notarize.StatusTrusted, t0.Add(time.Hour), 1)[0]
	f.grow(10)
	target.Store(want / 256)
	lies.Store(1)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	results := make([]*LookupResult, 2)
	for i := range 2 {
		wg.Go(func() { results[i], errs[i] = c.Current(t.Context(), digestA, ka) })
	}
	wg.Wait()
	if served.Load() != 2 {
		t.Fatal("the lie was not served: the test proves nothing")
	}
	for i := range 2 {
		if errs[i] == nil && (len(results[i].Records) != 1 || results[i].Records[0].Index != want) {
			t.Fatalf("BYPASS: concurrent lookup %d counted the lie: %+v", i, results[i])
		}
	}
	res, err = c.Current(t.Context(), digestA, ka)
	if err != nil || len(res.Records) != 1 || res.Records[0].Index != want {
		t.Fatalf("after the concurrent lookups: %v %+v, want entry %d", err, res, want)
	}
}
