package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/internal/mariadbtest"
	"k8s.io/klog/v2"
)

// mysqlEnv is what this package's MySQL tests share: one MariaDB server
// (started on first use by scripts/mariadb.sh, or $NOTARIZE_MYSQL_DSN) and
// the notarize-ledger binary (built on first use). TestMain releases both.
var mysqlEnv mysqlTestEnv

type mysqlTestEnv struct {
	srvOnce sync.Once
	srv     *mariadbtest.Server
	srvErr  error

	binOnce sync.Once
	binDir  string
	bin     string
	binErr  error
}

// TestMain runs the package's tests. The long ones that mostly wait (a
// child process, MariaDB, floods of lookups) call t.Parallel, so that they
// overlap after the others; a test stays sequential when it sets the
// environment (the index engine of new data directories), restarts the
// shared MariaDB (TestMySQLDatabaseRestart) or measures the process's heap.
func TestMain(m *testing.M) {
	// Tessera logs through klog; the ledger's own logs go to each test's output.
	klog.SetSlogLogger(slog.New(slog.DiscardHandler))
	code := m.Run()
	if keyPageTemplate.dir != "" {
		_ = os.RemoveAll(keyPageTemplate.dir)
	}
	if err := mysqlEnv.release(); err != nil {
		fmt.Fprintln(os.Stderr, "ledger tests: release MariaDB:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// server returns the MariaDB server, starting it on first use. It skips t
// loudly when MariaDB cannot be had here, and fails it on any other error.
func (e *mysqlTestEnv) server(t testing.TB) *mariadbtest.Server {
	t.Helper()
	e.srvOnce.Do(func() {
		// The first run on a machine may apt-get install mariadb-server.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		start := time.Now()
		e.srv, e.srvErr = mariadbtest.Start(ctx)
		if e.srvErr == nil {
			t.Logf("MariaDB ready in %v", time.Since(start).Round(time.Millisecond))
		}
	})
	if errors.Is(e.srvErr, mariadbtest.ErrUnavailable) {
		mariadbtest.Skip(t, e.srvErr)
	}
	if e.srvErr != nil {
		t.Fatalf("MariaDB: %v", e.srvErr)
	}
	return e.srv
}

// database returns the DSN of a new, empty database for t.
func (e *mysqlTestEnv) database(t testing.TB) string {
	t.Helper()
	return e.server(t).Database(t)
}

// binary builds cmd/notarize-ledger once (with -race when the tests have it,
// so the build cache is shared) and returns its path.
func (e *mysqlTestEnv) binary(t testing.TB) string {
	t.Helper()
	e.binOnce.Do(func() {
		e.binDir, e.binErr = os.MkdirTemp("", "notarize-ledger-bin-")
		if e.binErr != nil {
			return
		}
		e.bin = filepath.Join(e.binDir, "notarize-ledger")
		args := []string{"build", "-o", e.bin}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "github.com/notarize/docker-notarize/cmd/notarize-ledger")
		start := time.Now()
		out, err := exec.Command(goTool(), args...).CombinedOutput()
		if err != nil {
			e.binErr = fmt.Errorf("go %v: %w\n%s", args, err, out)
			return
		}
		t.Logf("built notarize-ledger in %v", time.Since(start).Round(time.Millisecond))
	})
	if e.binErr != nil {
		t.Fatal(e.binErr)
	}
	return e.bin
}

func (e *mysqlTestEnv) release() error {
	var errs []error
	if e.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		errs = append(errs, e.srv.Stop(ctx))
	}
	if e.binDir != "" {
		errs = append(errs, os.RemoveAll(e.binDir))
	}
	return errors.Join(errs...)
}

// goTool is the go command of the toolchain running the tests.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
