package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/notarize/docker-notarize/ledger/storage"
)

// mapReadIDs and mapWriteRows bound the node IDs of one SELECT and the rows
// of one INSERT or DELETE of the map's nodes.
const (
	mapReadIDs   = 1024
	mapWriteRows = 512
)

// mapStore implements storage.MapStore on notarize_map_node (nodes by
// vindex.NodeID bytes) and notarize_map_state (one row: the position and
// the newest committed root), so that every instance on the database
// serves and advances one map. The update lock is the state row, locked
// with FOR UPDATE NOWAIT in the transaction that stores the commit: an
// instance that dies or loses its connection mid-update loses the lock and
// its uncommitted writes together. The commit's UPDATE checks the position
// it was folded from, so updates are ordered by log index and no range is
// applied twice.
type mapStore struct {
	db     *sql.DB
	health *dbHealth
}

var _ storage.MapStore = (*mapStore)(nil)

// Map implements storage.Storage: the verifiable index lives in the
// database, one map for every instance.
func (s *Storage) Map() storage.MapStore { return s.maps }

// queryRower is a *sql.DB or a *sql.Tx.
type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

const mapStateQuery = "SELECT `position`, `root_index`, `root_entry` FROM `notarize_map_state` WHERE `id` = 0"

func readMapState(ctx context.Context, q queryRower, suffix string) (storage.MapState, error) {
	var st storage.MapState
	var rootIndex sql.Null[uint64]
	var rootEntry []byte
	if err := q.QueryRowContext(ctx, mapStateQuery+suffix).Scan(&st.Position, &rootIndex, &rootEntry); err != nil {
		return st, err
	}
	if rootIndex.Valid {
		st.Root = &storage.MapRoot{Index: rootIndex.V, Entry: rootEntry}
	}
	return st, nil
}

// MapState implements storage.MapStore; a database outage is ErrUnavailable.
func (m *mapStore) MapState(ctx context.Context) (storage.MapState, error) {
	st, err := readMapState(ctx, m.db, "")
	if err != nil {
		return st, fmt.Errorf("read map state: %w", m.health.check(ctx, err))
	}
	return st, nil
}

// MapView implements storage.MapStore: one read-only REPEATABLE READ
// transaction, whose snapshot is taken by its first read (the state).
func (m *mapStore) MapView(ctx context.Context, fn func(storage.MapState, storage.MapNodeReader) error) error {
	tx, err := m.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("read map: %w", m.health.check(ctx, err))
	}
	defer func() { _ = tx.Rollback() }()
	st, err := readMapState(ctx, tx, "")
	if err != nil {
		return fmt.Errorf("read map state: %w", m.health.check(ctx, err))
	}
	if err := fn(st, txNodes{tx: tx, h: m.health}); err != nil {
		return err
	}
	return nil
}

// lockedState begins a transaction and locks the state row in it, at once
// or ErrMapBusy. The transaction is not bound to ctx's cancellation (its
// statements are): database/sql would otherwise roll it back, releasing
// the lock, the moment ctx ends, while the update still runs — with its
// map-root entry handed to the log but not yet sequenced, so that another
// instance could take the lock, not wait for that root, and commit one
// covering more entries before it (red team 4). The lock is released
// when the update returns, by the caller's Commit or Rollback.
func (m *mapStore) lockedState(ctx context.Context) (*sql.Tx, storage.MapState, error) {
	tx, err := m.db.BeginTx(context.WithoutCancel(ctx), &sql.TxOptions{Isolation: sql.LevelRepeatableRead})
	if err != nil {
		return nil, storage.MapState{}, fmt.Errorf("lock map: %w", m.health.check(ctx, err))
	}
	st, err := readMapState(ctx, tx, " FOR UPDATE NOWAIT")
	if err != nil {
		_ = tx.Rollback()
		if lockBusy(err) {
			return nil, st, fmt.Errorf("lock map: %w", storage.ErrMapBusy)
		}
		return nil, st, fmt.Errorf("lock map: %w", m.health.check(ctx, err))
	}
	return tx, st, nil
}

// lockBusy reports whether err is NOWAIT's refusal of a locked row:
// MariaDB's lock wait timeout (1205), MySQL 8's ER_LOCK_NOWAIT (3572).
func lockBusy(err error) bool {
	me, ok := errors.AsType[*gomysql.MySQLError](err)
	return ok && (me.Number == 1205 || me.Number == 3572)
}

// MapUpdate implements storage.MapStore.
func (m *mapStore) MapUpdate(ctx context.Context, fn func(storage.MapState, storage.MapNodeReader) (*storage.MapCommit, error)) error {
	tx, st, err := m.lockedState(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	c, err := fn(st, txNodes{tx: tx, h: m.health})
	if err != nil || c == nil {
		if err == nil {
			err = tx.Commit()
		}
		return err
	}
	if err := m.store(ctx, tx, c); err != nil {
		if errors.Is(err, storage.ErrMapStale) {
			return err
		}
		return fmt.Errorf("store map at %d: %w", c.Position, m.health.check(ctx, err))
	}
	return nil
}

// store writes c in tx and commits it, if the stored position is still
// c.From (checked first, by the UPDATE of the state row).
func (m *mapStore) store(ctx context.Context, tx *sql.Tx, c *storage.MapCommit) error {
	if c.Position <= c.From {
		return fmt.Errorf("%w: commit of [%d, %d)", storage.ErrMapStale, c.From, c.Position)
	}
	q := "UPDATE `notarize_map_state` SET `position` = ? WHERE `id` = 0 AND `position` = ?"
	args := []any{c.Position, c.From}
	if c.Root != nil {
		q = "UPDATE `notarize_map_state` SET `position` = ?, `root_index` = ?, `root_entry` = ? WHERE `id` = 0 AND `position` = ?"
		args = []any{c.Position, c.Root.Index, c.Root.Entry, c.From}
	}
	res, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		if err != nil {
			return err
		}
		return fmt.Errorf("%w: commit of [%d, %d) refused: the map is no longer at %d", storage.ErrMapStale, c.From, c.Position, c.From)
	}
	var puts, dels []any
	for _, w := range c.Writes {
		if w.Delete {
			dels = append(dels, w.ID)
		} else {
			puts = append(puts, w.ID, w.Node)
		}
	}
	for len(puts) > 0 {
		n := min(len(puts)/2, mapWriteRows)
		q := "INSERT INTO `notarize_map_node` (`id`, `node`) VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?), ", n), ", ") +
			" ON DUPLICATE KEY UPDATE `node` = VALUES(`node`)"
		if _, err := tx.ExecContext(ctx, q, puts[:2*n]...); err != nil {
			return err
		}
		puts = puts[2*n:]
	}
	for len(dels) > 0 {
		n := min(len(dels), mapWriteRows)
		q := "DELETE FROM `notarize_map_node` WHERE `id` IN (" + placeholders(n) + ")"
		if _, err := tx.ExecContext(ctx, q, dels[:n]...); err != nil {
			return err
		}
		dels = dels[n:]
	}
	return tx.Commit()
}

// MapReset implements storage.MapStore: one transaction under the update
// lock deletes every node and the root, and moves the position to 0.
func (m *mapStore) MapReset(ctx context.Context) error {
	tx, _, err := m.lockedState(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	for _, q := range []string{
		"DELETE FROM `notarize_map_node`",
		"UPDATE `notarize_map_state` SET `position` = 0, `root_index` = NULL, `root_entry` = NULL WHERE `id` = 0",
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("reset map: %w", m.health.check(ctx, err))
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("reset map: %w", m.health.check(ctx, err))
	}
	return nil
}

// txNodes reads map nodes in a transaction.
type txNodes struct {
	tx *sql.Tx
	h  *dbHealth
}

// MapNodes implements storage.MapNodeReader, mapReadIDs IDs per SELECT.
func (r txNodes) MapNodes(ctx context.Context, ids [][]byte) ([][]byte, error) {
	out := make([][]byte, len(ids))
	at := make(map[string][]int, len(ids))
	for i, id := range ids {
		at[string(id)] = append(at[string(id)], i)
	}
	for from := 0; from < len(ids); from += mapReadIDs {
		part := ids[from:min(len(ids), from+mapReadIDs)]
		args := make([]any, len(part))
		for i, id := range part {
			args[i] = id
		}
		if err := r.read(ctx, args, at, out); err != nil {
			return nil, fmt.Errorf("read map nodes: %w", r.h.check(ctx, err))
		}
	}
	return out, nil
}

func (r txNodes) read(ctx context.Context, args []any, at map[string][]int, out [][]byte) error {
	rows, err := r.tx.QueryContext(ctx, "SELECT `id`, `node` FROM `notarize_map_node` WHERE `id` IN ("+placeholders(len(args))+")", args...)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id, node []byte
		if err := rows.Scan(&id, &node); err != nil {
			_ = rows.Close()
			return err
		}
		for _, i := range at[string(id)] {
			out[i] = node
		}
	}
	return errors.Join(rows.Err(), rows.Close())
}

// placeholders returns n comma-separated question marks.
func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}
