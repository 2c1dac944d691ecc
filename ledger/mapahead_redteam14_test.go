package ledger

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/ledger/storage/posix"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/transparency-dev/tessera"
)

// Red team 14: the map (pebble or bbolt) is not tied to its log. Fails:
// build tag redteam14. Run: go test -tags redteam14 -run Redteam14Map ./ledger/

// TestRedteam14MapAheadOfRestoredLog: LOSS (fork of the signed map). A
// pebble ledger with its map in
// --map-dir whose data directory (log and index) is restored from an
// older backup while the map directory is not: the map is ahead of the
// log. The ledger must not fold the restored log's new entries onto a map
// that holds entries the log does not: either it refuses to start, or
// every map root it commits recomputes from the log. Observed (2 of 2):
// it starts, waits while the log is shorter than the map's position
// (mapFollower.step: size <= st.Position), then folds the restored log's
// entries from the map's position onward onto the other history: the
// root it commits does not recompute from the log. (Restoring a log from
// an older backup forks the log too; the map must not add a fork of its
// own, and the same hole takes a --map-dir pointed at another ledger's
// map: TestRedteam14MapOfAnotherLedger.) Same with bbolt. Fix: at start,
// check the map's stored root record against the log (the entry at
// Root.Index must be Root.Entry and Position <= the log's size), else
// refuse naming notarize-ledger map-rebuild.
func TestRedteam14MapAheadOfRestoredLog(t *testing.T) {
	t.Setenv(envTestEngine, posix.EnginePebble)
	base := t.TempDir()
	dir, backup, mapDir := filepath.Join(base, "data"), filepath.Join(base, "backup"), filepath.Join(base, "map")
	if err := os.Mkdir(mapDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := Config{MapDir: mapDir, MapCommitInterval: 30 * time.Millisecond}
	tl := startLedgerIn(t, dir, cfg)
	s := newTestSigner(t)
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	submit := func(n int) {
		for range n {
			tl.submit(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, t0), http.StatusCreated)
		}
		waitMapCovers(t, tl, tl.store.Processed())
	}
	submit(4)
	tl.close(t)
	if err := os.CopyFS(backup, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	tl.open(t)
	submit(10)
	tl.close(t)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(backup, dir); err != nil {
		t.Fatal(err)
	}
	l, err := openPOSIX(t, dir, cfg)
	if err != nil {
		t.Logf("the ledger refused a map ahead of its log: %v", err)
		// The command it names finds the map where the ledger keeps it.
		if want := "notarize-ledger map-rebuild --data " + dir + " --map-dir " + mapDir; !strings.Contains(err.Error(), want) {
			t.Fatalf("the refusal does not name %q", want)
		}
		return
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	tl.open(t)
	submit(20)
	time.Sleep(100 * time.Millisecond)
	t.Log("a failure below is a LOSS: a committed map root that the restored log does not recompute (a fork)")
	recomputeRoots(t, tl)
}

// TestRedteam14MapOfAnotherLedger: LOSS (fork). A ledger started with the
// --map-dir of another ledger (a configuration copied from one host to
// the next) takes that ledger's map as its own: it folds its log onto it
// and commits roots that its log does not recompute. Fix as above.
func TestRedteam14MapOfAnotherLedger(t *testing.T) {
	t.Setenv(envTestEngine, posix.EnginePebble)
	base := t.TempDir()
	mapDir := filepath.Join(base, "map")
	if err := os.Mkdir(mapDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := Config{MapDir: mapDir, MapCommitInterval: 30 * time.Millisecond}
	s := newTestSigner(t)
	t0 := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	a := startLedgerIn(t, filepath.Join(base, "a"), cfg)
	for range 6 {
		a.submit(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, t0), http.StatusCreated)
	}
	waitMapCovers(t, a, a.store.Processed())
	a.close(t)
	b := startLedgerIn(t, filepath.Join(base, "b"), Config{MapCommitInterval: 30 * time.Millisecond})
	for range 12 {
		b.submit(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, t0), http.StatusCreated)
	}
	waitMapCovers(t, b, b.store.Processed())
	b.close(t)
	b.cfg = cfg // b restarted with a's map directory
	if l, err := openPOSIX(t, b.dir, cfg); err != nil {
		t.Logf("the ledger refused another ledger's map: %v", err)
		return
	} else if err := l.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	b.open(t)
	for range 4 {
		b.submit(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, t0), http.StatusCreated)
	}
	waitMapCovers(t, b, b.store.Processed())
	time.Sleep(100 * time.Millisecond)
	t.Log("a failure below is a LOSS: a committed map root that this ledger's log does not recompute (a fork)")
	recomputeRoots(t, b)
}

// failingCheckpoints is a log reader whose checkpoint cannot be read.
type failingCheckpoints struct {
	tessera.LogReader
	err error
}

func (f failingCheckpoints) ReadCheckpoint(context.Context) ([]byte, error) { return nil, f.err }

// storedMap is a map store whose state is st.
type storedMap struct {
	storage.MapStore
	st storage.MapState
}

func (m storedMap) MapState(context.Context) (storage.MapState, error) { return m.st, nil }

// TestMapCheckWithAnUnreadableCheckpoint: at start, a checkpoint that
// cannot be read (an I/O error, not its absence) is reported as such. It
// was taken for an empty log, so the ledger refused its own map as "ahead
// of the log" and told the operator to delete it. A log with no checkpoint
// yet is an empty one: a map with entries is ahead of it.
func TestMapCheckWithAnUnreadableCheckpoint(t *testing.T) {
	m := storedMap{st: storage.MapState{Position: 5}}
	l := &Ledger{reader: failingCheckpoints{err: syscall.EIO}}
	err := l.checkMapOfLog(t.Context(), m, "/var/lib/map")
	if err == nil || errors.Is(err, ErrMapNotOfLog) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("an unreadable checkpoint: %v; want the read's error, not ErrMapNotOfLog", err)
	}
	l.reader = failingCheckpoints{err: os.ErrNotExist}
	if err := l.checkMapOfLog(t.Context(), m, "/var/lib/map"); !errors.Is(err, ErrMapNotOfLog) {
		t.Fatalf("no checkpoint yet, a map of 5 entries: %v, want ErrMapNotOfLog", err)
	}
}

// TestMapRebuildCommandQuotesPaths: the command a refusal names can be
// pasted into a shell whatever the directories' names.
func TestMapRebuildCommandQuotesPaths(t *testing.T) {
	for _, c := range []struct{ dir, want string }{
		{"/var/lib/notarize-map", "notarize-ledger map-rebuild --data DIR --map-dir /var/lib/notarize-map"},
		{"/srv/my map", "notarize-ledger map-rebuild --data DIR --map-dir '/srv/my map'"},
		{"/srv/it's; rm -rf ~", `notarize-ledger map-rebuild --data DIR --map-dir '/srv/it'\''s; rm -rf ~'`},
		{"$HOME/map", "notarize-ledger map-rebuild --data DIR --map-dir '$HOME/map'"},
	} {
		l := &Ledger{cfg: Config{MapDir: c.dir}}
		if got := l.mapRebuildCommand(); got != c.want {
			t.Errorf("--map-dir %q: %s, want %s", c.dir, got, c.want)
		}
	}
	// --data, from the storage's directory (helper-100: no test quoted it).
	l := &Ledger{st: dirStorage{dir: "/srv/it's; rm -rf ~"}}
	if got, want := l.mapRebuildCommand(), `notarize-ledger map-rebuild --data '/srv/it'\''s; rm -rf ~'`; got != want {
		t.Errorf("--data: %s, want %s", got, want)
	}
}

// dirStorage is a Storage whose directory is dir.
type dirStorage struct {
	Storage
	dir string
}

func (s dirStorage) Dir() string { return s.dir }
