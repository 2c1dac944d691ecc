package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/notarize/docker-notarize/ledger"
)

// TestMapRebuild: `notarize-ledger map-rebuild --data DIR [--map-dir DIR]`
// drops the map of a stopped ledger (it is folded again from the log at
// the next start), kept in --map-dir if the ledger has one; where there is
// none it succeeds saying so (naming --map-dir), not claiming a rebuild;
// it refuses a directory that does not exist, and stray arguments.
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
	var stderr bytes.Buffer
	if err := run(t.Context(), []string{"map-rebuild", "--data", dir}, noEnv, &stdout, &stderr, nil); err != nil {
		t.Fatalf("without a map: %v", err)
	}
	if stdout.Len() != 0 || !strings.Contains(stderr.String(), "holds no verifiable index") || !strings.Contains(stderr.String(), "--map-dir") {
		t.Fatalf("without a map, output %q, warning %q: it must not claim a rebuild, and must name --map-dir", stdout.String(), stderr.String())
	}
	// A map kept in --map-dir, by a ledger that ran with it, is dropped
	// when map-rebuild is given the same --map-dir.
	data, mapDir := t.TempDir(), t.TempDir()
	skey, _, err := note.GenerateKey(rand.Reader, "cmd.example/map-rebuild")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("serve", func(t *testing.T) { startRun(t, skey, "--addr", "127.0.0.1:0", "--data", data, "--map-dir", mapDir) })
	if e, err := ledger.MapEngine(mapDir); err != nil || e == "" {
		t.Fatalf("the ledger kept no map in --map-dir: %q, %v", e, err)
	}
	stderr.Reset()
	if err := run(t.Context(), []string{"map-rebuild", "--data", data}, noEnv, io.Discard, &stderr, nil); err != nil || !strings.Contains(stderr.String(), "holds no verifiable index") {
		t.Fatalf("without the ledger's --map-dir: %v, warning %q", err, stderr.String())
	}
	stdout.Reset()
	if err := run(t.Context(), []string{"map-rebuild", "--data", data, "--map-dir", mapDir}, noEnv, &stdout, io.Discard, nil); err != nil {
		t.Fatalf("--map-dir: %v", err)
	}
	if !strings.Contains(stdout.String(), "rebuilt from the log") {
		t.Fatalf("output %q", stdout.String())
	}
	if e, err := ledger.MapEngine(mapDir); err != nil || e != "" {
		t.Fatalf("after map-rebuild --map-dir: a %q map is left, %v", e, err)
	}
	for _, args := range [][]string{{"--data", filepath.Join(dir, "typo")}, {"--data", data, "--map-dir", filepath.Join(mapDir, "typo")}} {
		if err := run(t.Context(), append([]string{"map-rebuild"}, args...), noEnv, io.Discard, io.Discard, nil); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("map-rebuild %q, a directory that does not exist: %v", args, err)
		}
	}
	if err := run(t.Context(), []string{"map-rebuild", "extra"}, noEnv, io.Discard, io.Discard, nil); !errors.Is(err, errUsage) {
		t.Fatalf("stray argument: %v", err)
	}
}

// TestMapRebuildMySQL: `notarize-ledger map-rebuild --storage mysql` needs
// a DSN (flag or environment), refuses --map-dir (the map is in the
// database) and an unknown storage, and reports a
// database it cannot reach as unavailable without repeating the password.
// The rebuild itself, with instances running, is ledger's
// TestMapMySQLRebuild.
func TestMapRebuildMySQL(t *testing.T) {
	if err := run(t.Context(), []string{"map-rebuild", "--storage", "mysql"}, noEnv, io.Discard, io.Discard, nil); err == nil || !strings.Contains(err.Error(), "--mysql-dsn") {
		t.Fatalf("without a DSN: %v", err)
	}
	for _, tc := range []struct {
		args []string
		why  string
	}{
		{[]string{"--storage", "mysql", "--mysql-dsn", "u:p@tcp(127.0.0.1:1)/x", "--map-dir", t.TempDir()}, "only for --storage posix"},
		{[]string{"--storage", "s3"}, `--storage "s3"`},
	} {
		var stderr bytes.Buffer // main exits 2 on errUsage without printing it
		if err := run(t.Context(), append([]string{"map-rebuild"}, tc.args...), noEnv, io.Discard, &stderr, nil); !errors.Is(err, errUsage) || !strings.Contains(stderr.String(), tc.why) {
			t.Fatalf("%q: %v, stderr %q", tc.args, err, stderr.String())
		}
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
