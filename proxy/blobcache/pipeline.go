package blobcache

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/notarize/docker-notarize/notarize"
)

// The cold path (issue 14): one goroutine reads the upstream into memory
// chunks, which readers stream from at once; two more, overlapped with it
// on other cores, write the chunks to the temporary file and hash them.
// Readers still get the last byte only once the hasher has checked every
// byte against the digest. Chunks stay in memory, for readers, until both
// the file and the hash have them and a window of recent bytes is full;
// a reader further behind reads the file.
const (
	// memChunkSize is the size of one memory chunk (the upstream is read
	// into it, several reads at a time).
	memChunkSize = 1 << 20
	// memWindow is how many bytes of a fill are kept in memory for its
	// readers once written and hashed.
	memWindow = 4 << 20
	// spanMin is the least a span handed to the writer and the hasher
	// holds (except the last of a chunk and of the blob).
	spanMin = 256 << 10
	// stageDepth bounds the spans queued for the writer and the hasher:
	// the upstream is read at most this far ahead of the slower of them.
	stageDepth = 8
)

// chunkPool recycles the buffers of memory chunks. Without it a cold fill
// allocated, zeroed and left to the garbage collector its blob's whole size
// (1 MiB at a time; a tenth of the proxy's CPU in a 200 MiB cold pull).
// What a fill holds at once is still bounded by memWindow and stageDepth.
var chunkPool = sync.Pool{New: func() any {
	b := make([]byte, memChunkSize)
	return &b
}}

// memChunk is bytes [off, off+len(b)) of the blob, in buf. b only grows,
// under Fill.mu; the bytes it holds do not change while the chunk is in
// Fill.mem or pinned. All fields are guarded by Fill.mu.
type memChunk struct {
	off  int64
	b    []byte
	buf  *[]byte // from chunkPool; nil once returned there
	pins int     // readers using b outside Fill.mu
	gone bool    // out of Fill.mem: back to the pool once unpinned
}

// dropChunkLocked takes c out of use by the fill: its buffer goes back to
// the pool now, or when the last reader using it unpins it.
func dropChunkLocked(c *memChunk) {
	c.gone = true
	if c.pins == 0 && c.buf != nil {
		chunkPool.Put(c.buf)
		c.buf, c.b = nil, nil
	}
}

// unpin ends a reader's use of c's bytes (see fillReader.next).
func (f *Fill) unpin(c *memChunk) {
	f.mu.Lock()
	c.pins--
	if c.gone {
		dropChunkLocked(c)
	}
	f.mu.Unlock()
}

// dropAllLocked drops every chunk in memory: the fill ended, readers go
// on from the file.
func (f *Fill) dropAllLocked() {
	for _, c := range f.mem {
		dropChunkLocked(c)
	}
	f.mem = nil
}

type span struct {
	off int64
	b   []byte
}

// stages are the writer and the hasher of one fill.
type stages struct {
	f         *Fill
	w, h      chan span
	wg        sync.WaitGroup
	hash      hash.Hash
	writeErr  error       // the writer's; read after wg.Wait
	writeFail atomic.Bool // tells the receiver to stop early
}

func (f *Fill) startStages(tmp *os.File) *stages {
	s := &stages{f: f, w: make(chan span, stageDepth), h: make(chan span, stageDepth), hash: sha256.New()}
	s.wg.Go(func() {
		for sp := range s.w {
			if s.writeErr != nil {
				continue // drain: the receiver stops at its next span
			}
			if _, err := tmp.Write(sp.b); err != nil {
				s.writeErr = fmt.Errorf("blobcache: write: %w", err)
				s.writeFail.Store(true)
				continue
			}
			f.mu.Lock()
			f.fileOff = sp.off + int64(len(sp.b))
			f.dropLocked()
			f.mu.Unlock()
		}
	})
	s.wg.Go(func() {
		for sp := range s.h {
			s.hash.Write(sp.b)
			f.mu.Lock()
			f.hashed = sp.off + int64(len(sp.b))
			f.dropLocked()
			f.mu.Unlock()
		}
	})
	return s
}

// push hands a span to the writer and the hasher, waiting while they are
// stageDepth spans behind.
func (s *stages) push(sp span) error {
	if s.writeFail.Load() {
		return errWriteFailed
	}
	s.w <- sp
	s.h <- sp
	return nil
}

var errWriteFailed = fmt.Errorf("blobcache: write failed")

// finish waits for the writer and the hasher and returns the digest of the
// bytes hashed and the writer's failure.
func (s *stages) finish() (notarize.Digest, error) {
	close(s.w)
	close(s.h)
	s.wg.Wait()
	return digestOf(s.hash), s.writeErr
}

// receive reads the upstream body into memory chunks, publishing each read
// to the readers and handing spans of at least spanMin to the stages.
func (f *Fill) receive(body io.Reader, size int64, st *stages) error {
	var (
		buf    []byte // the current chunk's buffer
		filled int    // bytes of buf received
		sent   int    // bytes of buf handed to the stages
		off    int64  // the blob offset of buf[0]
	)
	flush := func() error {
		if filled == sent {
			return nil
		}
		sp := span{off: off + int64(sent), b: buf[sent:filled]}
		sent = filled
		return st.push(sp)
	}
	for {
		if buf == nil || filled == len(buf) {
			if err := flush(); err != nil {
				return err
			}
			off += int64(filled)
			pb := chunkPool.Get().(*[]byte)
			buf, filled, sent = *pb, 0, 0
			f.mu.Lock()
			f.mem = append(f.mem, &memChunk{off: off, buf: pb})
			f.mu.Unlock()
		}
		n, rerr := body.Read(buf[filled:])
		if n > 0 {
			if size >= 0 && off+int64(filled+n) > size {
				return fmt.Errorf("blob %s: %w: more than %d bytes", f.d, ErrSizeMismatch, size)
			}
			filled += n
			f.mu.Lock()
			f.mem[len(f.mem)-1].b = buf[:filled]
			f.written = off + int64(filled)
			f.wakeLocked()
			f.mu.Unlock()
			if filled-sent >= spanMin {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return flush()
		}
		if rerr != nil {
			return fmt.Errorf("blob %s: read from upstream after %d bytes: %w", f.d, off+int64(filled), rerr)
		}
	}
}

// wakeLocked wakes the readers waiting for bytes, if any.
func (f *Fill) wakeLocked() {
	if f.waiters > 0 {
		close(f.notify)
		f.notify = make(chan struct{})
		f.waiters = 0
	}
}

// dropLocked lets go of the oldest chunks that the file and the hash both
// have, beyond memWindow bytes (readers then read them from the file).
func (f *Fill) dropLocked() {
	done := min(f.fileOff, f.hashed)
	for len(f.mem) > 1 {
		c := f.mem[0]
		end := c.off + int64(len(c.b))
		if end > done || f.written-f.mem[1].off < memWindow || len(c.b) < memChunkSize {
			return
		}
		dropChunkLocked(c)
		f.mem[0] = nil
		f.mem = f.mem[1:]
	}
}

// memAtLocked returns the chunk holding the blob's byte at off and its
// bytes from off up to avail, if it is in memory.
func (f *Fill) memAtLocked(off, avail int64) (*memChunk, []byte) {
	for i := len(f.mem) - 1; i >= 0; i-- {
		c := f.mem[i]
		if off >= c.off {
			end := min(c.off+int64(len(c.b)), avail)
			if off < end {
				return c, c.b[off-c.off : end-c.off]
			}
			return nil, nil
		}
	}
	return nil, nil
}
