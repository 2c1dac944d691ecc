package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// ErrNotRegularFile is returned (wrapped) for a file:PATH that is not a
// regular file: a directory, a named pipe, a device or a socket could block
// the command forever or never end, and only a regular file's bytes have a
// digest that means the same to everyone.
var ErrNotRegularFile = errors.New("not a regular file")

// checkRegular refuses anything but a regular file, naming what it is.
func checkRegular(path string, fi fs.FileInfo) error {
	var what string
	switch m := fi.Mode(); {
	case m.IsRegular():
		return nil
	case m.IsDir():
		what = "a directory (signing a directory is not supported: sign an archive of it)"
	case m&fs.ModeNamedPipe != 0:
		what = "a named pipe (FIFO)"
	case m&fs.ModeCharDevice != 0:
		what = "a character device"
	case m&fs.ModeDevice != 0:
		what = "a block device"
	case m&fs.ModeSocket != 0:
		what = "a socket"
	default:
		what = "of type " + m.Type().String()
	}
	return fmt.Errorf("%s is %s: %w", path, what, ErrNotRegularFile)
}

// openRegular opens the regular file at path, which Stat described as fi,
// without blocking: non-blocking, so that a FIFO swapped in after the Stat
// cannot hold the open, and checked again once open, so that whatever was
// swapped in is refused.
func openRegular(path string, fi fs.FileInfo) (*os.File, error) {
	if err := checkRegular(path, fi); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	opened, err := f.Stat()
	if err == nil {
		err = checkRegular(path, opened)
	}
	if err == nil && !os.SameFile(fi, opened) {
		err = fmt.Errorf("%s changed while it was opened", path)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// contextReader reads from r until ctx is done: a long hash ends with the
// command (Ctrl-C).
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
