package ledger

import (
	"context"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/vindex"
)

// The map follower folds what the index follower already established.
// The index follower parses and verifies every entry it indexes
// (index.go, verifiedEntry) and hands the rows to storage.Index.Write: a
// row has Digest and KeyID set exactly when its entry parses and verifies
// as logged (notarize.Entry.VerifyLogged), the very rule by which the map
// folds a statement (vindex.Batch.Add). rowTap sits between the index and
// its storage and keeps, in memory, the rows of the entries the map has
// not folded yet, so that the fold reads the statement's digest, key ID
// and signed timestamp from them instead of parsing the entry and checking
// its signature a second time (an ECDSA verification, ~113 µs, was 8 of
// the map follower's 10 % of a MySQL ledger's CPU). An entry whose row the
// tap does not hold (written by another instance sharing the database,
// indexed before this process started, or beyond the tap's bound) is read
// and checked as before (mapStatement): both paths fold the same
// statements (TestFoldFromRowsMatchesRebuild).

// foldRowsMax bounds the rows the tap keeps: eight build chunks of
// entries, ~16 MiB once full (a keptRow is 109 bytes and holds no pointer;
// a full map ~256 bytes a row, and a Go map does not shrink). The map
// folds once a root is due (MapCommitEntries entries, or
// MapCommitInterval) and its previous root published, and the tap then
// forgets what it folded: under 1,024 clients on two cores a cycle took
// ~2.5 s and ~8,000 entries on an empty ledger, and at one build chunk
// the tap dropped 40 % of the rows, whose entries the fold then parsed
// and verified again, which slowed the map further. On a ledger of
// 1,000,000 entries a cycle took ~8 s and the map fell 25,000-30,000
// entries behind the index: at four build chunks (32,768 rows) the
// re-verification was 10.5 % of the ledger's CPU (BENCHMARKS, round
// twenty-one; the lag peaked at 33,400 entries). Rows beyond the bound
// (the map stalled, or far behind the index) are not kept, and the fold
// reads those entries itself.
const foldRowsMax = 8 * mapBuildChunk

// rowTap is a storage.Index that keeps the rows the index follower writes,
// by log index, for the map follower (foldRows).
type rowTap struct {
	storage.Index

	mu    sync.Mutex
	rows  map[uint64]keptRow // by log index
	floor uint64             // rows below it are folded: not kept

	hits, misses atomic.Uint64 // statements and other entries folded from rows, entries read and checked again
}

// tapRows returns db wrapped in a rowTap when the ledger keeps a map, and
// db itself otherwise.
func (l *Ledger) tapRows(db storage.Index) storage.Index {
	if l.cfg.noMap {
		return db
	}
	return &rowTap{Index: db, rows: make(map[uint64]keptRow)}
}

// rowTapOf returns the tap of the ledger's index, nil when there is none.
func (l *Ledger) rowTapOf() *rowTap {
	t, _ := l.store.db.(*rowTap)
	return t
}

// Write implements storage.Index: the batch is written, then kept. The
// rows of [next, next+len(batch)) are kept even when another instance
// sharing the database wrote that range first (won is false): they are
// what this process read and checked at those indices of the log, and
// the log's entries never change.
func (t *rowTap) Write(ctx context.Context, next uint64, batch []storage.Row) (bool, error) {
	won, err := t.Index.Write(ctx, next, batch)
	if err == nil {
		t.keep(next, batch)
	}
	return won, err
}

// keptRow is what the tap keeps of a row: the raw fields of the statement
// the map folds from it (rowStatement), if any, in a value of fixed size
// that the garbage collector need not scan. Not the row itself: its Data
// is a slice of the entry bundle the follower read, and keeping it would
// pin a whole bundle per row (a partial bundle is read again at each
// step).
type keptRow struct {
	digest, keyID [32]byte // raw SHA-256 values
	stamp         storage.Stamp
	leaf          vindex.Hash
	stmt          bool
}

// keptRowOf returns what the tap keeps of r: a row with a digest and a
// key ID is a verified statement (storage.Row); any other row, a map
// root's among them, is no statement.
func keptRowOf(r storage.Row) keptRow {
	if len(r.Digest) != 32 || len(r.KeyID) != 32 || notarize.IsMapRoot(r.Data) {
		return keptRow{}
	}
	k := keptRow{stamp: r.Stamp, leaf: vindex.EntryLeafHash(r.Data), stmt: true}
	copy(k.digest[:], r.Digest)
	copy(k.keyID[:], r.KeyID)
	return k
}

// statement returns the statement k keeps, the entry at index: the digest
// and key ID in the lowercase hex of notarize.Digest and notarize.KeyID,
// and the timestamp k's Stamp: seconds and nanoseconds, all that
// vindex.Value keeps of it and compares.
func (k keptRow) statement(index uint64) foldStatement {
	return foldStatement{
		index: index,
		d:     notarize.Digest("sha256:" + hex.EncodeToString(k.digest[:])),
		keyID: hex.EncodeToString(k.keyID[:]),
		ts:    k.stamp.Time(),
		leaf:  k.leaf,
	}
}

// keep keeps the rows of batch, the entries at next, next+1, …, up to
// foldRowsMax rows in all.
func (t *rowTap) keep(next uint64, batch []storage.Row) {
	kept := make([]keptRow, len(batch)) // hashed before the lock, which take needs too
	for i, r := range batch {
		kept[i] = keptRowOf(r)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, k := range kept {
		idx := next + uint64(i)
		if idx < t.floor {
			continue
		}
		if len(t.rows) >= foldRowsMax {
			return
		}
		t.rows[idx] = k
	}
}

// forget drops the rows below position, folded into the map.
func (t *rowTap) forget(position uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if position <= t.floor {
		return
	}
	t.floor = position
	for idx := range t.rows {
		if idx < position {
			delete(t.rows, idx)
		}
	}
}

// take returns the kept row of each of the entries [from, to), by offset
// from from; ok[i] is false where no row is kept.
func (t *rowTap) take(from, to uint64) (rows []keptRow, ok []bool) {
	rows, ok = make([]keptRow, to-from), make([]bool, to-from)
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.rows) == 0 {
		return rows, ok
	}
	for i := from; i < to; i++ {
		rows[i-from], ok[i-from] = t.rows[i]
	}
	return rows, ok
}

// foldStatement is a statement the map folds: its log index, subject
// digest, signer key ID, signed timestamp and entry leaf hash, what
// vindex.Batch.AddStatement takes.
type foldStatement struct {
	index uint64
	d     notarize.Digest
	keyID string
	ts    time.Time
	leaf  vindex.Hash
}

// rowStatement returns the statement that the row of the entry at index
// says the map folds (keptRowOf), if any.
func rowStatement(index uint64, r storage.Row) (foldStatement, bool) {
	k := keptRowOf(r)
	if !k.stmt {
		return foldStatement{}, false
	}
	return k.statement(index), true
}

// foldStatements returns, in log order, the statements among the entries
// [from, to) that the map folds: from the rows the tap keeps (tap may be
// nil), and, for the entries it does not, from their bytes, read and
// checked (mapStatement).
func (l *Ledger) foldStatements(ctx context.Context, tap *rowTap, from, to uint64) ([]foldStatement, error) {
	var rows []keptRow
	var kept []bool
	if tap != nil {
		rows, kept = tap.take(from, to)
	}
	var missing []uint64
	for i := from; i < to; i++ {
		if kept == nil || !kept[i-from] {
			missing = append(missing, i)
		}
	}
	read := make(map[uint64]foldStatement)
	if err := l.store.entries(ctx, missing, func(i uint64, data []byte) bool {
		if v, ok := mapStatementWith(data, l.store.keys); ok {
			read[i] = foldStatement{index: i, d: v.Statement.Digest(), keyID: v.KeyID, ts: v.Statement.Predicate.Timestamp, leaf: vindex.EntryLeafHash(data)}
		}
		return true
	}); err != nil {
		return nil, err
	}
	out := make([]foldStatement, 0, to-from)
	for i := from; i < to; i++ {
		if kept != nil && kept[i-from] {
			if rows[i-from].stmt {
				out = append(out, rows[i-from].statement(i))
			}
			continue
		}
		if s, ok := read[i]; ok {
			out = append(out, s)
		}
	}
	if tap != nil {
		tap.hits.Add(uint64(int(to-from) - len(missing)))
		tap.misses.Add(uint64(len(missing)))
	}
	return out, nil
}
