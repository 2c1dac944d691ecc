package mysql

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/transparency-dev/formats/log"
)

// checkpointPublisher publishes checkpoints of the shared tree as often as
// Config.CheckpointInterval allows across all instances, into Tessera's
// Checkpoint table, with Tessera's own checkpoint publisher (signature,
// witnesses). Tessera's MySQL driver publishes at most once a second, in
// practice every other second (its ticker runs at the interval it checks),
// which would make every receipt wait one to two seconds; its publisher
// keeps running beside this one. Publishers serialize on the Checkpoint row
// and read the tree under it, so published sizes never go down.
type checkpointPublisher struct {
	db      *sql.DB
	log     *slog.Logger
	started atomic.Bool
	done    chan struct{} // closed when run returns

	lastNote []byte // the last checkpoint note read, and its size
	lastSize uint64
}

// run publishes until ctx is done.
func (p *checkpointPublisher) run(ctx context.Context, pub storage.Publication) {
	p.started.Store(true)
	defer close(p.done)
	t := time.NewTicker(pub.Interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := p.publish(ctx, pub)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !failing:
			p.log.WarnContext(ctx, "checkpoint publisher", slog.Any("error", err))
			failing = true
		case err == nil && failing:
			p.log.InfoContext(ctx, "checkpoint publisher recovered")
			failing = false
		}
	}
}

// wait returns once run has returned (its context must be done).
func (p *checkpointPublisher) wait() {
	if p.started.Load() {
		<-p.done
	}
}

// publish signs (sign also gathers the witness quorum's cosignatures)
// and stores a checkpoint of the current tree if it grew, or if the
// published one is older than the republish interval, and no instance
// published one in the last 90 % of interval (the slack keeps a ticker at
// the same interval from skipping every other tick).
func (p *checkpointPublisher) publish(ctx context.Context, pub storage.Publication) error {
	var size uint64
	var note []byte
	var publishedAt sql.NullInt64
	err := p.db.QueryRowContext(ctx, "SELECT t.`size`, c.`note`, c.`published_at` FROM `TreeState` t LEFT JOIN `Checkpoint` c ON c.`id` = 0 WHERE t.`id` = 0").Scan(&size, &note, &publishedAt)
	if err != nil {
		return fmt.Errorf("read tree state: %w", err)
	}
	if note != nil {
		if !bytes.Equal(note, p.lastNote) {
			cp, _, _, err := log.ParseCheckpoint(note, pub.Identity.Origin(), pub.Identity.Verifier)
			if err != nil {
				return fmt.Errorf("published checkpoint: %w", err)
			}
			p.lastNote, p.lastSize = note, cp.Size
		}
		stale := pub.Republish > 0 && time.Since(time.UnixMilli(publishedAt.Int64)) >= pub.Republish
		if p.lastSize >= size && !stale {
			return nil
		}
	}
	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("publish checkpoint: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var at int64
	switch err := tx.QueryRowContext(ctx, "SELECT `published_at` FROM `Checkpoint` WHERE `id` = 0 FOR UPDATE").Scan(&at); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return fmt.Errorf("publish checkpoint: %w", err)
	}
	if time.Since(time.UnixMilli(at)) < pub.Interval*9/10 {
		return nil
	}
	var root []byte
	if err := tx.QueryRowContext(ctx, "SELECT `size`, `root` FROM `TreeState` WHERE `id` = 0 FOR UPDATE").Scan(&size, &root); err != nil {
		return fmt.Errorf("publish checkpoint: %w", err)
	}
	raw, err := pub.Sign(ctx, size, root)
	if err != nil {
		return fmt.Errorf("publish checkpoint: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "REPLACE INTO `Checkpoint` (`id`, `note`, `published_at`) VALUES (0, ?, ?)", raw, time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("publish checkpoint: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("publish checkpoint: %w", err)
	}
	return nil
}
