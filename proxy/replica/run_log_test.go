package replica_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/proxy/replica"
)

// flakySource fails while down is set and records when it was asked.
type flakySource struct {
	down  atomic.Bool
	mu    sync.Mutex
	calls []time.Time
}

func (s *flakySource) Next(_ context.Context, st ledgerclient.FollowState) (*ledgerclient.FollowBatch, error) {
	s.mu.Lock()
	s.calls = append(s.calls, time.Now())
	s.mu.Unlock()
	if s.down.Load() {
		return nil, errors.New("dial tcp 127.0.0.1:7070: connection refused")
	}
	return &ledgerclient.FollowBatch{From: st.Size, State: st}, nil
}

func (s *flakySource) callTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.calls...)
}

// recordLog keeps every record logged.
type recordLog struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recordLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordLog) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *recordLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordLog) WithGroup(string) slog.Handler      { return h }

func (h *recordLog) take() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.recs
	h.recs = nil
	return out
}

func attr(r slog.Record, key string) (slog.Value, bool) {
	var v slog.Value
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v, found = a.Value, true
			return false
		}
		return true
	})
	return v, found
}

// TestRunLogsStateChangesAndBacksOff: while the ledger is down, Run logs
// the first failure with its error, then at most one summary a minute (not
// a line per 300 ms poll), and retries with a doubling pause capped at
// MaxRetryInterval; Refresh still syncs at once; when the ledger is back
// Run logs "recovered" at info and polls every PollInterval again.
func TestRunLogsStateChangesAndBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &flakySource{}
		src.down.Store(true)
		logs := &recordLog{}
		const poll = 300 * time.Millisecond
		r, err := replica.Open(replica.Config{
			Path: filepath.Join(t.TempDir(), "r.db"), Source: src,
			PollInterval: poll, Logger: slog.New(logs),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); r.Run(ctx) }()

		// Five minutes down.
		const downFor = 5 * time.Minute
		time.Sleep(downFor)
		synctest.Wait()
		recs := logs.take()
		if len(recs) == 0 || recs[0].Level != slog.LevelWarn {
			t.Fatalf("first failure not logged at warn (%d lines)", len(recs))
		}
		if v, ok := attr(recs[0], "error"); !ok || v.String() != "dial tcp 127.0.0.1:7070: connection refused" {
			t.Errorf("first failure line has error %v, want the sync's error", v)
		}
		summaries := recs[1:]
		// One summary per FailureLogInterval at most: 5 in five minutes, not
		// the 1000 lines of a line per poll.
		if n := len(summaries); n < 3 || n > int(downFor/replica.FailureLogInterval) {
			t.Fatalf("%d summary lines in %v of failures, want 3..%d; the first: %q", n, downFor, downFor/replica.FailureLogInterval, summaries[0].Message)
		}
		var counted int64
		for i, s := range summaries {
			if s.Message != "ledger replica still cannot sync" {
				t.Errorf("summary %d: %q", i, s.Message)
			}
			if i > 0 && s.Time.Sub(summaries[i-1].Time) < replica.FailureLogInterval {
				t.Errorf("summaries %d and %d only %v apart", i-1, i, s.Time.Sub(summaries[i-1].Time))
			}
			n, _ := attr(s, "failures")
			counted += n.Int64()
			if v, _ := attr(s, "last_error"); v.String() == "" {
				t.Errorf("summary %d has no last_error", i)
			}
		}
		calls := src.callTimes()
		if counted+1 > int64(len(calls)) || counted < 3 {
			t.Errorf("summaries count %d failures, %d syncs were tried", counted, len(calls))
		}
		// Backoff: pauses double up to MaxRetryInterval; ~36 tries in five minutes, not 1000.
		if len(calls) > 40 {
			t.Errorf("%d syncs tried in %v down: no backoff", len(calls), downFor)
		}
		for i := 2; i < len(calls); i++ {
			gap, prev := calls[i].Sub(calls[i-1]), calls[i-1].Sub(calls[i-2])
			if gap > replica.MaxRetryInterval || (gap < prev && prev < replica.MaxRetryInterval) {
				t.Fatalf("retry pauses %v then %v: not a doubling backoff capped at %v", prev, gap, replica.MaxRetryInterval)
			}
		}
		if last := calls[len(calls)-1].Sub(calls[len(calls)-2]); last != replica.MaxRetryInterval {
			t.Errorf("after %v down the retry pause is %v, want %v", downFor, last, replica.MaxRetryInterval)
		}

		// Refresh (the sync before a refusal) does not wait for the backoff.
		before := len(src.callTimes())
		if err := r.Refresh(t.Context()); err == nil {
			t.Error("Refresh succeeded while the ledger is down")
		}
		if got := src.callTimes(); len(got) != before+1 || !got[len(got)-1].Equal(time.Now()) {
			t.Errorf("Refresh did not sync at once: %d calls before, %d after", before, len(got))
		}
		if recs := logs.take(); len(recs) != 0 {
			t.Errorf("Refresh's failure was logged by the replica (the caller handles it): %v", recs)
		}

		// The ledger is back: one "recovered" line at info, then polls every PollInterval.
		src.down.Store(false)
		time.Sleep(replica.MaxRetryInterval)
		synctest.Wait()
		recs = logs.take()
		if len(recs) != 1 || recs[0].Level != slog.LevelInfo || recs[0].Message != "ledger replica recovered: following the ledger again" {
			t.Fatalf("after recovery logged %v, want one recovered line at info", recs)
		}
		if n, _ := attr(recs[0], "failures"); n.Int64() < int64(before) {
			t.Errorf("recovered line counts %d failures, want >= %d", n.Int64(), before)
		}
		n0 := len(src.callTimes())
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if n := len(src.callTimes()) - n0; n != int(3*time.Second/poll) {
			t.Errorf("%d polls in 3s after recovery, want %d (back to PollInterval)", n, 3*time.Second/poll)
		}
		if recs := logs.take(); len(recs) != 0 {
			t.Errorf("healthy polls logged %v", recs)
		}
		cancel()
		<-done
	})
}
