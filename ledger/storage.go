package ledger

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
)

// backend is one storage choice (Config.Storage): the Tessera driver, the
// digest index and antispam, the checkpoint identity, and how to tell a
// storage outage from a bug.
type backend struct {
	driver tessera.Driver
	store  followedStore
	id     *identity
	// where names the index in error messages.
	where string
	// signers, when not nil, reads the enrolled signers' key IDs from
	// shared storage; the ledger follows it (see followSigners).
	signers func(context.Context) (keySet, error)
	// wrapReader and wrapAdd, when not nil, decorate Tessera's reader and
	// add function (see dbHealth).
	wrapReader func(tessera.LogReader) tessera.LogReader
	wrapAdd    func(tessera.AddFn) tessera.AddFn
	// minTesseraInterval is the smallest checkpoint interval the Tessera
	// driver accepts, when above Config.CheckpointInterval.
	minTesseraInterval time.Duration
	// publish, when not nil, publishes checkpoints every interval until
	// ctx is done, with sign (Tessera's checkpoint publisher); it runs
	// beside the driver's own, slower, publisher.
	publish func(ctx context.Context, sign func(context.Context, uint64, []byte) ([]byte, error), interval time.Duration)
	// close releases what the backend holds once the store is closed; may be nil.
	close func() error
}

// followedStore is a store whose follower reports when Tessera started it.
type followedStore interface {
	store
	// started is closed once the follower runs.
	started() <-chan struct{}
}

// keySet is a set of signer key IDs; empty means writes are open.
type keySet map[string]bool

// openBackend opens the storage cfg names. bg is the context of the
// ledger's background work; ctx bounds start-up.
func openBackend(ctx, bg context.Context, cfg Config) (*backend, error) {
	switch cfg.Storage {
	case StorageMySQL:
		return openMySQL(ctx, bg, cfg)
	case StoragePOSIX:
		return openPOSIX(bg, cfg)
	}
	return nil, fmt.Errorf("unknown storage %q", cfg.Storage)
}

// openPOSIX opens (creating if needed) the ledger in cfg.DataDir.
func openPOSIX(bg context.Context, cfg Config) (*backend, error) {
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, logDirName), 0o700); err != nil {
		return nil, err
	}
	// The index database is opened first: its lock keeps a second process
	// out of the data directory.
	path := filepath.Join(cfg.DataDir, indexFileName)
	st, err := openBoltStore(path, cfg.Logger)
	if err != nil {
		return nil, err
	}
	id, err := loadIdentity(cfg.DataDir, cfg)
	if err != nil {
		return nil, errors.Join(err, st.Close())
	}
	driver, err := posix.New(bg, posix.Config{Path: filepath.Join(cfg.DataDir, logDirName)})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("posix storage: %w", err), st.Close())
	}
	return &backend{driver: driver, store: st, id: id, where: "index " + path}, nil
}
