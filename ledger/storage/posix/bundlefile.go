package posix

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/transparency-dev/tessera/api/layout"
)

// OpenEntryBundle opens entry bundle index of width p (0: full) as GET
// /tile/entries/… serves it, for streaming to a client instead of reading
// it into memory: the partial bundle's file, or else the full bundle's cut
// to its first p entries, as Tessera's reader and the ledger's bundleBytes
// do. It returns the bytes to send and their length; a bundle holding
// fewer than p entries, or none, is os.ErrNotExist. The caller closes it.
func (s *Storage) OpenEntryBundle(index uint64, p uint8) (io.ReadCloser, int64, error) {
	open := func(p uint8) (*os.File, int64, error) {
		f, err := os.Open(filepath.Join(s.dir, logDirName, layout.EntriesPath(index, p)))
		if err != nil {
			return nil, 0, err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		return f, st.Size(), nil
	}
	f, size, err := open(p)
	if err != nil && p > 0 && errors.Is(err, fs.ErrNotExist) {
		f, size, err = open(0) // the partial bundle was removed: cut the full one
	}
	if err != nil {
		return nil, 0, fmt.Errorf("entry bundle %d: %w", index, err)
	}
	n := size
	if p > 0 {
		// As bundleBytes: the first p entries of whichever file was
		// opened, never more, and os.ErrNotExist if it holds fewer.
		n, err = firstEntriesLen(f, size, int(p))
	}
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("entry bundle %d of width %d: %w", index, p, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, 0, n), f}, n, nil
}

// firstEntriesLen returns the length of the first n entries of the bundle
// f of size bytes (each a 16-bit big-endian length and its bytes), reading
// only their lengths; fewer than n is os.ErrNotExist.
func firstEntriesLen(f io.ReaderAt, size int64, n int) (int64, error) {
	var off int64
	var l [2]byte
	for range n {
		if off+2 > size {
			return 0, os.ErrNotExist
		}
		if _, err := f.ReadAt(l[:], off); err != nil {
			return 0, err
		}
		off += 2 + int64(binary.BigEndian.Uint16(l[:]))
		if off > size {
			return 0, os.ErrNotExist
		}
	}
	return off, nil
}
