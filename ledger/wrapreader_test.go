package ledger

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/storage/posix"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
)

// readSeenStorage is POSIX storage whose WrapReader decorates the reader
// the storage's own WrapReader returns with one that records each
// checkpoint it reads: which reads went through the storage's reader.
type readSeenStorage struct {
	*posix.Storage
	mu   sync.Mutex
	read map[string]bool // each checkpoint read through it
}

func (s *readSeenStorage) WrapReader(r tessera.LogReader) tessera.LogReader {
	return seenReader{LogReader: s.Storage.WrapReader(r), s: s}
}

type seenReader struct {
	tessera.LogReader
	s *readSeenStorage
}

func (r seenReader) ReadCheckpoint(ctx context.Context) ([]byte, error) {
	b, err := r.LogReader.ReadCheckpoint(ctx)
	if err == nil {
		r.s.mu.Lock()
		r.s.read[string(b)] = true
		r.s.mu.Unlock()
	}
	return b, err
}

func (s *readSeenStorage) seen(cp string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.read[cp]
}

// TestLedgerReadsThroughTheStorageReader: the checkpoint a receipt, a
// lookup and GET /checkpoint answer with is the one the storage's
// WrapReader read (POSIX's, which bounds the read and reads the file anew
// each time; MySQL's, which reports outages): none of them reads
// Tessera's reader around it (review: no test held the wiring, and a
// ledger that skipped WrapReader passed every test).
func TestLedgerReadsThroughTheStorageReader(t *testing.T) {
	var st *readSeenStorage
	tl := startLedgerAt(t, func(t testing.TB) Storage {
		st = &readSeenStorage{Storage: posixAt(t.TempDir())(t).(*posix.Storage), read: map[string]bool{}}
		return st
	}, Config{})
	check := func(what, answered string) {
		t.Helper()
		if !st.seen(answered) {
			t.Fatalf("%s answered with a checkpoint the storage's reader never read:\n%q", what, answered)
		}
	}
	d := randomDigest(t)
	e := newTestSigner(t).sign(t, d, notarize.StatusTrusted, time.Now())
	check("a receipt", tl.submit(t, e, http.StatusCreated).Checkpoint)
	status, _, b := do(t, http.MethodGet, tl.url+"/"+layout.CheckpointPath, nil)
	if status != http.StatusOK {
		t.Fatalf("GET checkpoint: %d %s", status, b)
	}
	check("GET /checkpoint", string(b))
	check("a lookup", tl.lookup(t, d).Checkpoint)
}
