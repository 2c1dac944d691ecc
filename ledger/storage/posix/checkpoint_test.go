package posix

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/api/layout"
)

// TestReadFileAgreesWithOS: readFile returns what os.ReadFile does, for
// empty, small, buffer-sized and larger files, and fails as it does for a
// file that is not there and a directory.
func TestReadFileAgreesWithOS(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []int{0, 1, 300, smallFile - 1, smallFile, smallFile + 1, 3*smallFile + 17, 1 << 20} {
		p := filepath.Join(dir, "f")
		want := bytes.Repeat([]byte("checkpoint\n"), n/11+1)[:n]
		if err := os.WriteFile(p, want, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%d bytes: read %d bytes, %v", n, len(got), err)
		}
	}
	if _, err := readFile(filepath.Join(dir, "absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a missing file: %v, want fs.ErrNotExist", err)
	}
	_, err := readFile(dir)
	_, osErr := os.ReadFile(dir)
	if err == nil || osErr == nil {
		t.Fatalf("a directory: %v (os.ReadFile: %v), want an error", err, osErr)
	}
}

// TestReadFileNeverWaitsOnAFIFO: a FIFO planted where the checkpoint is,
// held open by a writer that writes nothing, fails the read at once: a
// read that waited would hold an OS thread per request (readFile is not on
// the runtime's poller) until the process ran out of them.
func TestReadFileNeverWaitsOnAFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "checkpoint")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(p, os.O_RDWR, 0) // a writer (and reader) that never writes
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	done := make(chan error, 1)
	go func() {
		_, err := readFile(p)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a FIFO with nothing in it read as a file")
		}
		t.Logf("refused: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("readFile waits on a FIFO")
	}
}

// TestReadFileBounded: what is planted where the checkpoint is cannot make
// a read fill the memory (helper-100: a link to /dev/zero read on until it
// did); a file of exactly maxFile bytes still reads.
func TestReadFileBounded(t *testing.T) {
	dir := t.TempDir()
	zero := filepath.Join(dir, "checkpoint")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	if b, err := readFile(zero); !errors.Is(err, errTooLarge) {
		t.Fatalf("a link to /dev/zero: %d bytes, %v; want errTooLarge", len(b), err)
	}
	full := filepath.Join(dir, "full")
	if err := os.WriteFile(full, bytes.Repeat([]byte{'x'}, maxFile), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := readFile(full); err != nil || len(b) != maxFile {
		t.Fatalf("a file of maxFile bytes: %d bytes, %v", len(b), err)
	}
}

// TestReadFileClosesWhatItOpened: a read that fails (a FIFO with nothing
// in it, a file past maxFile) closes its descriptor, as one that succeeds
// does: a planted FIFO read on every request must not run the process out
// of descriptors.
func TestReadFileClosesWhatItOpened(t *testing.T) {
	dir := t.TempDir()
	fifo, zero := filepath.Join(dir, "fifo"), filepath.Join(dir, "zero")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	fds := func() int {
		es, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(es)
	}
	before := fds()
	for range 100 {
		if _, err := readFile(fifo); err == nil {
			t.Fatal("an empty FIFO read as a file")
		}
		if _, err := readFile(zero); err == nil {
			t.Fatal("/dev/zero read as a file")
		}
	}
	if after := fds(); after > before+5 { // slack for the runtime's own
		t.Fatalf("%d descriptors open after 200 failed reads, %d before", after, before)
	}
}

// TestCheckpointReaderReadsTheFileEveryTime: the wrapped reader answers
// with the checkpoint on disk at the time of each call, never a copy: a
// checkpoint replaced (as Tessera publishes one, by a rename) is the next
// one read, and os.ErrNotExist before the first, as Tessera's reader.
func TestCheckpointReaderReadsTheFileEveryTime(t *testing.T) {
	ctx := context.Background()
	s := &Storage{dir: t.TempDir()}
	if err := os.MkdirAll(filepath.Join(s.dir, logDirName), 0o700); err != nil {
		t.Fatal(err)
	}
	r := s.WrapReader(nil)
	if _, err := r.ReadCheckpoint(ctx); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("before the first checkpoint: %v, want os.ErrNotExist", err)
	}
	path := filepath.Join(s.dir, logDirName, layout.CheckpointPath)
	for i := range 50 {
		want := []byte(strings.Repeat("x", i%7) + "origin\n" + string(rune('0'+i%10)) + "\n")
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, want, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		got, err := r.ReadCheckpoint(ctx)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("checkpoint %d: read %q, %v; want %q", i, got, err, want)
		}
	}
}

// BenchmarkReadCheckpoint compares os.ReadFile, Tessera's read of the
// checkpoint, with readFile on a checkpoint-sized file.
//
//	go test -run '^$' -bench ReadCheckpoint ./ledger/storage/posix/
func BenchmarkReadCheckpoint(b *testing.B) {
	p := filepath.Join(b.TempDir(), "checkpoint")
	if err := os.WriteFile(p, bytes.Repeat([]byte("c"), 330), 0o600); err != nil {
		b.Fatal(err)
	}
	for _, way := range []struct {
		name string
		read func(string) ([]byte, error)
	}{{"os.ReadFile", os.ReadFile}, {"readFile", readFile}} {
		b.Run(way.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := way.read(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
