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
const indexEngineHelp = "storage engine of the digest index and verifiable index of a NEW --data directory: bbolt or pebble (an LSM: faster ingest on a large ledger); " +
	"default $" + envIndexEngine + ", else bbolt. A directory keeps the engine it has; move one with notarize-ledger migrate-index --data DIR --to pebble"

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
		sf.posix = posix.Config{Dir: o.data, Logger: logger, Engine: o.indexEngine, NewEngine: getenv(envIndexEngine)}
		if err := (posix.Config{Dir: o.data, Engine: o.indexEngine}).Validate(); err != nil {
			return sf, fmt.Errorf("--index-engine: %w", err)
		}
		if err := sf.posix.Validate(); err != nil {
			return sf, fmt.Errorf("$%s: %w", envIndexEngine, err)
		}
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

// open constructs the driver.
func (sf storageFlags) open(ctx context.Context) (ledger.Storage, error) {
	if sf.kind == storageMySQL {
		return mysql.New(ctx, sf.mysql)
	}
	return posix.New(ctx, sf.posix)
}

// describe names the storage and where the verifier key is kept, for the
// start-up banner; no secrets.
func (sf storageFlags) describe() (where, pubNote string) {
	if sf.kind == storageMySQL {
		return "mysql " + mysql.RedactDSN(sf.mysql.DSN), "(shared by every instance on this database)"
	}
	return "posix " + sf.posix.Dir, "(also in " + filepath.Join(sf.posix.Dir, posix.PubFile) + ")"
}
