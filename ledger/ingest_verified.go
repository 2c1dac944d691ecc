package ledger

import (
	"bytes"
	"crypto/sha256"
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
// follower runs), keyed by the SHA-256 of those bytes and compared with
// them in full. The follower, which would
// otherwise parse and check every entry a second time (a fifth of the
// ledger's CPU under load), takes the row of an entry whose bytes are
// exactly a key here, and checks every other entry as before: another
// instance's entries, entries logged before a restart, foreign ones.
//
// A row is found by the SHA-256 of the entry's bytes and given only when
// those bytes equal, in full, the bytes it was computed from (not a
// statement identity or a log index), so an index row carries Digest and KeyID only
// if the entry's exact bytes verify. The submission that remembered an
// entry forgets it when it finishes (logged, duplicate or failed), while it
// still holds the statement's slot in Ledger.pending, so the set holds the
// submissions in flight and no more. It is safe for concurrent use.
type verifiedRows struct {
	mu   sync.Mutex
	rows map[[sha256.Size]byte]storage.Row // by the SHA-256 of the entry's bytes; Row.Data holds them, compared in full

	hits, misses atomic.Uint64 // follower look-ups, for tests and the benchmark
}

func newVerifiedRows() *verifiedRows {
	return &verifiedRows{rows: make(map[[sha256.Size]byte]storage.Row)}
}

// remember records row as the index row of the entry whose exact bytes are
// data; row must come from verifying exactly those bytes. It reports
// false, remembering nothing, when the set is full.
func (c *verifiedRows) remember(data []byte, row storage.Row) bool {
	row.Data = data // the submission's own bytes, not a copy: it holds them until it forgets them
	h := sha256.Sum256(data)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.rows) >= maxVerifiedRows {
		return false
	}
	if old, ok := c.rows[h]; ok && !bytes.Equal(old.Data, data) {
		return false // a SHA-256 collision: remember neither over the other
	}
	c.rows[h] = row
	return true
}

// forget drops the row of the entry whose bytes are data.
func (c *verifiedRows) forget(data []byte) {
	h := sha256.Sum256(data)
	c.mu.Lock()
	if old, ok := c.rows[h]; ok && bytes.Equal(old.Data, data) {
		delete(c.rows, h)
	}
	c.mu.Unlock()
}

// row returns the remembered index row of the entry whose exact bytes are
// data, with Row.Data set to data. A nil set remembers nothing.
func (c *verifiedRows) row(data []byte) (storage.Row, bool) {
	if c == nil {
		return storage.Row{}, false
	}
	h := sha256.Sum256(data)
	c.mu.Lock()
	row, ok := c.rows[h]
	c.mu.Unlock()
	if !ok || !bytes.Equal(row.Data, data) {
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
