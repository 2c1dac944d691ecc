package main

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/storage/posix"
)

// TestMigrateIndexCommand: a ledger asked for the other engine than its
// directory's refuses to start and names the migration; `notarize-ledger
// migrate-index --data DIR --to pebble` moves the index and the map, keeps
// the bbolt files aside, and the ledger then starts on pebble; it refuses
// a missing or unknown --to, stray arguments, and --index-engine with mysql.
func TestMigrateIndexCommand(t *testing.T) {
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

// TestIndexEngineFromEnvironment: $NOTARIZE_LEDGER_INDEX_ENGINE, read by
// the command (the storage driver reads no environment), picks the engine
// of a new --data directory (pebble when unset) and never changes an
// existing one's; an unknown value is refused naming the variable, before
// anything is opened.
func TestIndexEngineFromEnvironment(t *testing.T) {
	ctx := t.Context()
	open := func(dir, env string) (string, error) {
		getenv := func(k string) string {
			if k == envIndexEngine {
				return env
			}
			return ""
		}
		sf, err := storageOf(&options{storage: storagePOSIX, data: dir}, getenv, ledger.Config{}, nil)
		if err != nil {
			return "", err
		}
		st, err := sf.open(ctx)
		if err != nil {
			return "", err
		}
		defer st.Close()
		return st.(*posix.Storage).IndexEngine(), nil
	}
	dir := t.TempDir()
	if e, err := open(dir, posix.EnginePebble); err != nil || e != posix.EnginePebble {
		t.Fatalf("a new directory with $%s=pebble: %q, %v", envIndexEngine, e, err)
	}
	if e, err := open(dir, posix.EngineBbolt); err != nil || e != posix.EnginePebble {
		t.Fatalf("an existing pebble directory with $%s=bbolt: %q, %v (it keeps its engine)", envIndexEngine, e, err)
	}
	if e, err := open(t.TempDir(), ""); err != nil || e != posix.EnginePebble {
		t.Fatalf("a new directory, no environment: %q, %v (want the default, %s)", e, err, defaultIndexEngine)
	}
	if e, err := open(t.TempDir(), posix.EngineBbolt); err != nil || e != posix.EngineBbolt {
		t.Fatalf("a new directory with $%s=bbolt: %q, %v", envIndexEngine, e, err)
	}
	empty := t.TempDir()
	if _, err := open(empty, "rocksdb"); err == nil || !strings.Contains(err.Error(), "$"+envIndexEngine) {
		t.Fatalf("an unknown engine in $%s: %v", envIndexEngine, err)
	}
	if e, _ := posix.DirEngine(empty); e != "" {
		t.Fatalf("a refused engine left a %s index behind", e)
	}
}

// TestRebuiltIndexKeepsTheMapEngine: the default engine of a new directory
// is pebble; an existing bbolt directory, started with no flag, stays
// bbolt; and a directory that lost only its index is not new. An
// operator deletes a bbolt ledger's index.db to have it rebuilt
// (DEPLOYMENT.md): it comes back as bbolt beside the bbolt vindex.db, with
// no flag and whatever $NOTARIZE_LEDGER_INDEX_ENGINE says, in --data or
// in a --map-dir; it does not turn the directory into one of two engines.
// --index-engine still chooses (migrate-index completes such a directory).
// The banner names the engine. Each ledger is the real command, serving.
func TestRebuiltIndexKeepsTheMapEngine(t *testing.T) {
	skey, _, err := note.GenerateKey(rand.Reader, "cmd.example/engine")
	if err != nil {
		t.Fatal(err)
	}
	serve := func(t *testing.T, args ...string) string {
		var banner string
		t.Run("serve", func(t *testing.T) { // its cleanup stops the ledger
			_, stdout := startRun(t, skey, append([]string{"--addr", "127.0.0.1:0"}, args...)...)
			banner = stdout.String()
		})
		return banner
	}
	files := func(dir string, want ...string) {
		t.Helper()
		for _, name := range []string{posix.IndexFile, posix.IndexDir, "vindex.db", "vindex.pebble"} {
			_, err := os.Stat(filepath.Join(dir, name))
			if has := err == nil; has != slices.Contains(want, name) {
				t.Errorf("%s: %s present %v, want only %v", dir, name, has, want)
			}
		}
	}

	fresh := t.TempDir()
	if b := serve(t, "--data", fresh); !strings.Contains(b, "posix "+fresh+" (index engine pebble)") {
		t.Errorf("a new directory's banner:\n%s", b)
	}
	files(fresh, posix.IndexDir, "vindex.pebble")

	data := t.TempDir()
	serve(t, "--data", data, "--index-engine", "bbolt")
	files(data, posix.IndexFile, "vindex.db")
	// An upgrade: a bbolt directory started with no flag stays bbolt, and
	// so does its map, rebuilt beside its index (map-rebuild).
	if b := serve(t, "--data", data); !strings.Contains(b, "(index engine bbolt)") {
		t.Errorf("an existing bbolt directory's banner:\n%s", b)
	}
	files(data, posix.IndexFile, "vindex.db")
	if err := run(t.Context(), []string{"map-rebuild", "--data", data}, noEnv, io.Discard, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	files(data, posix.IndexFile)
	if b := serve(t, "--data", data); !strings.Contains(b, "(index engine bbolt)") {
		t.Errorf("a bbolt directory without its map, banner:\n%s", b)
	}
	files(data, posix.IndexFile, "vindex.db")
	if err := os.Remove(filepath.Join(data, posix.IndexFile)); err != nil {
		t.Fatal(err)
	}
	if b := serve(t, "--data", data); !strings.Contains(b, "(index engine bbolt)") {
		t.Errorf("the rebuilt index's banner:\n%s", b)
	}
	files(data, posix.IndexFile, "vindex.db")

	data, mapDir := t.TempDir(), t.TempDir()
	serve(t, "--data", data, "--map-dir", mapDir, "--index-engine", "bbolt")
	files(data, posix.IndexFile)
	files(mapDir, "vindex.db")
	if err := os.Remove(filepath.Join(data, posix.IndexFile)); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string {
		if k == envIndexEngine {
			return posix.EnginePebble
		}
		return ""
	}
	if e, err := newIndexEngine(&options{data: data, mapDir: mapDir}, getenv); err != nil || e != posix.EngineBbolt {
		t.Fatalf("an index deleted beside a bbolt map in --map-dir, $%s=pebble: %q, %v", envIndexEngine, e, err)
	}
	serve(t, "--data", data, "--map-dir", mapDir)
	files(data, posix.IndexFile)
	files(mapDir, "vindex.db")

	if err := os.Remove(filepath.Join(data, posix.IndexFile)); err != nil {
		t.Fatal(err)
	}
	if b := serve(t, "--data", data, "--map-dir", mapDir, "--index-engine", "pebble"); !strings.Contains(b, "(index engine pebble)") {
		t.Errorf("--index-engine pebble beside a bbolt map:\n%s", b)
	}
	files(data, posix.IndexDir)
	files(mapDir, "vindex.db")

	both := t.TempDir()
	for _, name := range []string{"vindex.db", "vindex.pebble"} {
		if err := os.Mkdir(filepath.Join(both, name), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := storageOf(&options{storage: storagePOSIX, data: both}, noEnv, ledger.Config{}, nil); err == nil || !strings.Contains(err.Error(), "migrate-index") {
		t.Fatalf("a map in both engines: %v", err)
	}
	files(both, "vindex.db", "vindex.pebble")
}
