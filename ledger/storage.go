package ledger

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/notarize/docker-notarize/ledger/storage"
)

// Storage is a constructed storage driver: the Tessera log, the digest
// index and antispam primitives, the log's identity, the enrolled signers,
// an optional checkpoint publisher and health wrapping, and Close. It is
// defined in package storage (ledger/storage), whose doc says what a
// driver must implement; the drivers are ledger/storage/posix (one process,
// one directory) and ledger/storage/mysql (any number of instances on one
// database). New takes ownership of it, as tessera.NewAppender takes a
// tessera.Driver.
type Storage = storage.Storage

// followSigners re-reads the enrolled signers every storage.SignersRefresh
// until ctx is done, so that every instance enforces the storage's set.
func (l *Ledger) followSigners(ctx context.Context, st Storage) {
	t := time.NewTicker(storage.SignersRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		set, err := st.Signers(ctx)
		if err != nil {
			if ctx.Err() == nil {
				l.log.WarnContext(ctx, "enrolled signers not refreshed", slog.Any("error", err))
			}
			continue
		}
		if old := l.enrolled.Load(); old == nil || !maps.Equal(*old, set) {
			l.log.InfoContext(ctx, "enrolled signers changed", slog.Int("count", len(set)), slog.Any("key_ids", slices.Sorted(maps.Keys(set))))
			l.enrolled.Store(&set)
		}
	}
}
