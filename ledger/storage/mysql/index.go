package mysql

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/notarize/docker-notarize/ledger/storage"
)

// MySQL follower tuning. Every instance runs a follower; they take turns
// through the row lock on notarize_follow, and the ones that lose a race
// learn the new position on their next poll.
const (
	mysqlFollowPoll       = 20 * time.Millisecond // how often an instance reads the shared position
	mysqlFollowMaxBackoff = 2 * time.Second       // longest wait between retries after an error
	mysqlFollowMaxBatch   = 4096                  // entries per transaction
	mysqlFollowMaxBytes   = 8 << 20               // entry bytes per transaction (InnoDB bounds BLOB bytes per transaction by the redo log)
	mysqlInsertRows       = 512                   // rows per INSERT statement
	mysqlInsertDataBytes  = 2 << 20               // entry bytes per INSERT statement, well under max_allowed_packet
	mysqlReadEntries      = 64                    // entries per SELECT of entry bytes
)

// index implements storage.Index on the ledger's MySQL tables: antispam
// (notarize_statement), the digest index (notarize_entry), the key index
// (notarize_key_current), the entries' bytes (notarize_entry_data) and
// their shared position (notarize_follow row mysqlFollowRow), all updated
// in one transaction, so any number of instances share one index.
type index struct {
	db     *sql.DB
	health *dbHealth
}

var _ storage.Index = (*index)(nil)

// Tuning implements storage.Index.
func (m *index) Tuning() storage.FollowTuning {
	return storage.FollowTuning{
		Name:       "notarize mysql index",
		Poll:       mysqlFollowPoll,
		MaxBackoff: mysqlFollowMaxBackoff,
		MaxBatch:   mysqlFollowMaxBatch,
		MaxBytes:   mysqlFollowMaxBytes,
		ErrLevel:   slog.LevelWarn,
	}
}

// Position implements storage.Index.
func (m *index) Position(ctx context.Context) (uint64, error) {
	var next uint64
	if err := m.db.QueryRowContext(ctx, "SELECT `next` FROM `notarize_follow` WHERE `id` = "+mysqlFollowRow).Scan(&next); err != nil {
		return 0, fmt.Errorf("read index position: %w", m.health.check(ctx, err))
	}
	return next, nil
}

// Page implements storage.Index; a database outage is ErrUnavailable. A filtered
// page is one primary-key range per key, each of at most n rows.
func (m *index) Page(ctx context.Context, digest []byte, keyIDs [][]byte, from, below uint64, n int) ([]uint64, error) {
	var q string
	var args []any
	if len(keyIDs) == 0 {
		q = "SELECT `idx` FROM `notarize_entry` WHERE `digest` = ? AND `idx` >= ? AND `idx` < ? ORDER BY `idx` LIMIT ?"
		args = []any{digest, from, below, n}
	} else {
		parts := make([]string, len(keyIDs))
		for i, k := range keyIDs {
			parts[i] = "(SELECT `idx` FROM `notarize_entry` WHERE `digest` = ? AND `key_id` = ? AND `idx` >= ? AND `idx` < ? ORDER BY `idx` LIMIT ?)"
			args = append(args, digest, k, from, below, n)
		}
		q = strings.Join(parts, " UNION ALL ")
	}
	out, err := m.queryIndices(ctx, q, args...)
	if err != nil {
		return nil, m.health.check(ctx, err)
	}
	slices.Sort(out)
	return out[:min(len(out), n)], nil
}

// Current implements storage.Index: one by_time range per key, read backwards.
func (m *index) Current(ctx context.Context, digest []byte, keyIDs [][]byte, below uint64) ([]uint64, error) {
	parts := make([]string, len(keyIDs))
	args := make([]any, 0, 3*len(keyIDs))
	for i, k := range keyIDs {
		parts[i] = "(SELECT `idx` FROM `notarize_entry` WHERE `digest` = ? AND `key_id` = ? AND `idx` < ? ORDER BY `ts_sec` DESC, `ts_nsec` DESC, `idx` DESC LIMIT 1)"
		args = append(args, digest, k, below)
	}
	out, err := m.queryIndices(ctx, strings.Join(parts, " UNION ALL "), args...)
	if err != nil {
		return nil, m.health.check(ctx, err)
	}
	return out, nil
}

// queryIndices runs q, whose rows are one log index each.
func (m *index) queryIndices(ctx context.Context, q string, args ...any) ([]uint64, error) {
	rows, err := m.db.QueryContext(ctx, q, args...)
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

// Latest implements storage.Index: the last by_time row of the key; a database
// outage is ErrUnavailable.
func (m *index) Latest(ctx context.Context, digest, keyID []byte) (storage.Stamp, byte, bool, error) {
	var sec int64
	var nsec uint32
	var status byte
	err := m.db.QueryRowContext(ctx, "SELECT `ts_sec`, `ts_nsec`, `status` FROM `notarize_entry` WHERE `digest` = ? AND `key_id` = ? "+
		"ORDER BY `ts_sec` DESC, `ts_nsec` DESC, `idx` DESC LIMIT 1", digest, keyID).Scan(&sec, &nsec, &status)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return storage.Stamp{}, 0, false, nil
	case err != nil:
		return storage.Stamp{}, 0, false, m.health.check(ctx, err)
	}
	return storage.StampOf(time.Unix(sec, int64(nsec))), status, true, nil
}

// IndexOf implements storage.Index; a database outage is ErrUnavailable.
func (m *index) IndexOf(ctx context.Context, id []byte) (uint64, bool, error) {
	var idx uint64
	switch err := m.db.QueryRowContext(ctx, "SELECT `idx` FROM `notarize_statement` WHERE `hash` = ?", id).Scan(&idx); {
	case errors.Is(err, sql.ErrNoRows):
		return 0, false, nil
	case err != nil:
		return 0, false, m.health.check(ctx, err)
	}
	return idx, true, nil
}

// Entries implements storage.Index: primary-key reads of mysqlReadEntries rows
// at a time, so that a caller that stops early reads little past it; a
// database outage is ErrUnavailable.
func (m *index) Entries(ctx context.Context, indices []uint64, take func(i uint64, data []byte) bool) error {
	for len(indices) > 0 {
		chunk := indices[:min(len(indices), mysqlReadEntries)]
		indices = indices[len(chunk):]
		args := make([]any, len(chunk))
		for k, i := range chunk {
			args[k] = i
		}
		q := "SELECT `idx`, `data` FROM `notarize_entry_data` WHERE `idx` IN (" +
			strings.TrimSuffix(strings.Repeat("?, ", len(chunk)), ", ") + ") ORDER BY `idx`"
		more, err := m.readEntries(ctx, chunk, q, args, take)
		if err != nil {
			return m.health.check(ctx, err)
		}
		if !more {
			return nil
		}
	}
	return nil
}

// readEntries runs q, whose rows are the (idx, data) of want in order, and
// hands them to take; more is false once take returned false.
func (m *index) readEntries(ctx context.Context, want []uint64, q string, args []any, take func(i uint64, data []byte) bool) (more bool, err error) {
	rows, err := m.db.QueryContext(ctx, q, args...)
	if err != nil {
		return false, err
	}
	defer func() { err = errors.Join(err, rows.Close()) }()
	k := 0
	for rows.Next() {
		var i uint64
		var data []byte
		if err := rows.Scan(&i, &data); err != nil {
			return false, err
		}
		if k >= len(want) || i != want[k] {
			break
		}
		k++
		if !take(i, data) {
			return false, nil
		}
	}
	if err := rows.Err(); err != nil {
		return false, err
	}
	if k < len(want) {
		return false, fmt.Errorf("no bytes stored for entry %d", want[k])
	}
	return true, nil
}

// Claim implements storage.Index with a row of notarize_claim: inserted, or
// taken over once older than storage.ClaimStale. Only row counts of an INSERT
// IGNORE and of an UPDATE whose condition is the staleness are read, so
// the DSN's clientFoundRows does not change the answer.
func (m *index) Claim(ctx context.Context, id []byte) (bool, error) {
	now := time.Now().UnixMilli()
	res, err := m.db.ExecContext(ctx, "INSERT IGNORE INTO `notarize_claim` (`hash`, `at`) VALUES (?, ?)", id, now)
	if err != nil {
		return false, m.health.check(ctx, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return n == 1, err
	}
	res, err = m.db.ExecContext(ctx, "UPDATE `notarize_claim` SET `at` = ? WHERE `hash` = ? AND `at` < ?", now, id, now-storage.ClaimStale.Milliseconds())
	if err != nil {
		return false, m.health.check(ctx, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Release implements storage.Index.
func (m *index) Release(ctx context.Context, id []byte) error {
	if _, err := m.db.ExecContext(ctx, "DELETE FROM `notarize_claim` WHERE `hash` = ?", id); err != nil {
		return m.health.check(ctx, err)
	}
	return nil
}

// Write implements storage.Index in one transaction; a database outage is
// ErrUnavailable. Another instance may have moved the position: then it
// writes nothing and reports false.
func (m *index) Write(ctx context.Context, next uint64, batch []storage.Row) (bool, error) {
	won, err := m.write(ctx, next, batch)
	return won, m.health.check(ctx, err)
}

// write is Write, its errors as the database gave them.
func (m *index) write(ctx context.Context, next uint64, batch []storage.Row) (bool, error) {
	tx, err := m.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer func() { _ = tx.Rollback() }()
	var cur uint64
	if err := tx.QueryRowContext(ctx, "SELECT `next` FROM `notarize_follow` WHERE `id` = "+mysqlFollowRow+" FOR UPDATE").Scan(&cur); err != nil {
		return false, err
	}
	if cur != next {
		return false, nil
	}
	ids := make([]any, 0, 2*len(batch))
	entries := make([]any, 0, 6*len(batch))
	data := make([]any, 0, 2*len(batch))
	keys := make([]any, 0, 5*len(batch))
	for i, e := range batch {
		idx := next + uint64(i)
		ids = append(ids, e.ID, idx)
		data = append(data, idx, e.Data)
		if e.Digest != nil {
			entries = append(entries, e.Digest, e.KeyID, idx, e.Stamp.Seconds(), e.Stamp.Nanoseconds(), e.Status)
			keys = append(keys, e.KeyID, e.Digest, keyOrder(e.Stamp, idx), idx, e.Status)
		}
	}
	// INSERT IGNORE keeps the first index of an identity: entries are
	// written in log order.
	if err := insertRows(ctx, tx, "INSERT IGNORE INTO `notarize_statement` (`hash`, `idx`) VALUES ", 2, ids, ""); err != nil {
		return false, err
	}
	if err := insertRows(ctx, tx, "INSERT IGNORE INTO `notarize_entry` (`digest`, `key_id`, `idx`, `ts_sec`, `ts_nsec`, `status`) VALUES ", 6, entries, ""); err != nil {
		return false, err
	}
	// The key index keeps, per (key, digest), the row of the greatest
	// (stamp, index): ord is their concatenation, compared as bytes. The
	// assignments read the old ord, which is assigned last.
	if err := insertRows(ctx, tx, "INSERT INTO `notarize_key_current` (`key_id`, `digest`, `ord`, `idx`, `status`) VALUES ", 5, keys,
		" ON DUPLICATE KEY UPDATE `idx` = IF(VALUES(`ord`) > `ord`, VALUES(`idx`), `idx`), "+
			"`status` = IF(VALUES(`ord`) > `ord`, VALUES(`status`), `status`), `ord` = GREATEST(`ord`, VALUES(`ord`))"); err != nil {
		return false, err
	}
	if err := insertData(ctx, tx, data); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE `notarize_follow` SET `next` = ? WHERE `id` = "+mysqlFollowRow, next+uint64(len(batch))); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, err
	}
	return true, nil
}

// insertData inserts the (idx, data) pairs of args into
// notarize_entry_data, in statements of at most mysqlInsertRows rows and
// about mysqlInsertDataBytes bytes. INSERT IGNORE: a rebuild rewrites the
// same bytes.
func insertData(ctx context.Context, tx *sql.Tx, args []any) error {
	for len(args) > 0 {
		n, size := 0, 0
		for 2*n < len(args) && n < mysqlInsertRows && (n == 0 || size+len(args[2*n+1].([]byte)) <= mysqlInsertDataBytes) {
			size += len(args[2*n+1].([]byte))
			n++
		}
		if err := insertRows(ctx, tx, "INSERT IGNORE INTO `notarize_entry_data` (`idx`, `data`) VALUES ", 2, args[:2*n], ""); err != nil {
			return err
		}
		args = args[2*n:]
	}
	return nil
}

// insertRows runs prefix with "(?, …)" rows of cols values for args and
// suffix, in statements of at most mysqlInsertRows rows.
func insertRows(ctx context.Context, tx *sql.Tx, prefix string, cols int, args []any, suffix string) error {
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + "), "
	for len(args) > 0 {
		n := min(len(args)/cols, mysqlInsertRows)
		q := prefix + strings.TrimSuffix(strings.Repeat(row, n), ", ") + suffix
		if _, err := tx.ExecContext(ctx, q, args[:cols*n]...); err != nil {
			return err
		}
		args = args[cols*n:]
	}
	return nil
}

// keyOrder is the ord column of notarize_key_current: the stamp and the
// big-endian index, which compare as bytes as storage.Newer does.
func keyOrder(s storage.Stamp, idx uint64) []byte {
	return binary.BigEndian.AppendUint64(s[:], idx)
}

// KeyDigests implements storage.Index: one primary-key range of the key's
// rows of notarize_key_current; a database outage is ErrUnavailable.
func (m *index) KeyDigests(ctx context.Context, keyID, after []byte, n int) ([]storage.KeyRow, error) {
	if after == nil {
		after = []byte{}
	}
	rows, err := m.db.QueryContext(ctx, "SELECT `digest`, `ord`, `idx`, `status` FROM `notarize_key_current` "+
		"WHERE `key_id` = ? AND `digest` > ? ORDER BY `digest` LIMIT ?", keyID, after, n)
	if err != nil {
		return nil, m.health.check(ctx, err)
	}
	var out []storage.KeyRow
	for rows.Next() {
		var r storage.KeyRow
		var ord []byte
		if err := rows.Scan(&r.Digest, &ord, &r.Index, &r.Status); err != nil {
			_ = rows.Close()
			return nil, m.health.check(ctx, err)
		}
		if len(ord) != len(r.Stamp)+8 || len(r.Digest) != 32 {
			_ = rows.Close()
			return nil, fmt.Errorf("corrupt key index row for digest %x", r.Digest)
		}
		copy(r.Stamp[:], ord)
		out = append(out, r)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, m.health.check(ctx, err)
	}
	return out, nil
}
