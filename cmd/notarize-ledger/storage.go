package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/storage/mysql"
	"github.com/notarize/docker-notarize/ledger/storage/posix"
)

// Values of --storage.
const (
	storagePOSIX = "posix"
	storageMySQL = "mysql"
)

// indexEngineHelp is --index-engine's usage.
const indexEngineHelp = "storage engine of the digest index and verifiable index of a NEW --data directory: pebble (an LSM: fast ingest on a large ledger) or bbolt; " +
	"default $" + envIndexEngine + ", else pebble. A directory keeps the engine it has (an index deleted to be rebuilt takes its verifiable index's); " +
	"move a bbolt one with notarize-ledger migrate-index --data DIR --to pebble"

// defaultIndexEngine is the engine of a new --data directory when neither
// --index-engine nor $NOTARIZE_LEDGER_INDEX_ENGINE names one. Pebble since
// round seventeen (docs/BENCHMARKS.md): at 1,000,000 entries it ingests at
// the empty ledger's rate, bbolt at half of it. The storage driver's own
// default (posix.Config.NewEngine empty) stays bbolt, for the programs
// that embed it and the ledger's tests, which run both engines.
const defaultIndexEngine = posix.EnginePebble

// envIndexEngine is the default of --index-engine: the engine of a new
// --data directory (posix.Config.NewEngine).
const envIndexEngine = "NOTARIZE_LEDGER_INDEX_ENGINE"

// storageFlags is the storage driver the flags name, checked before
// anything is opened.
type storageFlags struct {
	kind  string
	posix posix.Config
	mysql mysql.Config
}

// storageOf checks the storage flags (the DSN from --mysql-dsn or the
// environment) against the rest of the configuration.
func storageOf(o *options, getenv func(string) string, cfg ledger.Config, logger *slog.Logger) (storageFlags, error) {
	sf := storageFlags{kind: o.storage}
	switch o.storage {
	case storagePOSIX:
		if err := (posix.Config{Dir: o.data, Engine: o.indexEngine}).Validate(); err != nil {
			return sf, fmt.Errorf("--index-engine: %w", err)
		}
		if err := (posix.Config{Dir: o.data, NewEngine: getenv(envIndexEngine)}).Validate(); err != nil {
			return sf, fmt.Errorf("$%s: %w", envIndexEngine, err)
		}
		newEngine, err := newIndexEngine(o, getenv)
		if err != nil {
			return sf, err
		}
		sf.posix = posix.Config{Dir: o.data, Logger: logger, Engine: o.indexEngine, NewEngine: newEngine}
		return sf, nil
	case storageMySQL:
		if o.indexEngine != "" {
			return sf, fmt.Errorf("--index-engine %q: only for --storage posix (mysql keeps its index in the database)", o.indexEngine)
		}
		sf.mysql = mysql.Config{DSN: firstNonEmpty(o.mysqlDSN, getenv(envMySQLDSN)), Logger: logger}
		if err := sf.mysql.Validate(); err != nil {
			return sf, fmt.Errorf("--mysql-dsn: %w", err)
		}
		if cfg.NoteSignerKey == "" {
			return sf, mysql.ErrNoSignerKey
		}
		return sf, nil
	}
	return sf, fmt.Errorf("--storage %q: want %q or %q", o.storage, storagePOSIX, storageMySQL)
}

// newIndexEngine returns the engine of the index if --data has none yet
// (posix.Config.NewEngine). A directory whose verifiable index exists
// (in --map-dir, else in --data) is not new: its index was deleted to be
// rebuilt, and comes back in the map's engine, never in the default's
// (which would leave a directory of two engines that a bbolt ledger's
// operator did not ask for). Otherwise $NOTARIZE_LEDGER_INDEX_ENGINE,
// else defaultIndexEngine.
func newIndexEngine(o *options, getenv func(string) string) (string, error) {
	m, err := ledger.MapEngine(firstNonEmpty(o.mapDir, o.data))
	if err != nil {
		return "", err
	}
	return firstNonEmpty(m, getenv(envIndexEngine), defaultIndexEngine), nil
}

// open constructs the driver.
func (sf storageFlags) open(ctx context.Context) (ledger.Storage, error) {
	if sf.kind == storageMySQL {
		return mysql.New(ctx, sf.mysql)
	}
	return posix.New(ctx, sf.posix)
}

// describe names the storage st opened from sf (and a POSIX directory's
// index engine) and where the verifier key is kept, for the start-up
// banner; no secrets.
func (sf storageFlags) describe(st ledger.Storage) (where, pubNote string) {
	if sf.kind == storageMySQL {
		return "mysql " + mysql.RedactDSN(sf.mysql.DSN), "(shared by every instance on this database)"
	}
	where = "posix " + sf.posix.Dir
	if p, ok := st.(*posix.Storage); ok {
		where += " (index engine " + p.IndexEngine() + ")"
	}
	return where, "(also in " + filepath.Join(sf.posix.Dir, posix.PubFile) + ")"
}
