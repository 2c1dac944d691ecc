// Package boundedfile reads small files (keys, pins, checkpoints, policy
// and configuration) whose size has a known bound, so that a file that is
// too large is refused instead of read into memory. It imports nothing of
// this module.
package boundedfile

import (
	"fmt"
	"io"
	"os"
)

// Read returns the content of the file at path, or an error if it is
// larger than limit bytes.
func Read(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return b, nil
}
