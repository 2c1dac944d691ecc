// Package mysql is the ledger's storage driver for MySQL and MariaDB
// (Aurora, CloudSQL): the log through Tessera's MySQL driver, and beside
// its tables the digest index, the key index, duplicate detection, the
// entries' bytes, the enrolled signers and the log's identity, shared by
// any number of ledger instances on one database. Instances serve byte for
// byte the same tiles and checkpoints as a POSIX ledger holding the same
// entries; they share one checkpoint key, made once and given to each.
//
//	st, err := mysql.New(ctx, mysql.Config{DSN: dsn})
//	l, err := ledger.New(ctx, st, ledger.Config{NoteSignerKey: key})
//
// Files: dsn.go (connection settings), schema.go (the tables and their
// migrations, run on start under a named lock), identity.go (the shared
// identity), signers.go (enrolment), publisher.go (checkpoints published
// across instances), health.go (outages as storage.ErrUnavailable),
// index.go (the index tables), mapstore.go (the verifiable index: one map
// shared by every instance, updated under a row lock in log order).
package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/transparency-dev/tessera"
	tmysql "github.com/transparency-dev/tessera/storage/mysql"
)

// Config configures the MySQL storage.
type Config struct {
	// DSN names the database, as a go-sql-driver/mysql DSN:
	// "user:password@tcp(host:3306)/dbname". The database must exist; the
	// driver creates and migrates its tables on start. Unset timeouts
	// default to timeout=5s, readTimeout=30s, writeTimeout=30s.
	DSN string
	// Logger receives the driver's logs (migrations, enrolment,
	// publisher). Nil means slog.Default().
	Logger *slog.Logger
}

// Validate reports whether c can be used. Errors never repeat the DSN,
// which may hold a password.
func (c Config) Validate() error {
	if c.DSN == "" {
		return errors.New("mysql storage: DSN is required")
	}
	if _, err := parseDSN(c.DSN); err != nil {
		return fmt.Errorf("mysql storage: %w", err)
	}
	return nil
}

// tesseraMinInterval is the smallest checkpoint interval Tessera's MySQL
// driver accepts.
const tesseraMinInterval = time.Second

// Storage is the MySQL driver; it implements storage.Storage.
type Storage struct {
	db     *sql.DB
	log    *slog.Logger
	where  string // the redacted DSN
	driver tessera.Driver
	health *dbHealth
	index  *index
	pub    *checkpointPublisher
	maps   *mapStore
}

var _ storage.Storage = (*Storage)(nil)

// New connects to the database cfg.DSN names, migrates the schema and
// opens Tessera's MySQL driver. A database that cannot be reached is
// storage.ErrUnavailable; one migrated by a newer notarize-ledger is
// ErrSchemaTooNew.
func New(ctx context.Context, cfg Config) (_ *Storage, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	mc, err := parseDSN(cfg.DSN)
	if err != nil {
		return nil, err
	}
	connector, err := gomysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(mysqlMaxOpenConns)
	db.SetMaxIdleConns(mysqlMaxIdleConns)
	db.SetConnMaxLifetime(mysqlConnLifetime)
	defer func() {
		if err != nil {
			_ = db.Close()
		}
	}()
	where := RedactDSN(cfg.DSN)
	if err := db.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("%w: connect to mysql %s: %v", storage.ErrUnavailable, where, err)
	}
	if err := migrateSchema(ctx, db, cfg.Logger); err != nil {
		return nil, fmt.Errorf("mysql %s: %w", where, err)
	}
	driver, err := tmysql.New(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("mysql %s: tessera storage: %w", where, err)
	}
	h := &dbHealth{db: db}
	return &Storage{
		db:     db,
		log:    cfg.Logger,
		where:  where,
		driver: driver,
		health: h,
		index:  &index{db: db, health: h},
		pub:    &checkpointPublisher{db: db, log: cfg.Logger, done: make(chan struct{})},
		maps:   &mapStore{db: db, health: h},
	}, nil
}

// DB returns the database, where other parts of the ledger may keep
// tables of their own (named notarize_…, created by their own code).
func (s *Storage) DB() *sql.DB { return s.db }

// Driver implements storage.Storage.
func (s *Storage) Driver() tessera.Driver { return s.driver }

// Index implements storage.Storage.
func (s *Storage) Index() storage.Index { return s.index }

// String implements storage.Storage: the DSN without its password.
func (s *Storage) String() string { return "the digest index in " + s.where }

// MinCheckpointInterval implements storage.Storage.
func (s *Storage) MinCheckpointInterval() time.Duration { return tesseraMinInterval }

// WrapReader implements storage.Storage: outages are
// storage.ErrUnavailable, and partial tiles and bundles are trimmed to
// the size asked for.
func (s *Storage) WrapReader(r tessera.LogReader) tessera.LogReader { return s.health.reader(r) }

// WrapAdd implements storage.Storage: outages are storage.ErrUnavailable.
func (s *Storage) WrapAdd(add tessera.AddFn) tessera.AddFn { return s.health.add(add) }

// PublishCheckpoints implements storage.Storage: Tessera's MySQL driver
// publishes at most once a second, so the ledger's own publisher runs
// beside it (see checkpointPublisher).
func (s *Storage) PublishCheckpoints(ctx context.Context, p storage.Publication) {
	s.pub.run(ctx, p)
}

// Close implements storage.Storage: it waits for the publisher (whose
// context must be done) and closes the database.
func (s *Storage) Close() error {
	s.pub.wait()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close mysql %s: %w", s.where, err)
	}
	return nil
}
