package ledger

import (
	"sync"
	"sync/atomic"

	"github.com/notarize/docker-notarize/ledger/storage"
)

// maxVerifiedRows bounds verifiedRows: the submissions that may be in
// flight, with room for the ones finishing. When it is full, a submission
// is simply not remembered and the follower checks its entry itself.
const maxVerifiedRows = 2 * maxInFlight

// verifiedRows hands the index follower what Submit established about the
// entries this process appends: the index row of an entry whose exact bytes
// were parsed strictly (notarize.ParseEntry) and whose signature was
// checked (notarize.Entry.Verify, stricter than the VerifyLogged the
// follower runs), keyed by those exact bytes. The follower, which would
// otherwise parse and check every entry a second time (a fifth of the
// ledger's CPU under load), takes the row of an entry whose bytes are
// exactly a key here, and checks every other entry as before: another
// instance's entries, entries logged before a restart, foreign ones.
//
// The rows are keyed by the entry's bytes themselves, not by a hash, a
// statement identity or a log index: a row is only ever given for the very
// bytes it was computed from, so an index row carries Digest and KeyID only
// if the entry's exact bytes verify. The submission that remembered an
// entry forgets it when it finishes (logged, duplicate or failed), while it
// still holds the statement's slot in Ledger.pending, so the set holds the
// submissions in flight and no more. It is safe for concurrent use.
type verifiedRows struct {
	mu   sync.Mutex
	rows map[string]storage.Row // by the entry's exact bytes; Row.Data is nil

	hits, misses atomic.Uint64 // follower look-ups, for tests and the benchmark
}

func newVerifiedRows() *verifiedRows {
	return &verifiedRows{rows: make(map[string]storage.Row)}
}

// remember records row as the index row of the entry whose exact bytes are
// data; row must come from verifying exactly those bytes. It reports
// false, remembering nothing, when the set is full.
func (c *verifiedRows) remember(data []byte, row storage.Row) bool {
	row.Data = nil
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.rows) >= maxVerifiedRows {
		return false
	}
	c.rows[string(data)] = row
	return true
}

// forget drops the row of the entry whose bytes are data.
func (c *verifiedRows) forget(data []byte) {
	c.mu.Lock()
	delete(c.rows, string(data))
	c.mu.Unlock()
}

// row returns the remembered index row of the entry whose exact bytes are
// data, with Row.Data set to data. A nil set remembers nothing.
func (c *verifiedRows) row(data []byte) (storage.Row, bool) {
	if c == nil {
		return storage.Row{}, false
	}
	c.mu.Lock()
	row, ok := c.rows[string(data)]
	c.mu.Unlock()
	if !ok {
		c.misses.Add(1)
		return storage.Row{}, false
	}
	c.hits.Add(1)
	row.Data = data
	return row, true
}

// len returns the number of rows remembered.
func (c *verifiedRows) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.rows)
}
