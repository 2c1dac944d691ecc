package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/ledger"
)

// TestMapRebuild: `notarize-ledger map-rebuild --data DIR` drops the
// map's file of a stopped ledger (it is folded again from the log at the
// next start), succeeds when there is none, and refuses stray arguments.
func TestMapRebuild(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vindex.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte("not a map "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	// A file that is not a bbolt database: refused, left in place.
	if err := run(t.Context(), []string{"map-rebuild", "--data", dir}, noEnv, &stdout, io.Discard, nil); err == nil {
		t.Fatal("a file that is no map was removed")
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := run(t.Context(), []string{"map-rebuild", "--data", dir}, noEnv, &stdout, io.Discard, nil); err != nil {
		t.Fatalf("without a map: %v", err)
	}
	if !strings.Contains(stdout.String(), "rebuilt from the log") {
		t.Fatalf("output %q", stdout.String())
	}
	if err := run(t.Context(), []string{"map-rebuild", "extra"}, noEnv, io.Discard, io.Discard, nil); !errors.Is(err, errUsage) {
		t.Fatalf("stray argument: %v", err)
	}
}

// TestMapRebuildMySQL: `notarize-ledger map-rebuild --storage mysql` needs
// a DSN (flag or environment), refuses an unknown storage, and reports a
// database it cannot reach as unavailable without repeating the password.
// The rebuild itself, with instances running, is ledger's
// TestMapMySQLRebuild.
func TestMapRebuildMySQL(t *testing.T) {
	if err := run(t.Context(), []string{"map-rebuild", "--storage", "mysql"}, noEnv, io.Discard, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "--mysql-dsn") {
		t.Fatalf("without a DSN: %v", err)
	}
	if err := run(t.Context(), []string{"map-rebuild", "--storage", "s3"}, noEnv, io.Discard, io.Discard, nil); !errors.Is(err, errUsage) {
		t.Fatalf("unknown storage: %v", err)
	}
	env := func(k string) string {
		if k == envMySQLDSN {
			return "u:secret@tcp(127.0.0.1:1)/notarize"
		}
		return ""
	}
	err := run(t.Context(), []string{"map-rebuild", "--storage", "mysql"}, env, io.Discard, io.Discard, nil)
	if !errors.Is(err, ledger.ErrUnavailable) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("unreachable database: %v, want ErrUnavailable without the password", err)
	}
}
