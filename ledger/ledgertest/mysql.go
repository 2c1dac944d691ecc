package ledgertest

import (
	"context"
	"testing"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/internal/mariadbtest"
)

// WithMySQL keeps the ledger in the MySQL/MariaDB database dsn
// (ledger.StorageMySQL) instead of a directory. It needs WithSignerKey:
// instances on one database share one key. Servers started with the same
// dsn and key are instances of one ledger, as behind a load balancer.
func WithMySQL(dsn string) Option {
	return func(c *ledger.Config) {
		c.Storage = ledger.StorageMySQL
		c.MySQLDSN = dsn
	}
}

// MariaDB is a MariaDB server for tests: a throwaway one started by the
// project's scripts/mariadb.sh on 127.0.0.1, or the one $NOTARIZE_MYSQL_DSN
// names. Database(t) gives each test an empty database of its own.
type MariaDB = mariadbtest.Server

// ErrNoMariaDB is returned (wrapped) by StartMariaDB when no server can be
// had on this machine: skip with SkipNoMariaDB, fail on any other error.
var ErrNoMariaDB = mariadbtest.ErrUnavailable

// StartMariaDB starts a MariaDB server (installing Debian's mariadb-server
// if needed), or returns the one $NOTARIZE_MYSQL_DSN names. Start it once
// per package (TestMain) and Stop it at the end: it takes a few seconds.
func StartMariaDB(ctx context.Context) (*MariaDB, error) {
	return mariadbtest.Start(ctx)
}

// SkipNoMariaDB skips t with a loud message saying why MySQL tests do not run.
func SkipNoMariaDB(t testing.TB, err error) {
	t.Helper()
	mariadbtest.Skip(t, err)
}
