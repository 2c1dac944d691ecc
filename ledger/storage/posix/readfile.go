package posix

import (
	"errors"
	"io/fs"
	"syscall"
)

// smallFile is the buffer readFile starts with: a checkpoint is a few
// hundred bytes.
const smallFile = 4096

// maxFile is the most readFile reads: a checkpoint with many witnesses'
// cosignatures is a few KiB. Something else planted at its path (a link to
// /dev/zero) fails at this size rather than fill the memory.
const maxFile = 1 << 20

// errTooLarge is readFile's error for a file past maxFile.
var errTooLarge = errors.New("larger than a checkpoint can be (1 MiB)")

// readFile returns the contents of the file at path, as os.ReadFile does,
// in four system calls (open, read, read to EOF, close) where os.ReadFile
// makes ten: it neither tries to register the file with the runtime's
// poller (a regular file is never pollable: four fcntl and an epoll_ctl
// that fails) nor stats it for its size. It opens the file non-blocking,
// which a regular file ignores: something else planted at path (a FIFO)
// fails the read at once rather than hold a thread in read(2) for each
// caller, as it would not being on the poller. It reads at most maxFile
// bytes.
func readFile(path string) ([]byte, error) {
	var fd int
	err := eintr(func() (err error) {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	b := make([]byte, 0, smallFile)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		var n int
		err = eintr(func() (err error) {
			n, err = syscall.Read(fd, b[len(b):cap(b)])
			return err
		})
		if err != nil {
			_ = syscall.Close(fd)
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			break
		}
		b = b[:len(b)+n]
		if len(b) > maxFile {
			_ = syscall.Close(fd)
			return nil, &fs.PathError{Op: "read", Path: path, Err: errTooLarge}
		}
	}
	_ = syscall.Close(fd) // read only: nothing to lose, as os.ReadFile
	return b, nil
}

// eintr calls fn until it fails with another error than EINTR, as the os
// package does.
func eintr(fn func() error) error {
	for {
		if err := fn(); !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
