package ledger

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/ledger/storage/posix"
	"github.com/notarize/docker-notarize/notarize"
)

// TestPebbleFixMapMarkerLostRefused: LOSS/fork fixed. A pebble map
// (vindex.pebble) whose MANIFEST marker is lost would open as a new map at
// its WAL's position, with the nodes flushed before gone, and the ledger
// would fold onto it and sign roots the log does not recompute. The
// ledger now refuses to start (ErrMapDamaged, naming the directory and
// what to do); once the map is deleted, it rebuilds it from the log and
// every root it signs recomputes.
func TestPebbleFixMapMarkerLostRefused(t *testing.T) {
	t.Setenv(envTestEngine, posix.EnginePebble)
	dir := t.TempDir()
	tl := startLedgerIn(t, dir, Config{MapCommitInterval: 30 * time.Millisecond})
	alice := newTestSigner(t)
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	for range 24 {
		tl.submit(t, alice.sign(t, randomDigest(t), notarize.StatusTrusted, t0), http.StatusCreated)
	}
	waitMapCovers(t, tl, tl.store.Processed())
	tl.restart(t) // the second open flushes the first run's WAL to sstables
	for range 3 {
		tl.submit(t, alice.sign(t, randomDigest(t), notarize.StatusTrusted, t0), http.StatusCreated)
	}
	waitMapCovers(t, tl, tl.store.Processed())
	tl.close(t)
	mdir := filepath.Join(dir, mapDirName)
	m, err := filepath.Glob(filepath.Join(mdir, "marker.manifest.*"))
	if err != nil || len(m) != 1 {
		t.Fatalf("marker: %v %v", m, err)
	}
	if err := os.Remove(m[0]); err != nil {
		t.Fatal(err)
	}
	_, err = New(t.Context(), tl.at(t), tl.cfg)
	if !errors.Is(err, ErrMapDamaged) || !strings.Contains(err.Error(), mdir) || !strings.Contains(err.Error(), "rebuilt from the log") {
		t.Fatalf("a map without its MANIFEST marker: %v, want ErrMapDamaged naming %s", err, mdir)
	}
	if err := os.RemoveAll(mdir); err != nil {
		t.Fatal(err)
	}
	tl.open(t)
	for range 5 {
		tl.submit(t, alice.sign(t, randomDigest(t), notarize.StatusTrusted, t0), http.StatusCreated)
	}
	waitMapCovers(t, tl, tl.store.Processed())
	time.Sleep(100 * time.Millisecond)
	if n := recomputeRoots(t, tl); n == 0 {
		t.Fatal("no map root to recompute")
	}
}

// TestPebbleFixMapBothEnginesRefused: a map directory holding both
// vindex.db and vindex.pebble (a migration interrupted between its
// renames) is refused, as the index is, rather than one picked silently.
func TestPebbleFixMapBothEnginesRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, mapFileName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, mapDirName), 0o700); err != nil {
		t.Fatal(err)
	}
	if e, err := mapEngineOf(dir, nil); err == nil || !strings.Contains(err.Error(), "migrate-index") {
		t.Fatalf("a map dir with both stores: engine %q, err %v; want a refusal naming migrate-index", e, err)
	}
}

// pfMapStore fills a pebble map at dir with n nodes and a position,
// flushed to sstables, and closes it.
func pfMapStore(t *testing.T, dir string, n int) {
	t.Helper()
	m, err := openPebbleMapStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := &storage.MapCommit{From: 0, Position: 1}
	for i := range n {
		c.Writes = append(c.Writes, storage.MapNodeWrite{ID: binary.BigEndian.AppendUint64(nil, uint64(i)), Node: bytes.Repeat([]byte{byte(i)}, 64)})
	}
	if err := m.MapUpdate(t.Context(), func(storage.MapState, storage.MapNodeReader) (*storage.MapCommit, error) { return c, nil }); err != nil {
		t.Fatal(err)
	}
	if err := m.s.DB().Flush(); err != nil {
		t.Fatal(err)
	}
	if err := m.close(); err != nil {
		t.Fatal(err)
	}
}

// pfCorruptMap fills a pebble map at dir with n nodes (pfMapStore) and
// damages the middle of its first sstable, which opening it does not read.
func pfCorruptMap(t *testing.T, dir string, n int) {
	t.Helper()
	pfMapStore(t, dir, n)
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(ssts) == 0 {
		t.Fatal("no sstable")
	}
	b, err := os.ReadFile(ssts[0])
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 4; i < len(b)/2; i += 97 {
		b[i] ^= 0x5a
	}
	if err := os.WriteFile(ssts[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestPebbleFixMapCorruptionFailsReads: DoS fixed for the map. A damaged
// block in the map's sstable makes the read return an error (no panic),
// and from then on the map's views and updates fail (ErrMapDamaged):
// no proof is served and no root folded from a corrupt map.
func TestPebbleFixMapCorruptionFailsReads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), mapDirName)
	const n = 4000
	pfCorruptMap(t, dir, n)
	var logs bytes.Buffer
	defer func(l *slog.Logger) { slog.SetDefault(l) }(slog.Default())
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	m, err := openPebbleMapStore(dir)
	if err != nil {
		t.Fatalf("open: %v", err) // the corrupt block is in the middle: open reads none of it
	}
	defer m.close()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("a read of a corrupt map block panicked: %.300v", r)
		}
	}()
	var readErr error
	for i := 0; i < n && readErr == nil; i += 7 {
		readErr = m.MapView(t.Context(), func(_ storage.MapState, r storage.MapNodeReader) error {
			_, err := r.MapNodes(t.Context(), [][]byte{binary.BigEndian.AppendUint64(nil, uint64(i))})
			return err
		})
	}
	if readErr == nil {
		t.Fatal("every read of a corrupt map succeeded")
	}
	if !strings.Contains(logs.String(), "corrupt") || !strings.Contains(logs.String(), dir) {
		t.Fatalf("the corruption was not logged with the map's path: %s", logs.String())
	}
	if _, err := m.MapState(t.Context()); !errors.Is(err, ErrMapDamaged) {
		t.Fatalf("the map's state after the corruption was reported: %v, want ErrMapDamaged", err)
	}
	err = m.MapUpdate(t.Context(), func(st storage.MapState, _ storage.MapNodeReader) (*storage.MapCommit, error) {
		return &storage.MapCommit{From: st.Position, Position: st.Position + 1}, nil
	})
	if !errors.Is(err, ErrMapDamaged) {
		t.Fatalf("an update after the corruption was reported: %v, want ErrMapDamaged", err)
	}
}

// TestPebbleMapSeekedReadsNeverMissAStoredNode: MapNodes reads a batch of
// seekNodes or more with one iterator, and pebble clears an iterator's
// error at the next seek. A node whose block is corrupt must fail the
// batch, never come back as absent beside nodes read after it: folded as
// absent, it would give the map a root the log does not recompute. Each
// batch spans the damaged part of the sstable and healthy parts after it.
func TestPebbleMapSeekedReadsNeverMissAStoredNode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), mapDirName)
	const n = 4000
	pfCorruptMap(t, dir, n)
	defer func(l *slog.Logger) { slog.SetDefault(l) }(slog.Default())
	slog.SetDefault(slog.New(slog.DiscardHandler))
	m, err := openPebbleMapStore(dir)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer m.close()
	failed := 0
	for i := range n / 2 {
		ids := [][]byte{}
		for j := i; j < n; j += n / 8 {
			ids = append(ids, binary.BigEndian.AppendUint64(nil, uint64(j)))
		}
		if len(ids) < seekNodes {
			t.Fatalf("a batch of %d reads by Get, not by seeks", len(ids))
		}
		// The view's own error is the store's (ErrMapDamaged once pebble
		// reported the corruption); the batch's is what a fold would see.
		_ = m.MapView(t.Context(), func(_ storage.MapState, r storage.MapNodeReader) error {
			vals, err := r.MapNodes(t.Context(), ids)
			if err != nil {
				failed++
				return err
			}
			for k, v := range vals {
				if want := bytes.Repeat([]byte{byte(binary.BigEndian.Uint64(ids[k]))}, 64); !bytes.Equal(v, want) {
					t.Fatalf("node %d of a batch read without error: %x, want %x", binary.BigEndian.Uint64(ids[k]), v, want)
				}
			}
			return nil
		})
	}
	if failed == 0 {
		t.Fatal("no batch read the corrupt block")
	}
}

// TestRebuildMapRemovesAMapTooDamagedToOpen: map-rebuild (RebuildMap) is
// how an operator replaces a damaged map, so it removes one that pebble
// cannot open at all (a malformed MANIFEST, a missing sstable) as it does
// one that lost its marker, and the map is rebuilt from the log at the
// next start; one a ledger holds is still refused (vindex_test.go).
func TestRebuildMapRemovesAMapTooDamagedToOpen(t *testing.T) {
	for name, damage := range map[string]func(t *testing.T, dir string){
		"malformed MANIFEST": func(t *testing.T, dir string) {
			ms, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
			if len(ms) == 0 {
				t.Fatal("no MANIFEST")
			}
			if err := os.WriteFile(ms[len(ms)-1], bytes.Repeat([]byte("not a manifest"), 50), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"missing sstable": func(t *testing.T, dir string) {
			ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
			if len(ssts) == 0 {
				t.Fatal("no sstable")
			}
			if err := os.Remove(ssts[0]); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			data := t.TempDir()
			dir := filepath.Join(data, mapDirName)
			pfMapStore(t, dir, 1000)
			damage(t, dir)
			if _, err := openPebbleMapStore(dir); err == nil {
				t.Fatal("the damaged map opened: the test damages nothing")
			}
			if err := RebuildMap(data); err != nil {
				t.Fatalf("RebuildMap: %v", err)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the damaged map is still there: %v", err)
			}
		})
	}
}
