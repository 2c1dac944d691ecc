package posix

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
)

// checkpointReader is Tessera's POSIX log reader with a leaner checkpoint
// read. The ledger reads the published checkpoint on every lookup answer,
// every receipt and every GET /checkpoint, from the file: never from a
// copy, so that an answer carries the newest checkpoint published before
// it (a revocation's receipt is followed by lookups that see it). Tessera
// reads it with os.ReadFile, which makes ten system calls for a file of a
// few hundred bytes (strace: it sets the file non-blocking, tries to
// register it with the poller, sets it back and stats it); readFile makes
// four (docs/BENCHMARKS.md, round eighteen). The file is read whole each
// time, as before: Tessera replaces it by a rename, so an open file is one
// checkpoint.
type checkpointReader struct {
	tessera.LogReader
	path string
}

// ReadCheckpoint implements tessera.LogReader, as Tessera's does: the
// file's bytes, os.ErrNotExist before the first checkpoint.
func (r checkpointReader) ReadCheckpoint(context.Context) ([]byte, error) {
	b, err := readFile(r.path)
	if errors.Is(err, fs.ErrNotExist) {
		return b, os.ErrNotExist
	}
	return b, err
}

// WrapReader implements storage.Storage: Tessera's reader, its checkpoint
// read by checkpointReader.
func (s *Storage) WrapReader(r tessera.LogReader) tessera.LogReader {
	return checkpointReader{LogReader: r, path: filepath.Join(s.dir, logDirName, layout.CheckpointPath)}
}
