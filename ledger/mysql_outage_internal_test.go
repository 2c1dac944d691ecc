package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/internal/pebblestore"
	"github.com/notarize/docker-notarize/notarize"
)

// failingLog is a log whose size reads can be made to fail with an error
// of the test's: a MySQL driver's while the database restarts
// (ErrUnavailable), or a damaged index store's (pebblestore.ErrDamaged).
type failingLog struct {
	fakeLog
	fail atomic.Pointer[error]
}

// IntegratedSize checks fail and reads the size under the log's lock, so
// that an entry appended after fail is set is never read as integrated (a
// follower that saw the log up and read the size after the test's append
// indexed it during the "outage": the wait returned nil, once in CI).
func (d *failingLog) IntegratedSize(context.Context) (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.fail.Load(); err != nil {
		return 0, *err
	}
	return uint64(len(d.entries)), nil
}

// followFailing indexes one entry of a failingLog, then makes its size
// reads fail with err and logs a second entry, which the follower cannot
// index: the state of a submission that waits for the index (waitIndexed
// of 2) while the storage fails.
func followFailing(t *testing.T, err error) (*testIndex, *failingLog) {
	s := newTestSigner(t)
	lg := &failingLog{}
	lg.append(mustMarshal(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())))
	st, oerr := openTestIndex(t, t.TempDir())
	if oerr != nil {
		t.Fatal(oerr)
	}
	t.Cleanup(follow(t, st, lg))
	waitProcessed(t, st, 1)
	lg.fail.Store(&err)
	lg.append(mustMarshal(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())))
	return st, lg
}

// TestWaitIndexedFailsOnOutage: a submission whose entry is logged waits
// for the index to cover it (waitIndexed); when the database goes down
// meanwhile, the follower cannot index it, and the submission is answered
// ErrUnavailable (503: retry) as soon as the follower meets the outage,
// not after the outage or the receipt timeout. Once the database is back,
// the wait succeeds. (TestMySQLDatabaseRestart saw eight writers wait out
// a restart here with no 503, about one run in ten under load.)
func TestWaitIndexedFailsOnOutage(t *testing.T) {
	st, lg := followFailing(t, fmt.Errorf("%w: database: dial tcp 127.0.0.1:3306: connect: connection refused", ErrUnavailable))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second) // the receipt timeout's role
	defer cancel()
	start := time.Now()
	err := st.waitIndexed(ctx, 2)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("wait for the index during an outage: %v after %v, want ErrUnavailable", err, time.Since(start).Round(time.Millisecond))
	}
	// A wait that began during the outage ends at the follower's next
	// failed retry (the POSIX tuning backs off up to 5 s): well before
	// ctx's deadline.
	if ctx.Err() != nil {
		t.Fatalf("the wait ended with its context: %v", err)
	}

	lg.fail.Store(nil)
	ctx2, cancel2 := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel2()
	for {
		err := st.waitIndexed(ctx2, 2)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("wait after the outage: %v", err)
		}
		// A retry that met the follower's last failed step: try again,
		// as a client told 503 does.
	}
}

// TestWaitIndexedFailsOnDamagedStore: a submission waiting for the index
// while the follower fails on a damaged store is answered at the
// follower's next failure, not at its receipt timeout (a pebble ledger
// with a damaged block held each submission for the whole timeout, and
// Close behind them: red team 14's corrupt-block child took minutes).
func TestWaitIndexedFailsOnDamagedStore(t *testing.T) {
	st, _ := followFailing(t, fmt.Errorf("index entries: %w: index /data/index.pebble: on-disk corruption in 000012.sst", pebblestore.ErrDamaged))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second) // the receipt timeout's role
	defer cancel()
	err := st.waitIndexed(ctx, 2)
	if !errors.Is(err, pebblestore.ErrDamaged) || ctx.Err() != nil {
		t.Fatalf("wait for a damaged index: %v (context: %v), want the damage before the receipt timeout", err, ctx.Err())
	}
	// The damage lasts: a later wait fails at once, not at the follower's
	// next failure (its backoff has grown past this wait's 100 ms).
	time.Sleep(1500 * time.Millisecond)
	ctx2, cancel2 := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel2()
	if err := st.waitIndexed(ctx2, 2); !errors.Is(err, pebblestore.ErrDamaged) {
		t.Fatalf("a later wait for a damaged index: %v, want the damage at once", err)
	}
}
