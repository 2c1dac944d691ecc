package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// downLog is a log whose storage can be taken down: its size reads then
// fail as a MySQL driver's do while the database restarts.
type downLog struct {
	fakeLog
	down atomic.Bool
}

// IntegratedSize checks down and reads the size under the log's lock, so
// that an entry appended after down is set is never read as integrated (a
// follower that saw the log up and read the size after the test's append
// indexed it during the "outage": the wait returned nil, once in CI).
func (d *downLog) IntegratedSize(context.Context) (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down.Load() {
		return 0, fmt.Errorf("%w: database: dial tcp 127.0.0.1:3306: connect: connection refused", ErrUnavailable)
	}
	return uint64(len(d.entries)), nil
}

// TestWaitIndexedFailsOnOutage: a submission whose entry is logged waits
// for the index to cover it (waitIndexed); when the database goes down
// meanwhile, the follower cannot index it, and the submission is answered
// ErrUnavailable (503: retry) as soon as the follower meets the outage,
// not after the outage or the receipt timeout. Once the database is back,
// the wait succeeds. (TestMySQLDatabaseRestart saw eight writers wait out
// a restart here with no 503, about one run in ten under load.)
func TestWaitIndexedFailsOnOutage(t *testing.T) {
	s := newTestSigner(t)
	lg := &downLog{}
	lg.append(mustMarshal(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())))
	st, err := openTestIndex(t, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	stop := follow(t, st, lg)
	defer stop()
	waitProcessed(t, st, 1)

	lg.down.Store(true)
	lg.append(mustMarshal(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now())))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second) // the receipt timeout's role
	defer cancel()
	start := time.Now()
	err = st.waitIndexed(ctx, 2)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("wait for the index during an outage: %v after %v, want ErrUnavailable", err, time.Since(start).Round(time.Millisecond))
	}
	// A wait that began during the outage ends at the follower's next
	// failed retry (the POSIX tuning backs off up to 5 s): well before
	// ctx's deadline.
	if ctx.Err() != nil {
		t.Fatalf("the wait ended with its context: %v", err)
	}

	lg.down.Store(false)
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
