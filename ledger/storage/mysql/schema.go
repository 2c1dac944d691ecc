package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
)

// SchemaVersion is the version of the ledger's tables this binary uses;
// the table notarize_schema holds the database's. migrations()[v] goes
// from v to v+1. Version 4 added the key index (notarize_key_current),
// version 5 the verifiable index (notarize_map_node, notarize_map_state).
const SchemaVersion = 5

// migrations returns, for each schema version v, the statements that take
// a database from v to v+1. Every statement is idempotent, so a migration
// interrupted half-way is simply run again.
func migrations() [][]string {
	return [][]string{
		append(tesseraSchema(), notarizeSchemaV1()...),
		notarizeSchemaV2(),
		notarizeSchemaV3(),
		notarizeSchemaV4(),
		notarizeSchemaV5(),
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
		"INSERT IGNORE INTO `notarize_follow` (`id`, `next`) VALUES (2, 0)",
	}
}

// notarizeSchemaV4 adds the key index: for every (key ID, digest), the
// key's current statement about the digest (greatest signed timestamp,
// ties broken by the greater log index), which a key lookup reads in
// digest order without touching another key's rows. The follower fills
// it from the log from a new position (row 3 of notarize_follow, starting
// at 0) in the same transaction as the other tables, which it re-inserts
// with INSERT IGNORE; a row is replaced only by a greater ord, so the
// rebuild is idempotent. Version 3's position row 2 is left for instances
// of the previous version still running during a rolling upgrade: they
// keep filling the other tables, and this version's follower covers their
// entries in the key index too.
func notarizeSchemaV4() []string {
	return []string{
		// ord is the signed timestamp's stamp (12 bytes) and the log index
		// (8 bytes, big-endian): byte order is (timestamp, index) order.
		"CREATE TABLE IF NOT EXISTS `notarize_key_current` (" +
			"`key_id` BINARY(32) NOT NULL, `digest` BINARY(32) NOT NULL, `ord` BINARY(20) NOT NULL, " +
			"`idx` BIGINT UNSIGNED NOT NULL, `status` TINYINT UNSIGNED NOT NULL, PRIMARY KEY (`key_id`, `digest`))",
		// How many log entries, from 0, the index tables and notarize_key_current cover.
		"INSERT IGNORE INTO `notarize_follow` (`id`, `next`) VALUES (" + mysqlFollowRow + ", 0)",
	}
}

// notarizeSchemaV5 keeps the verifiable index in the database, one map for
// every instance (mapstore.go), instead of a bbolt file per instance
// (--map-dir, now ignored). The map starts empty at position 0: the first
// instance of this version to get the update lock folds the whole log
// into it, in chunks without a root, then commits one root covering the
// whole log (never fewer entries than a root already in it); the other
// instances serve proofs from that shared map once it has a root. Version
// 4 instances still running during a rolling upgrade keep their own map
// files and the named lock they took turns under; their roots and this
// version's are each correct, but a version 4 root appended after a
// version 5 root may cover fewer entries: finish the upgrade promptly.
func notarizeSchemaV5() []string {
	return []string{
		// Map nodes: vindex.NodeID bytes (2-byte depth and up to 32 prefix
		// bytes) → vindex.Node bytes (an inner hash, or a leaf's key and
		// value of at most vindex.MaxValueSize bytes).
		"CREATE TABLE IF NOT EXISTS `notarize_map_node` (`id` VARBINARY(34) NOT NULL, `node` VARBINARY(320) NOT NULL, PRIMARY KEY (`id`))",
		// The map's one state row: entries folded in, and the newest
		// committed map-root entry (its log index and bytes; NULL before
		// the first). Locked FOR UPDATE by the instance updating the map.
		"CREATE TABLE IF NOT EXISTS `notarize_map_state` (`id` TINYINT UNSIGNED NOT NULL, `position` BIGINT UNSIGNED NOT NULL, " +
			"`root_index` BIGINT UNSIGNED NULL, `root_entry` BLOB NULL, PRIMARY KEY (`id`))",
		"INSERT IGNORE INTO `notarize_map_state` (`id`, `position`) VALUES (0, 0)",
	}
}

// mysqlFollowRow is the notarize_follow row of the index this binary
// writes (schema version 4; version 3's was row 2, version 2's row 1).
const mysqlFollowRow = "3"

// ErrSchemaTooNew is returned (wrapped) by New when the database was
// migrated by a newer notarize-ledger than this one.
var ErrSchemaTooNew = errors.New("database schema is newer than this notarize-ledger")

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
	if version > SchemaVersion {
		return fmt.Errorf("%w: the database is at version %d, this binary knows up to %d: upgrade notarize-ledger", ErrSchemaTooNew, version, SchemaVersion)
	}
	for v := version; v < SchemaVersion; v++ {
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
