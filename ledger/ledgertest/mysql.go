package ledgertest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/internal/mariadbtest"
)

// WithMySQL keeps the ledger in the MySQL/MariaDB database dsn (the
// ledger/storage/mysql driver) instead of a directory. It needs
// WithSignerKey: instances on one database share one key. Servers started
// with the same dsn and key are instances of one ledger, as behind a load
// balancer.
func WithMySQL(dsn string) Option {
	return func(s *settings) { s.dsn = dsn }
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

// StartInstances starts n instances of one ledger (origin, one shared key)
// on a database of the test's own, on a MariaDB server started for t and
// stopped at its end. It skips t loudly when MariaDB cannot be had here.
// For several tests in a package, share one server from TestMain instead.
func StartInstances(t testing.TB, n int, origin string) []*Server {
	t.Helper()
	db, err := StartMariaDB(t.Context())
	if errors.Is(err, ErrNoMariaDB) {
		SkipNoMariaDB(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := db.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	dsn := db.Database(t)
	skey, _, err := ledger.NewSignerKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	servers := make([]*Server, n)
	for i := range servers {
		servers[i] = Start(t, WithMySQL(dsn), WithSignerKey(skey))
	}
	return servers
}
