package ledger

import (
	"bytes"
	"context"
	"crypto"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/tessera"
	tmysql "github.com/transparency-dev/tessera/storage/mysql"
)

// MySQL connection defaults, applied when the DSN does not set them.
const (
	mysqlDialTimeout  = 5 * time.Second  // DSN timeout
	mysqlIOTimeout    = 30 * time.Second // DSN readTimeout and writeTimeout
	mysqlMaxOpenConns = 64
	mysqlMaxIdleConns = 16
	mysqlConnLifetime = 5 * time.Minute // lets a pool follow a failover (Aurora, CloudSQL)
	mysqlSchemaLock   = 60 * time.Second
	signersRefresh    = 5 * time.Second // how often instances re-read the enrolled signers
	pingTimeout       = 2 * time.Second
	downMemo          = 500 * time.Millisecond // how long a failed ping answers for the database
)

// schemaVersion is the version of the ledger's tables this binary uses;
// notarize_schema holds the database's. migrations()[v] goes from v to v+1.
const schemaVersion = 3

// migrations returns, for each schema version v, the statements that take
// a database from v to v+1. Every statement is idempotent, so a migration
// interrupted half-way is simply run again.
func migrations() [][]string {
	return [][]string{
		append(tesseraSchema(), notarizeSchemaV1()...),
		notarizeSchemaV2(),
		notarizeSchemaV3(),
	}
}

// tesseraSchema is storage/mysql/schema.sql of Tessera v1.0.4 (the module
// this binary is built with), one statement per element, comments dropped.
// TestTesseraSchemaMatchesModule checks it against the module's file.
func tesseraSchema() []string {
	return []string{
		"CREATE TABLE IF NOT EXISTS Tessera (\n  `id`                   TINYINT UNSIGNED NOT NULL,\n  `compatibilityVersion` BIGINT UNSIGNED NOT NULL,\n  PRIMARY KEY (`id`)\n)",
		"INSERT IGNORE INTO Tessera (`id`, `compatibilityVersion`) VALUES (0, 1)",
		"CREATE TABLE IF NOT EXISTS `Checkpoint` (\n  `id`    TINYINT UNSIGNED NOT NULL,\n  `note`  MEDIUMBLOB NOT NULL,\n  `published_at` BIGINT NOT NULL,\n  PRIMARY KEY(`id`)\n)",
		"CREATE TABLE IF NOT EXISTS `TreeState` (\n  `id`    TINYINT UNSIGNED NOT NULL,\n  `size`  BIGINT UNSIGNED NOT NULL,\n  `root`  TINYBLOB NOT NULL,\n  PRIMARY KEY(`id`)\n)",
		"CREATE TABLE IF NOT EXISTS `Subtree` (\n  `level` TINYINT UNSIGNED NOT NULL,\n  `index` BIGINT UNSIGNED NOT NULL,\n  `nodes` MEDIUMBLOB NOT NULL,\n  PRIMARY KEY(`level`, `index`)\n)",
		"CREATE TABLE IF NOT EXISTS `TiledLeaves` (\n  `tile_index` BIGINT UNSIGNED NOT NULL,\n  `size`       SMALLINT UNSIGNED NOT NULL,\n  `data`       LONGBLOB NOT NULL,\n  PRIMARY KEY(`tile_index`)\n)",
	}
}

// notarizeSchemaV1 is the ledger's own tables, beside Tessera's.
func notarizeSchemaV1() []string {
	return []string{
		// The log's identity, written by the first instance, checked by all.
		"CREATE TABLE IF NOT EXISTS `notarize_meta` (`name` VARCHAR(64) NOT NULL, `value` BLOB NOT NULL, PRIMARY KEY (`name`))",
		// Antispam: entry identity hash → first log index.
		"CREATE TABLE IF NOT EXISTS `notarize_identity` (`hash` VARBINARY(64) NOT NULL, `idx` BIGINT UNSIGNED NOT NULL, PRIMARY KEY (`hash`))",
		// Digest index: statement subject sha256 → log indices.
		"CREATE TABLE IF NOT EXISTS `notarize_digest` (`digest` BINARY(32) NOT NULL, `idx` BIGINT UNSIGNED NOT NULL, PRIMARY KEY (`digest`, `idx`))",
		// How many log entries, from 0, both tables above cover.
		"CREATE TABLE IF NOT EXISTS `notarize_follow` (`id` TINYINT UNSIGNED NOT NULL, `next` BIGINT UNSIGNED NOT NULL, PRIMARY KEY (`id`))",
		"INSERT IGNORE INTO `notarize_follow` (`id`, `next`) VALUES (0, 0)",
		// Enrolled writers; empty means open writes.
		"CREATE TABLE IF NOT EXISTS `notarize_signer` (`key_id` CHAR(64) NOT NULL, `public_key` BLOB NOT NULL, PRIMARY KEY (`key_id`))",
		// The empty tree, as Tessera's maybeInitTree writes it (root =
		// SHA-256 of nothing, RFC 6962). Written here, under the schema
		// lock: instances starting together would otherwise deadlock in
		// maybeInitTree's SELECT … FOR UPDATE of the missing row.
		"INSERT IGNORE INTO `TreeState` (`id`, `size`, `root`) VALUES (0, 0, X'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')",
	}
}

// notarizeSchemaV2 indexes statements by (digest, key ID) with their signed
// timestamps, and detects duplicates by statement identity (key ID and
// signed payload) instead of the entry's bytes. The new index is built
// from the log by the follower, from its own position (row 1 of
// notarize_follow, starting at 0): the follower is idempotent. Version 1's
// notarize_identity, notarize_digest and position row 0 are no longer
// read; they are left for instances of the previous version still running
// during a rolling upgrade, and may be dropped once none is.
func notarizeSchemaV2() []string {
	return []string{
		// Antispam: statement identity → first log index.
		"CREATE TABLE IF NOT EXISTS `notarize_statement` (`hash` BINARY(32) NOT NULL, `idx` BIGINT UNSIGNED NOT NULL, PRIMARY KEY (`hash`))",
		// Digest index: one row per verified entry. The primary key serves
		// lookups filtered by key, by_digest unfiltered ones, by_time the
		// current statement of a key.
		"CREATE TABLE IF NOT EXISTS `notarize_entry` (" +
			"`digest` BINARY(32) NOT NULL, `key_id` BINARY(32) NOT NULL, `idx` BIGINT UNSIGNED NOT NULL, " +
			"`ts_sec` BIGINT NOT NULL, `ts_nsec` INT UNSIGNED NOT NULL, `status` TINYINT UNSIGNED NOT NULL, " +
			"PRIMARY KEY (`digest`, `key_id`, `idx`), KEY `by_digest` (`digest`, `idx`), " +
			"KEY `by_time` (`digest`, `key_id`, `ts_sec`, `ts_nsec`, `idx`))",
		// Appends in progress, by statement identity, so that instances
		// receiving the same statement at once append it once.
		"CREATE TABLE IF NOT EXISTS `notarize_claim` (`hash` BINARY(32) NOT NULL, `at` BIGINT NOT NULL, PRIMARY KEY (`hash`))",
		// How many log entries, from 0, notarize_statement and notarize_entry cover.
		"INSERT IGNORE INTO `notarize_follow` (`id`, `next`) VALUES (1, 0)",
	}
}

// notarizeSchemaV3 keeps every entry's bytes by log index, so that a lookup
// reads exactly the entries it answers with and never an entry bundle
// (whose other 255 entries anyone may fill). The follower rebuilds the
// index from the log from a new position (row 2 of notarize_follow,
// starting at 0), writing the bytes beside the rows of version 2, which
// it re-inserts with INSERT IGNORE. Version 2's position row 1 is left for
// instances of the previous version still running during a rolling
// upgrade.
func notarizeSchemaV3() []string {
	return []string{
		// Entry bytes: log index → the entry as logged (at most MaxLeafSize).
		"CREATE TABLE IF NOT EXISTS `notarize_entry_data` (`idx` BIGINT UNSIGNED NOT NULL, `data` MEDIUMBLOB NOT NULL, PRIMARY KEY (`idx`))",
		// How many log entries, from 0, notarize_statement, notarize_entry and notarize_entry_data cover.
		"INSERT IGNORE INTO `notarize_follow` (`id`, `next`) VALUES (" + mysqlFollowRow + ", 0)",
	}
}

// mysqlFollowRow is the notarize_follow row of the index this binary
// writes (schema version 3; version 2's was row 1).
const mysqlFollowRow = "2"

// ErrSchemaTooNew is returned (wrapped) by New when the database was
// migrated by a newer notarize-ledger than this one.
var ErrSchemaTooNew = errors.New("database schema is newer than this notarize-ledger")

// parseDSN parses a go-sql-driver/mysql DSN and fills in the ledger's
// defaults. Errors never repeat the DSN, which may hold a password.
func parseDSN(dsn string) (*mysql.Config, error) {
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysql DSN: %w", err)
	}
	if c.DBName == "" {
		return nil, errors.New("mysql DSN: no database name (want user:password@tcp(host:3306)/dbname)")
	}
	if c.Timeout == 0 {
		c.Timeout = mysqlDialTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = mysqlIOTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = mysqlIOTimeout
	}
	// After a failover the old primary may answer read-only: drop such
	// connections instead of failing every write on them.
	c.RejectReadOnly = true
	return c, nil
}

// RedactDSN returns dsn without its password, for logs: "user@tcp(host:3306)/db".
func RedactDSN(dsn string) string {
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return fmt.Sprintf("%s@%s(%s)/%s", c.User, c.Net, c.Addr, c.DBName)
}

// openMySQL opens the ledger in the MySQL database cfg.MySQLDSN names:
// it migrates the schema, checks the shared identity, stores the enrolled
// signers if cfg has any, and opens Tessera's MySQL driver and the index.
func openMySQL(ctx, bg context.Context, cfg Config) (_ *backend, err error) {
	mc, err := parseDSN(cfg.MySQLDSN)
	if err != nil {
		return nil, err
	}
	connector, err := mysql.NewConnector(mc)
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
	where := RedactDSN(cfg.MySQLDSN)
	if err := db.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("%w: connect to mysql %s: %v", ErrUnavailable, where, err)
	}
	if err := migrateSchema(ctx, db, cfg.Logger); err != nil {
		return nil, fmt.Errorf("mysql %s: %w", where, err)
	}
	id, err := loadSharedIdentity(ctx, db, cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql %s: %w", where, err)
	}
	if len(cfg.Signers) > 0 {
		if err := enrollSigners(ctx, db, cfg.Signers, cfg.Logger); err != nil {
			return nil, fmt.Errorf("mysql %s: %w", where, err)
		}
	}
	driver, err := tmysql.New(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("mysql %s: tessera storage: %w", where, err)
	}
	h := &dbHealth{db: db}
	st, err := openMySQLStore(ctx, db, cfg.Logger, h)
	if err != nil {
		return nil, fmt.Errorf("mysql %s: %w", where, err)
	}
	pub := &checkpointPublisher{db: db, log: cfg.Logger, id: id, republish: cfg.CheckpointRepublishInterval, done: make(chan struct{})}
	return &backend{
		driver:             driver,
		store:              st,
		id:                 id,
		where:              "the digest index in " + where,
		signers:            func(ctx context.Context) (keySet, error) { return loadSigners(ctx, db) },
		wrapReader:         h.reader,
		wrapAdd:            h.add,
		minTesseraInterval: tesseraMySQLMinInterval,
		publish:            pub.run,
		close: func() error {
			pub.wait()
			return db.Close()
		},
	}, nil
}

// tesseraMySQLMinInterval is the smallest checkpoint interval Tessera's
// MySQL driver accepts.
const tesseraMySQLMinInterval = time.Second

// checkpointPublisher publishes checkpoints of the shared tree as often as
// Config.CheckpointInterval allows across all instances, into Tessera's
// Checkpoint table, with Tessera's own checkpoint publisher (signature,
// witnesses). Tessera's MySQL driver publishes at most once a second, in
// practice every other second (its ticker runs at the interval it checks),
// which would make every receipt wait one to two seconds; its publisher
// keeps running beside this one. Publishers serialize on the Checkpoint row
// and read the tree under it, so published sizes never go down.
type checkpointPublisher struct {
	db  *sql.DB
	log *slog.Logger
	id  *identity
	// republish is how often an unchanged checkpoint is published (and
	// witnessed) again; zero never.
	republish time.Duration
	started   atomic.Bool
	done      chan struct{} // closed when run returns

	lastNote []byte // the last checkpoint note read, and its size
	lastSize uint64
}

// run publishes until ctx is done.
func (p *checkpointPublisher) run(ctx context.Context, sign func(context.Context, uint64, []byte) ([]byte, error), interval time.Duration) {
	p.started.Store(true)
	defer close(p.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := p.publish(ctx, sign, interval)
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
func (p *checkpointPublisher) publish(ctx context.Context, sign func(context.Context, uint64, []byte) ([]byte, error), interval time.Duration) error {
	var size uint64
	var note []byte
	var publishedAt sql.NullInt64
	err := p.db.QueryRowContext(ctx, "SELECT t.`size`, c.`note`, c.`published_at` FROM `TreeState` t LEFT JOIN `Checkpoint` c ON c.`id` = 0 WHERE t.`id` = 0").Scan(&size, &note, &publishedAt)
	if err != nil {
		return fmt.Errorf("read tree state: %w", err)
	}
	if note != nil {
		if !bytes.Equal(note, p.lastNote) {
			cp, _, _, err := log.ParseCheckpoint(note, p.id.signer.Name(), p.id.verifier)
			if err != nil {
				return fmt.Errorf("published checkpoint: %w", err)
			}
			p.lastNote, p.lastSize = note, cp.Size
		}
		stale := p.republish > 0 && time.Since(time.UnixMilli(publishedAt.Int64)) >= p.republish
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
	if time.Since(time.UnixMilli(at)) < interval*9/10 {
		return nil
	}
	var root []byte
	if err := tx.QueryRowContext(ctx, "SELECT `size`, `root` FROM `TreeState` WHERE `id` = 0 FOR UPDATE").Scan(&size, &root); err != nil {
		return fmt.Errorf("publish checkpoint: %w", err)
	}
	raw, err := sign(ctx, size, root)
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

// migrateSchema creates or upgrades the tables under a named lock, so that
// instances starting together migrate once.
func migrateSchema(ctx context.Context, db *sql.DB, logger *slog.Logger) error {
	conn, err := db.Conn(ctx) // GET_LOCK belongs to a session: one connection throughout
	if err != nil {
		return fmt.Errorf("migrate schema: %w", err)
	}
	defer conn.Close()
	const lockName = "CONCAT('notarize-ledger:', LEFT(SHA1(DATABASE()), 40))"
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK("+lockName+", ?)", int(mysqlSchemaLock.Seconds())).Scan(&got); err != nil {
		return fmt.Errorf("migrate schema: lock: %w", err)
	}
	if !got.Valid || got.Int64 != 1 {
		return fmt.Errorf("migrate schema: another instance held the schema lock for %v", mysqlSchemaLock)
	}
	defer func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "DO RELEASE_LOCK("+lockName+")")
	}()
	if _, err := conn.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS `notarize_schema` (`id` TINYINT UNSIGNED NOT NULL, `version` INT UNSIGNED NOT NULL, PRIMARY KEY (`id`))"); err != nil {
		return fmt.Errorf("migrate schema: %w", err)
	}
	var version int
	switch err := conn.QueryRowContext(ctx, "SELECT `version` FROM `notarize_schema` WHERE `id` = 0").Scan(&version); {
	case errors.Is(err, sql.ErrNoRows):
		version = 0
	case err != nil:
		return fmt.Errorf("migrate schema: read version: %w", err)
	}
	if version > schemaVersion {
		return fmt.Errorf("%w: the database is at version %d, this binary knows up to %d: upgrade notarize-ledger", ErrSchemaTooNew, version, schemaVersion)
	}
	for v := version; v < schemaVersion; v++ {
		for _, stmt := range migrations()[v] {
			if _, err := conn.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
			}
		}
		if _, err := conn.ExecContext(ctx, "REPLACE INTO `notarize_schema` (`id`, `version`) VALUES (0, ?)", v+1); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
		logger.InfoContext(ctx, "database schema migrated", slog.Int("from", v), slog.Int("to", v+1))
	}
	return nil
}

// Rows of notarize_meta.
const (
	metaOrigin      = "origin"
	metaVerifierKey = "verifier_key"
)

// loadSharedIdentity opens cfg.NoteSignerKey and checks it against the
// identity stored in the database, storing it there on first start. Two
// instances starting together with different keys cannot both win: the
// rows are inserted once, and every instance compares.
func loadSharedIdentity(ctx context.Context, db *sql.DB, cfg Config) (*identity, error) {
	if cfg.NoteSignerKey == "" {
		return nil, ErrNoSignerKey
	}
	id, err := newIdentity(cfg.NoteSignerKey, cfg.Origin)
	if err != nil {
		return nil, err
	}
	want := map[string]string{metaOrigin: id.signer.Name(), metaVerifierKey: id.vkey}
	if _, err := db.ExecContext(ctx, "INSERT IGNORE INTO `notarize_meta` (`name`, `value`) VALUES (?, ?), (?, ?)",
		metaOrigin, want[metaOrigin], metaVerifierKey, want[metaVerifierKey]); err != nil {
		return nil, fmt.Errorf("store identity: %w", err)
	}
	rows, err := db.QueryContext(ctx, "SELECT `name`, `value` FROM `notarize_meta` WHERE `name` IN (?, ?)", metaOrigin, metaVerifierKey)
	if err != nil {
		return nil, fmt.Errorf("read identity: %w", err)
	}
	got := map[string]string{}
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			_ = rows.Close()
			return nil, fmt.Errorf("read identity: %w", err)
		}
		got[name] = value
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("read identity: %w", err)
	}
	if got[metaOrigin] != want[metaOrigin] {
		return nil, fmt.Errorf("%w: the database holds the log %q, but the checkpoint key is named %q", ErrIdentityMismatch, got[metaOrigin], want[metaOrigin])
	}
	if got[metaVerifierKey] != want[metaVerifierKey] {
		return nil, fmt.Errorf("%w: the database's log is verified by %q, but this instance's checkpoint key is %q", ErrIdentityMismatch, got[metaVerifierKey], want[metaVerifierKey])
	}
	var cp []byte
	switch err := db.QueryRowContext(ctx, "SELECT `note` FROM `Checkpoint` WHERE `id` = 0").Scan(&cp); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("read checkpoint: %w", err)
	default:
		if err := id.checkExisting(cp, "in the database"); err != nil {
			return nil, err
		}
	}
	return id, nil
}

// enrollSigners replaces the enrolled signers stored in the database.
func enrollSigners(ctx context.Context, db *sql.DB, keys []crypto.PublicKey, logger *slog.Logger) error {
	before, err := loadSigners(ctx, db)
	if err != nil {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("enroll signers: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, "DELETE FROM `notarize_signer`"); err != nil {
		return fmt.Errorf("enroll signers: %w", err)
	}
	after := keySet{}
	for _, k := range keys {
		kid, err := notarize.KeyID(k)
		if err != nil {
			return fmt.Errorf("enroll signers: %w", err)
		}
		pemKey, err := cryptoutils.MarshalPublicKeyToPEM(k)
		if err != nil {
			return fmt.Errorf("enroll signers: %w", err)
		}
		if _, err := tx.ExecContext(ctx, "REPLACE INTO `notarize_signer` (`key_id`, `public_key`) VALUES (?, ?)", kid, pemKey); err != nil {
			return fmt.Errorf("enroll signers: %w", err)
		}
		after[kid] = true
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("enroll signers: %w", err)
	}
	if !maps.Equal(before, after) {
		logger.WarnContext(ctx, "enrolled signers replaced in the database; every instance follows within "+signersRefresh.String(),
			slog.Int("before", len(before)), slog.Int("after", len(after)))
	}
	return nil
}

// loadSigners reads the enrolled signers' key IDs.
func loadSigners(ctx context.Context, db *sql.DB) (keySet, error) {
	rows, err := db.QueryContext(ctx, "SELECT `key_id` FROM `notarize_signer`")
	if err != nil {
		return nil, fmt.Errorf("read enrolled signers: %w", err)
	}
	set := keySet{}
	for rows.Next() {
		var kid string
		if err := rows.Scan(&kid); err != nil {
			_ = rows.Close()
			return nil, fmt.Errorf("read enrolled signers: %w", err)
		}
		set[kid] = true
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("read enrolled signers: %w", err)
	}
	return set, nil
}

// followSigners re-reads the enrolled signers every signersRefresh until
// ctx is done, so that every instance enforces the database's set.
func (l *Ledger) followSigners(ctx context.Context, load func(context.Context) (keySet, error)) {
	t := time.NewTicker(signersRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		set, err := load(ctx)
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

// dbHealth tells a database outage (ErrUnavailable: retry later) from
// other errors. Tessera's MySQL driver formats most errors with %v, so the
// driver's error types do not always survive: the message is checked too,
// and as a last resort the database is pinged.
type dbHealth struct {
	db        *sql.DB
	downUntil atomic.Int64 // unix nanoseconds; a failed ping speaks for the database until then
}

// check returns err, wrapped in ErrUnavailable if it comes from a database
// that cannot be reached, is restarting or is failing over.
func (h *dbHealth) check(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, os.ErrNotExist) || errors.Is(err, ErrUnavailable) ||
		errors.Is(err, tessera.ErrPushback) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if transientDBError(err) || !h.reachable(ctx) {
		return fmt.Errorf("%w: database: %w", ErrUnavailable, err)
	}
	return err
}

// reachable pings the database, remembering a failure for downMemo.
func (h *dbHealth) reachable(ctx context.Context) bool {
	if time.Now().UnixNano() < h.downUntil.Load() {
		return false
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pingTimeout)
	defer cancel()
	if err := h.db.PingContext(pctx); err != nil {
		h.downUntil.Store(time.Now().Add(downMemo).UnixNano())
		return false
	}
	return true
}

// transientDBError reports whether err is a connection failure or a
// MySQL error that means "try again": too many connections, shutdown in
// progress, lock wait timeout, deadlock, read-only (failover), connection
// killed (MariaDB), client disconnected (MySQL 8). Error texts are checked
// for errors whose type Tessera's %v formatting dropped.
func transientDBError(err error) bool {
	if me, ok := errors.AsType[*mysql.MySQLError](err); ok {
		switch me.Number {
		case 1040, 1053, 1205, 1213, 1290, 1792, 1836, 1927, 4031:
			return true
		}
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, sql.ErrConnDone) {
		return true
	}
	msg := strings.ToLower(err.Error())
	for _, m := range []string{
		"invalid connection", "bad connection", "connection refused", "connection reset", "broken pipe",
		"i/o timeout", "unexpected eof", "server shutdown", "busy buffer", "error 1053", "error 1927", "error 2013",
	} {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

// add decorates Tessera's add function with check.
func (h *dbHealth) add(next tessera.AddFn) tessera.AddFn {
	return func(ctx context.Context, e *tessera.Entry) tessera.IndexFuture {
		f := next(ctx, e)
		return func() (tessera.Index, error) {
			idx, err := f()
			return idx, h.check(ctx, err)
		}
	}
}

// reader decorates Tessera's MySQL log reader with check, and trims a
// partial tile or bundle to the size asked for (the driver returns the
// largest it has), so that the reader answers exactly as the POSIX one.
func (h *dbHealth) reader(r tessera.LogReader) tessera.LogReader {
	return &checkedReader{r: r, h: h}
}

type checkedReader struct {
	r tessera.LogReader
	h *dbHealth
}

var _ tessera.LogReader = (*checkedReader)(nil)

func (c *checkedReader) ReadCheckpoint(ctx context.Context) ([]byte, error) {
	b, err := c.r.ReadCheckpoint(ctx)
	return b, c.h.check(ctx, err)
}

func (c *checkedReader) ReadTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	b, err := c.r.ReadTile(ctx, level, index, p)
	if err != nil {
		return nil, c.h.check(ctx, err)
	}
	if want := int(p) * 32; p > 0 && len(b) > want {
		b = b[:want]
	}
	return b, nil
}

func (c *checkedReader) ReadEntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error) {
	b, err := c.r.ReadEntryBundle(ctx, index, p)
	if err != nil {
		return nil, c.h.check(ctx, err)
	}
	if p > 0 {
		prefix, ok := firstEntries(b, int(p))
		if !ok {
			return nil, fmt.Errorf("entry bundle %d: shorter than %d entries", index, p)
		}
		b = prefix
	}
	return b, nil
}

func (c *checkedReader) IntegratedSize(ctx context.Context) (uint64, error) {
	n, err := c.r.IntegratedSize(ctx)
	return n, c.h.check(ctx, err)
}

func (c *checkedReader) NextIndex(ctx context.Context) (uint64, error) {
	n, err := c.r.NextIndex(ctx)
	return n, c.h.check(ctx, err)
}
