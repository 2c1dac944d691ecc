package pebblestore

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openTest(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, "index", &pebble.Options{}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCloseWaitsForOperations: Close waits for an operation in flight,
// whose reads still answer, and the operations after it fail with
// ErrClosed instead of reaching a closed database (pebble panics there: a
// ledger shutting down with a slow request in flight would crash).
func TestCloseWaitsForOperations(t *testing.T) {
	s := openTest(t, t.TempDir())
	db, release, err := s.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("k"), []byte("v"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while an operation was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	v, c, err := db.Get([]byte("k"))
	if err != nil || string(v) != "v" {
		t.Fatalf("a read in flight during Close: %q, %v", v, err)
	}
	_ = c.Close()
	release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Acquire(); !errors.Is(err, ErrClosed) {
		t.Fatalf("an operation after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("a second Close: %v", err)
	}
}

// TestLostMarkerRefused: a store whose MANIFEST marker is lost, which
// pebble would open as a new store with the old WAL replayed into it, is
// refused with ErrDamaged.
func TestLostMarkerRefused(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	db, release, err := s.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("k"), []byte("v"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	release()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	markers, _ := filepath.Glob(filepath.Join(dir, "marker.manifest.*"))
	if len(markers) == 0 {
		t.Fatal("no MANIFEST marker written")
	}
	for _, m := range markers {
		if err := os.Remove(m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(dir, "index", &pebble.Options{}, quiet()); !errors.Is(err, ErrDamaged) {
		t.Fatalf("open without a MANIFEST marker: %v, want ErrDamaged", err)
	}
}

// TestHeldStoreLocked: a second open of a store that is open is an error
// Locked recognises (the ledger reports the store in use).
func TestHeldStoreLocked(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	defer s.Close()
	_, err := Open(dir, "index", &pebble.Options{}, quiet())
	if err == nil || !Locked(err) {
		t.Fatalf("a second open: %v, want an error Locked recognises", err)
	}
}

// TestFatalExits: pebble's Logger.Fatalf (a fatal commit error on a full
// disk) logs the store, the error and what to do, then exits with status
// 1, instead of panicking.
func TestFatalExits(t *testing.T) {
	var logs bytes.Buffer
	code := -1
	defer func(f func(int)) { exit = f }(exit)
	exit = func(c int) { code = c }
	l := fatalLogger{l: slog.New(slog.NewTextHandler(&logs, nil)), dir: "/data/index.pebble", what: "index"}
	func() {
		defer func() { _ = recover() }() // only because the exit above returned
		l.Fatalf("pebble: fatal commit error: %v", "write 000006.log: no space left on device")
	}()
	if code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	for _, want := range []string{"/data/index.pebble", "no space left on device", "free disk space"} {
		if !strings.Contains(logs.String(), want) {
			t.Fatalf("the fatal log lacks %q: %s", want, logs.String())
		}
	}
}
