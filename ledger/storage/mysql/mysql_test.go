package mysql

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Unit tests of the driver's parts that need no database; the driver
// against a real MariaDB is tested through the ledger (package ledger's
// mysql_*_test.go).

func TestConfigValidate(t *testing.T) {
	const dsn = "u:secret@tcp(127.0.0.1:3306)/notarize"
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"minimal", Config{DSN: dsn}, ""},
		{"no DSN", Config{}, "DSN is required"},
		{"bad DSN", Config{DSN: "no slash"}, "mysql DSN"},
		{"no database", Config{DSN: "u:p@tcp(127.0.0.1:3306)/"}, "no database name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
			case err != nil && strings.Contains(err.Error(), "secret"):
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
	if got := RedactDSN(dsn); strings.Contains(got, "secret") || !strings.Contains(got, "127.0.0.1:3306") {
		t.Errorf("RedactDSN = %q", got)
	}
	mc, err := parseDSN(dsn + "?readTimeout=3s")
	if err != nil {
		t.Fatal(err)
	}
	if mc.Timeout != mysqlDialTimeout || mc.ReadTimeout != 3*time.Second || mc.WriteTimeout != mysqlIOTimeout {
		t.Errorf("DSN defaults: timeout %v read %v write %v", mc.Timeout, mc.ReadTimeout, mc.WriteTimeout)
	}
}

func TestTransientDBError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&gomysql.MySQLError{Number: 1213, Message: "Deadlock found"}, true},
		{fmt.Errorf("begin tx: %w", &gomysql.MySQLError{Number: 1053, Message: "Server shutdown in progress"}), true},
		{fmt.Errorf("begin tx: %v", gomysql.ErrInvalidConn), true}, // Tessera's %v drops the type
		{fmt.Errorf("x: %v", &net.OpError{Op: "dial", Err: errors.New("connect: connection refused")}), true},
		{&net.OpError{Op: "read", Err: errors.New("boom")}, true},
		{&gomysql.MySQLError{Number: 1146, Message: "Table 'x' doesn't exist"}, false},
		{errors.New("scan tile: sql: Scan error"), false},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			if got := transientDBError(tc.err); got != tc.want {
				t.Errorf("transientDBError = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestTesseraSchemaMatchesModule checks that the Tessera tables the ledger
// creates are those of the Tessera module it is built with.
func TestTesseraSchemaMatchesModule(t *testing.T) {
	out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "list", "-m", "-f", "{{.Dir}}", "github.com/transparency-dev/tessera").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "storage", "mysql", "schema.sql"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for l := range strings.SplitSeq(string(raw), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			lines = append(lines, l)
		}
	}
	var want []string
	for stmt := range strings.SplitSeq(strings.Join(lines, "\n"), ";") {
		if s := strings.TrimSpace(stmt); s != "" {
			want = append(want, s)
		}
	}
	if got := tesseraSchema(); !slices.Equal(got, want) {
		t.Fatalf("tesseraSchema() differs from the module's schema.sql:\n got %q\nwant %q", got, want)
	}
}

// TestEmptyTreeRow checks the TreeState row the migration writes: the
// root of the empty tree, as Tessera would write it.
func TestEmptyTreeRow(t *testing.T) {
	want := fmt.Sprintf("VALUES (0, 0, X'%x')", rfc6962.DefaultHasher.EmptyRoot())
	for _, stmt := range notarizeSchemaV1() {
		if strings.Contains(stmt, "`TreeState`") {
			if !strings.Contains(stmt, want) {
				t.Fatalf("%s\nwant %s", stmt, want)
			}
			return
		}
	}
	t.Fatal("no TreeState row in the schema")
}
