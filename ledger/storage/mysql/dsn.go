package mysql

import (
	"errors"
	"fmt"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
)

// MySQL connection defaults, applied when the DSN does not set them.
const (
	mysqlDialTimeout  = 5 * time.Second  // DSN timeout
	mysqlIOTimeout    = 30 * time.Second // DSN readTimeout and writeTimeout
	mysqlMaxOpenConns = 64
	mysqlMaxIdleConns = 16
	mysqlConnLifetime = 5 * time.Minute // lets a pool follow a failover (Aurora, CloudSQL)
	mysqlSchemaLock   = 60 * time.Second
	pingTimeout       = 2 * time.Second
	downMemo          = 500 * time.Millisecond // how long a failed ping answers for the database
)

// parseDSN parses a go-sql-driver/mysql DSN and fills in the ledger's
// defaults. Errors never repeat the DSN, which may hold a password.
func parseDSN(dsn string) (*gomysql.Config, error) {
	c, err := gomysql.ParseDSN(dsn)
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
	c, err := gomysql.ParseDSN(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return fmt.Sprintf("%s@%s(%s)/%s", c.User, c.Net, c.Addr, c.DBName)
}
