package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/ledger/storage/posix"
)

// TestMigrateIndexCommand: a ledger asked for the other engine than its
// directory's refuses to start and names the migration; `notarize-ledger
// migrate-index --data DIR --to pebble` moves the index and the map, keeps
// the bbolt files aside, and the ledger then starts on pebble; it refuses
// a missing or unknown --to, stray arguments, and --index-engine with mysql.
func TestMigrateIndexCommand(t *testing.T) {
	t.Setenv(posix.EnvIndexEngine, "")
	ctx := t.Context()
	dir := t.TempDir()
	st, err := posix.New(ctx, posix.Config{Dir: dir, Engine: posix.EngineBbolt})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	err = run(ctx, []string{"--data", dir, "--addr", "127.0.0.1:0", "--index-engine", "pebble"}, noEnv, io.Discard, io.Discard, nil)
	if !errors.Is(err, posix.ErrEngineMismatch) || !strings.Contains(err.Error(), "notarize-ledger migrate-index --data "+dir+" --to pebble") {
		t.Fatalf("pebble asked of a bbolt directory: %v", err)
	}
	for _, args := range [][]string{
		{"migrate-index", "--data", dir},
		{"migrate-index", "--data", dir, "--to", "bbolt"},
		{"migrate-index", "--data", dir, "--to", "pebble", "extra"},
		{"--storage", "mysql", "--mysql-dsn", "u:p@tcp(127.0.0.1:1)/x", "--index-engine", "pebble"},
		{"--data", dir, "--index-engine", "rocksdb"},
	} {
		if err := run(ctx, args, noEnv, io.Discard, io.Discard, nil); err == nil {
			t.Fatalf("%q: no error", args)
		}
	}
	if e, _ := posix.DirEngine(dir); e != posix.EngineBbolt {
		t.Fatalf("a refused migration changed the engine to %q", e)
	}
	var stdout bytes.Buffer
	if err := run(ctx, []string{"migrate-index", "--data", dir, "--to", "pebble"}, noEnv, &stdout, io.Discard, nil); err != nil {
		t.Fatalf("migrate-index: %v", err)
	}
	if !strings.Contains(stdout.String(), "index engine pebble") {
		t.Fatalf("output %q", stdout.String())
	}
	if _, err := os.Stat(filepath.Join(dir, posix.IndexFile+posix.OldSuffix)); err != nil {
		t.Fatalf("the bbolt index was not kept aside: %v", err)
	}
	if st, err = posix.New(ctx, posix.Config{Dir: dir}); err != nil || st.IndexEngine() != posix.EnginePebble {
		t.Fatalf("after the migration: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}
