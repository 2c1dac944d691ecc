package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// MySQL follower tuning. Every instance runs a follower; they take turns
// through the row lock on notarize_follow, and the ones that lose a race
// learn the new position on their next poll.
const (
	mysqlFollowPoll       = 20 * time.Millisecond // how often an instance reads the shared position
	mysqlFollowMaxBackoff = 2 * time.Second       // longest wait between retries after an error
	mysqlFollowMaxBatch   = 4096                  // entries per transaction
	mysqlInsertRows       = 512                   // rows per INSERT statement
)

// mysqlIndex implements indexDB on the ledger's MySQL tables: antispam
// (notarize_identity), the digest index (notarize_digest) and their shared
// position (notarize_follow), all updated in one transaction, so any number
// of instances share one index.
type mysqlIndex struct {
	db     *sql.DB
	health *dbHealth
}

var _ indexDB = (*mysqlIndex)(nil)

// openMySQLStore opens the index on db, whose schema is migrated. The
// database is the backend's to close.
func openMySQLStore(ctx context.Context, db *sql.DB, logger *slog.Logger, health *dbHealth) (*indexStore, error) {
	idx := &mysqlIndex{db: db, health: health}
	next, err := idx.position(ctx)
	if err != nil {
		return nil, err
	}
	tune := followTuning{
		name:       "notarize mysql index",
		poll:       mysqlFollowPoll,
		maxBackoff: mysqlFollowMaxBackoff,
		maxBatch:   mysqlFollowMaxBatch,
		errLevel:   slog.LevelWarn,
	}
	return newIndexStore(idx, logger, tune, next), nil
}

// position implements indexDB.
func (m *mysqlIndex) position(ctx context.Context) (uint64, error) {
	var next uint64
	if err := m.db.QueryRowContext(ctx, "SELECT `next` FROM `notarize_follow` WHERE `id` = 0").Scan(&next); err != nil {
		return 0, fmt.Errorf("read index position: %w", err)
	}
	return next, nil
}

// lookup implements indexDB; a database outage is ErrUnavailable.
func (m *mysqlIndex) lookup(ctx context.Context, digest []byte) ([]uint64, error) {
	out, err := m.queryDigest(ctx, digest)
	if err != nil {
		return nil, m.health.check(ctx, err)
	}
	return out, nil
}

func (m *mysqlIndex) queryDigest(ctx context.Context, digest []byte) ([]uint64, error) {
	rows, err := m.db.QueryContext(ctx, "SELECT `idx` FROM `notarize_digest` WHERE `digest` = ? ORDER BY `idx`", digest)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for rows.Next() {
		var i uint64
		if err := rows.Scan(&i); err != nil {
			_ = rows.Close()
			return nil, err
		}
		out = append(out, i)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, err
	}
	return out, nil
}

// indexOf implements indexDB.
func (m *mysqlIndex) indexOf(ctx context.Context, id []byte) (uint64, bool, error) {
	var idx uint64
	switch err := m.db.QueryRowContext(ctx, "SELECT `idx` FROM `notarize_identity` WHERE `hash` = ?", id).Scan(&idx); {
	case errors.Is(err, sql.ErrNoRows):
		return 0, false, nil
	case err != nil:
		return 0, false, err
	}
	return idx, true, nil
}

// close implements indexDB: the database is the backend's to close.
func (m *mysqlIndex) close() error { return nil }

// write implements indexDB in one transaction. Another instance may have
// moved the position: then it writes nothing and reports false.
func (m *mysqlIndex) write(ctx context.Context, next uint64, batch []followed) (bool, error) {
	tx, err := m.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer func() { _ = tx.Rollback() }()
	var cur uint64
	if err := tx.QueryRowContext(ctx, "SELECT `next` FROM `notarize_follow` WHERE `id` = 0 FOR UPDATE").Scan(&cur); err != nil {
		return false, err
	}
	if cur != next {
		return false, nil
	}
	ids := make([]any, 0, 2*len(batch))
	digests := make([]any, 0, 2*len(batch))
	for i, e := range batch {
		idx := next + uint64(i)
		ids = append(ids, e.id, idx)
		if e.digest != nil {
			digests = append(digests, e.digest, idx)
		}
	}
	// INSERT IGNORE keeps the first index of an identity: entries are
	// written in log order.
	if err := insertRows(ctx, tx, "INSERT IGNORE INTO `notarize_identity` (`hash`, `idx`) VALUES ", ids); err != nil {
		return false, err
	}
	if err := insertRows(ctx, tx, "INSERT IGNORE INTO `notarize_digest` (`digest`, `idx`) VALUES ", digests); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE `notarize_follow` SET `next` = ? WHERE `id` = 0", next+uint64(len(batch))); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, err
	}
	return true, nil
}

// insertRows runs prefix with "(?, ?)" rows for args (two per row), in
// statements of at most mysqlInsertRows rows.
func insertRows(ctx context.Context, tx *sql.Tx, prefix string, args []any) error {
	for len(args) > 0 {
		n := min(len(args)/2, mysqlInsertRows)
		q := prefix + strings.TrimSuffix(strings.Repeat("(?, ?), ", n), ", ")
		if _, err := tx.ExecContext(ctx, q, args[:2*n]...); err != nil {
			return err
		}
		args = args[2*n:]
	}
	return nil
}
