// Package mariadbtest gives tests a real MariaDB server: a throwaway one
// on 127.0.0.1, started and stopped with the project's scripts/mariadb.sh
// (which installs Debian's mariadb-server if needed), or the server that
// $NOTARIZE_MYSQL_DSN names. Each test gets a database of its own.
//
//	srv, err := mariadbtest.Start(ctx) // once per package, in TestMain
//	dsn := srv.Database(t)             // a new, empty database, dropped at cleanup
package mariadbtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/notarize/docker-notarize/internal/testutil"
)

// EnvDSN names an existing server to use instead of starting one: a DSN
// whose user may create and drop databases.
const EnvDSN = "NOTARIZE_MYSQL_DSN"

// exitUnavailable is scripts/mariadb.sh's exit code for "MariaDB cannot be
// installed here".
const exitUnavailable = 77

// ErrUnavailable is returned (wrapped) by Start when no MariaDB server can
// be had on this machine; tests skip, loudly, on it and fail on any other error.
var ErrUnavailable = errors.New("MariaDB is not available on this machine")

// Server is a MariaDB server for tests.
type Server struct {
	// DSN reaches the server's default database as a user that may create
	// databases.
	DSN string

	script string // scripts/mariadb.sh; "" for a server named by EnvDSN
	dir    string // the server's data, socket and logs
	port   int
}

// Start starts a throwaway server in a temporary directory on a free
// loopback port, or returns the one $NOTARIZE_MYSQL_DSN names.
func Start(ctx context.Context) (*Server, error) {
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		if _, err := mysql.ParseDSN(dsn); err != nil {
			return nil, fmt.Errorf("$%s: %w", EnvDSN, err)
		}
		return &Server{DSN: dsn}, nil
	}
	script, err := testutil.Script("mariadb.sh")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "notarize-mariadb-")
	if err != nil {
		return nil, fmt.Errorf("start mariadb: %w", err)
	}
	port, err := testutil.FreePort()
	if err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	s := &Server{script: script, dir: dir, port: port}
	if err := s.Up(ctx); err != nil {
		return nil, errors.Join(err, s.Stop(context.WithoutCancel(ctx)))
	}
	return s, nil
}

// Owned reports whether the server was started by Start (and so may be
// stopped and started again by tests).
func (s *Server) Owned() bool { return s.script != "" }

// Up starts the server (again), keeping its data, and waits until it answers.
func (s *Server) Up(ctx context.Context) error {
	if !s.Owned() {
		return errors.New("mariadb: the server named by $" + EnvDSN + " is not ours to start")
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, s.script, "start", s.dir, strconv.Itoa(s.port))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok && ee.ExitCode() == exitUnavailable {
		return fmt.Errorf("%w:\n%s", ErrUnavailable, stderr.String())
	}
	if err != nil {
		return fmt.Errorf("%s start: %w\n%s", s.script, err, stderr.String())
	}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if dsn, ok := strings.CutPrefix(sc.Text(), "DSN="); ok {
			s.DSN = dsn
		}
	}
	if s.DSN == "" {
		return fmt.Errorf("%s start printed no DSN=…:\n%s", s.script, stdout.String())
	}
	return nil
}

// Down stops the server cleanly, keeping its data.
func (s *Server) Down(ctx context.Context) error {
	if !s.Owned() {
		return errors.New("mariadb: the server named by $" + EnvDSN + " is not ours to stop")
	}
	out, err := exec.CommandContext(ctx, s.script, "stop", s.dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s stop: %w\n%s", s.script, err, out)
	}
	return nil
}

// Stop stops a server Start started and removes its data. It does nothing
// for a server named by $NOTARIZE_MYSQL_DSN.
func (s *Server) Stop(ctx context.Context) error {
	if !s.Owned() {
		return nil
	}
	return errors.Join(s.Down(ctx), os.RemoveAll(s.dir))
}

// Database creates an empty database for t and returns its DSN; it is
// dropped when t ends.
func (s *Server) Database(t testing.TB) string {
	t.Helper()
	c, err := mysql.ParseDSN(s.DSN)
	if err != nil {
		t.Fatalf("mariadbtest: %v", err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "t_" + hex.EncodeToString(b)
	db, err := sql.Open("mysql", s.DSN)
	if err != nil {
		t.Fatalf("mariadbtest: %v", err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE `"+name+"`"); err != nil {
		t.Fatalf("mariadbtest: create database: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("mysql", s.DSN)
		if err != nil {
			t.Errorf("mariadbtest: %v", err)
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			t.Logf("mariadbtest: drop database %s: %v", name, err)
		}
	})
	c.DBName = name
	return c.FormatDSN()
}

// Skip ends t with a loud message saying why the MySQL tests do not run.
func Skip(t testing.TB, err error) {
	t.Helper()
	bar := strings.Repeat("#", 78)
	t.Skipf("\n%s\n## SKIPPED: no MariaDB server for the MySQL tests: %v\n## Set $%s or let scripts/mariadb.sh install mariadb-server (root + apt).\n%s", bar, err, EnvDSN, bar)
}
