package proxy

import (
	"sync"
	"time"
)

// Pacing of the log line about requests for an upstream that is not
// configured (NAME_UNKNOWN).
const (
	// unknownLogEvery is the least time between two lines about one name.
	unknownLogEvery = time.Minute
	// unknownLogNames bounds the names remembered; past it, the names not
	// remembered share one line per unknownLogEvery.
	unknownLogNames = 1024
)

// unknownNames paces the log of requests naming no configured upstream:
// one line per name per interval, whatever the number of requests, so a
// misconfigured client shows up in the log and a flood of made-up names
// does not fill it. It is safe for concurrent use.
type unknownNames struct {
	now   func() time.Time
	every time.Duration
	max   int

	mu       sync.Mutex
	names    map[string]*unknownName
	overflow unknownName // the names past max
}

type unknownName struct {
	logged     time.Time
	suppressed int // requests since that line, not logged
}

func newUnknownNames(now func() time.Time) *unknownNames {
	return &unknownNames{now: now, every: unknownLogEvery, max: unknownLogNames, names: map[string]*unknownName{}}
}

// note counts a request for name. It reports whether to log it now and how
// many requests for it went unlogged since the last line; overflow is true
// when name stands for every name past the bound.
func (u *unknownNames) note(name string) (log bool, suppressed int, overflow bool) {
	now := u.now()
	u.mu.Lock()
	defer u.mu.Unlock()
	e, ok := u.names[name]
	if !ok && len(u.names) >= u.max {
		for k, v := range u.names {
			if now.Sub(v.logged) >= u.every {
				delete(u.names, k)
			}
		}
	}
	if !ok {
		if len(u.names) >= u.max {
			e, overflow = &u.overflow, true
		} else {
			e = &unknownName{}
			u.names[name] = e
			e.logged = now
			return true, 0, false
		}
	}
	if !e.logged.IsZero() && now.Sub(e.logged) < u.every {
		e.suppressed++
		return false, 0, overflow
	}
	suppressed, e.logged, e.suppressed = e.suppressed, now, 0
	return true, suppressed, overflow
}
