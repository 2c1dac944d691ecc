package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// mapCommitLockWait bounds the wait for another instance's map commitment,
// which holds the lock until its root entry is published.
const mapCommitLockWait = time.Minute

// mapCommitLockName names the lock of this database's map commitments
// (MySQL lock names are server-wide: the database's hash keeps ledgers on
// one server apart).
const mapCommitLockName = "CONCAT('notarize-map:', LEFT(SHA1(DATABASE()), 40))"

// MapCommitLock takes the lock that serializes the verifiable index's root
// commitments across the instances on this database, and returns its
// release. An instance holds it from folding the log up to the latest
// published checkpoint until its root entry is published, so every root
// entry covers all the entries, roots included, before the previous one:
// roots in the log never cover fewer entries than an earlier root, which
// the proxy's map audit would take for misbehaviour.
func (s *Storage) MapCommitLock(ctx context.Context) (release func(), err error) {
	conn, err := s.db.Conn(ctx) // GET_LOCK belongs to a session: one connection throughout
	if err != nil {
		return nil, fmt.Errorf("map commit lock: %w", err)
	}
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK("+mapCommitLockName+", ?)", int(mapCommitLockWait.Seconds())).Scan(&got); err != nil {
		return nil, errors.Join(fmt.Errorf("map commit lock: %w", err), conn.Close())
	}
	if !got.Valid || got.Int64 != 1 {
		return nil, errors.Join(fmt.Errorf("map commit lock: another instance held it for %v", mapCommitLockWait), conn.Close())
	}
	return func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "DO RELEASE_LOCK("+mapCommitLockName+")")
		_ = conn.Close()
	}, nil
}
