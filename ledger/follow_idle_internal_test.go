package ledger

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// countingLog counts the follower's looks at the log's size.
type countingLog struct {
	fakeLog
	sizes atomic.Int64
}

func (c *countingLog) IntegratedSize(ctx context.Context) (uint64, error) {
	c.sizes.Add(1)
	return c.fakeLog.IntegratedSize(ctx)
}

// TestIndexFollowerIdles: while the log does not grow the follower looks at
// it less and less often (a 10 ms poll cost an idle ledger about 1% of a
// core), and a waiter (WaitProcessed) wakes it at once: with the idle wait
// set to an hour, a new entry is indexed only if the waiter woke it.
func TestIndexFollowerIdles(t *testing.T) {
	s := newTestSigner(t)
	lg := &countingLog{}
	lg.append(mustMarshal(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())))
	st, err := openTestIndex(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st.idleMax = time.Hour
	stop := follow(t, st, lg)
	defer stop()
	waitProcessed(t, st, 1)

	const idleFor = 500 * time.Millisecond
	before := lg.sizes.Load()
	time.Sleep(idleFor)
	looks := lg.sizes.Load() - before
	// At a fixed poll (storage tuning: 10 ms) that is 50 looks; doubling
	// from it, about 6.
	if limit := int64(idleFor / st.tune.Poll / 4); looks > limit {
		t.Fatalf("an idle follower looked at the log %d times in %v (want at most %d)", looks, idleFor, limit)
	}

	lg.append(mustMarshal(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())))
	waitProcessed(t, st, 2) // 10 s deadline; the follower sleeps for up to an hour unless woken
}
