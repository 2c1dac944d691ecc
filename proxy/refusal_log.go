package proxy

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Pacing of the log lines about refused requests.
const (
	// refusalLogEvery is the least time between two lines about one
	// refusal, and how often repeats not yet logged are summed up.
	refusalLogEvery = time.Minute
	// refusalLogKeys bounds the refusals remembered; past it, the ones not
	// remembered share one line per refusalLogEvery.
	refusalLogKeys = 4096
)

// refusalLog paces the log lines of refused requests. The first refusal of
// a kind (its key: what was refused and why) is logged at once; the same
// refusal again within refusalLogEvery is only counted, and the count is
// logged with the kind's next line, or by flush once the interval is over,
// with the fields of the last request counted. So an operator sees every
// kind of refusal within a second and how often it recurs, and a client
// retrying a refused pull in a loop (kubelet, a CI job, dockerd falling
// back through its mirrors), or a ledger outage refusing every pull, makes
// a line per kind per interval instead of a line per request. It is safe
// for concurrent use.
type refusalLog struct {
	log   *slog.Logger
	now   func() time.Time
	every time.Duration
	max   int

	mu       sync.Mutex
	keys     map[string]*refusal
	overflow refusal // the kinds past max, together

	stop     chan struct{} // closed by close: run returns
	done     chan struct{} // closed when run returned
	stopOnce sync.Once
}

// refusal is what refusalLog remembers of one kind of refusal.
type refusal struct {
	logged     time.Time // when its last line was written
	suppressed int       // refusals since that line, not logged
	msg        string    // of the last refusal not logged
	attrs      []slog.Attr
}

// newRefusalLog returns a refusalLog writing to log, whose summary loop
// (run) is started by the caller and stopped by close.
func newRefusalLog(log *slog.Logger, now func() time.Time) *refusalLog {
	return &refusalLog{log: log, now: now, every: refusalLogEvery, max: refusalLogKeys,
		keys: map[string]*refusal{}, stop: make(chan struct{}), done: make(chan struct{})}
}

// note logs a refusal of kind key as msg with attrs, unless that kind was
// logged within the interval: then it is counted for the next line.
func (l *refusalLog) note(ctx context.Context, key, msg string, attrs ...slog.Attr) {
	now := l.now()
	l.mu.Lock()
	e, ok := l.keys[key]
	if !ok && len(l.keys) >= l.max {
		l.expire(now)
	}
	overflow := false
	switch {
	case ok:
	case len(l.keys) < l.max:
		e = &refusal{}
		l.keys[key] = e
	default:
		e, overflow = &l.overflow, true
	}
	if !e.logged.IsZero() && now.Sub(e.logged) < l.every {
		e.suppressed++
		e.msg, e.attrs = msg, attrs
		l.mu.Unlock()
		return
	}
	n := e.suppressed
	e.logged, e.suppressed, e.msg, e.attrs = now, 0, "", nil
	l.mu.Unlock()
	l.write(ctx, msg, attrs, n, overflow)
}

// expire forgets the kinds not logged for an interval and with nothing to
// report. Called with l.mu held.
func (l *refusalLog) expire(now time.Time) {
	for k, e := range l.keys {
		if e.suppressed == 0 && now.Sub(e.logged) >= l.every {
			delete(l.keys, k)
		}
	}
}

// flush logs, for every kind refused again since its last line and not
// logged for an interval (with all, whenever it was logged), one line with
// the count and the fields of the last of those refusals, and forgets the
// kinds with nothing to report.
func (l *refusalLog) flush(ctx context.Context, all bool) {
	type pending struct {
		msg      string
		attrs    []slog.Attr
		n        int
		overflow bool
	}
	now := l.now()
	var out []pending
	l.mu.Lock()
	due := func(e *refusal) bool { return e.suppressed > 0 && (all || now.Sub(e.logged) >= l.every) }
	for _, e := range l.keys {
		if due(e) {
			out = append(out, pending{e.msg, e.attrs, e.suppressed, false})
			e.logged, e.suppressed, e.msg, e.attrs = now, 0, "", nil
		}
	}
	if due(&l.overflow) {
		e := &l.overflow
		out = append(out, pending{e.msg, e.attrs, e.suppressed, true})
		e.logged, e.suppressed, e.msg, e.attrs = now, 0, "", nil
	}
	l.expire(now)
	l.mu.Unlock()
	for _, p := range out {
		l.write(ctx, p.msg, p.attrs, p.n, p.overflow)
	}
}

// write logs one line: more_requests is the number of refusals of the kind
// since its previous line that were not logged, interval the pacing.
func (l *refusalLog) write(ctx context.Context, msg string, attrs []slog.Attr, n int, overflow bool) {
	all := make([]slog.Attr, 0, len(attrs)+3)
	all = append(all, attrs...)
	all = append(all, slog.Int("more_requests", n), slog.Duration("interval", l.every))
	if overflow {
		all = append(all, slog.Bool("other_kinds", true))
	}
	l.log.LogAttrs(ctx, slog.LevelInfo, msg, all...)
}

// run calls flush every interval until close.
func (l *refusalLog) run() {
	defer close(l.done)
	t := time.NewTicker(l.every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			l.flush(context.Background(), true)
			return
		case <-t.C:
			l.flush(context.Background(), false)
		}
	}
}

// close stops run, which first logs what is still counted, and waits for
// it. Call it after run was started; later calls only wait.
func (l *refusalLog) close() {
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
}

// logRefusal logs a refused request of kind key through s.refusals (once
// per kind per interval, with the count), or at once on a Server made
// without New.
func (s *Server) logRefusal(ctx context.Context, key, msg string, attrs ...slog.Attr) {
	if s.refusals == nil {
		s.log.LogAttrs(ctx, slog.LevelInfo, msg, attrs...)
		return
	}
	s.refusals.note(ctx, key, msg, attrs...)
}
