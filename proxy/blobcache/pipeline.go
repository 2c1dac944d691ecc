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
// What a fill holds at once is still bounded by memWindow and stageDepth,
// and what all fills and their readers hold at once by the cache's fill
// memory budget (Config.FillMemoryBytes): every buffer of chunkPool in use
// is charged to it (takeBuf, putBuf).
var chunkPool = sync.Pool{New: func() any {
	b := make([]byte, memChunkSize)
	return &b
}}

// smallChunkSize is the size of the buffers a fill or a reader uses when
// the fill memory budget is spent (red team 6, F6): the size io.Copy uses,
// so that a fill then costs about what a reader of a cached blob does.
const smallChunkSize = 32 << 10

// smallPool recycles the small buffers; they are not charged to the budget.
var smallPool = sync.Pool{New: func() any {
	b := make([]byte, smallChunkSize)
	return &b
}}

// memBudget bounds the bytes of chunkPool buffers that the fills of one
// cache and their readers hold at once. It never waits: past it, a fill
// streams through its temporary file with small buffers. It is safe for
// concurrent use.
type memBudget struct {
	max  int64
	used atomic.Int64
}

// take charges n bytes, or reports false when they do not fit.
func (b *memBudget) take(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// give returns n bytes taken.
func (b *memBudget) give(n int64) { b.used.Add(-n) }

// takeBuf returns a buffer of memChunkSize charged to the budget, or, with
// the budget spent, one of smallChunkSize (small reports which). Give it
// back with putBuf.
func (c *Cache) takeBuf() (buf *[]byte, small bool) {
	if c.mem.take(memChunkSize) {
		return chunkPool.Get().(*[]byte), false
	}
	c.smallBufs.Add(1)
	return smallPool.Get().(*[]byte), true
}

// putBuf returns a buffer from takeBuf to its pool and, for a large one,
// its bytes to the budget.
func (c *Cache) putBuf(buf *[]byte) {
	if len(*buf) == memChunkSize {
		chunkPool.Put(buf)
		c.mem.give(memChunkSize)
		return
	}
	smallPool.Put(buf)
}

// memChunk is bytes [off, off+len(b)) of the blob, in buf. b only grows,
// under Fill.mu; the bytes it holds do not change while the chunk is in
// Fill.mem or pinned. All fields are guarded by Fill.mu.
type memChunk struct {
	off   int64
	b     []byte
	buf   *[]byte // from Cache.takeBuf; nil once given back
	small bool    // buf is a small buffer: the budget was spent
	pins  int     // readers using b outside Fill.mu
	gone  bool    // out of Fill.mem: back to the pool once unpinned
}

// dropChunkLocked takes c out of use by the fill: its buffer goes back to
// the pool (and the budget) now, or when the last reader using it unpins it.
func (f *Fill) dropChunkLocked(c *memChunk) {
	c.gone = true
	if c.pins == 0 && c.buf != nil {
		f.c.putBuf(c.buf)
		c.buf, c.b = nil, nil
	}
}

// unpin ends a reader's use of c's bytes (see fillReader.next).
func (f *Fill) unpin(c *memChunk) {
	f.mu.Lock()
	c.pins--
	if c.gone {
		f.dropChunkLocked(c)
	}
	f.mu.Unlock()
}

// dropAllLocked drops every chunk in memory: the fill ended, readers go
// on from the file.
func (f *Fill) dropAllLocked() {
	for _, c := range f.mem {
		f.dropChunkLocked(c)
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
	// progress is signalled (under Fill.mu) when the file or the hash
	// advances, or the writer fails: see waitDone.
	progress *sync.Cond
}

func (f *Fill) startStages(tmp *os.File) *stages {
	s := &stages{f: f, w: make(chan span, stageDepth), h: make(chan span, stageDepth), hash: sha256.New(), progress: sync.NewCond(&f.mu)}
	s.wg.Go(func() {
		for sp := range s.w {
			if s.writeErr != nil {
				continue // drain: the receiver stops at its next span
			}
			if _, err := tmp.Write(sp.b); err != nil {
				s.writeErr = fmt.Errorf("blobcache: write: %w", err)
				s.writeFail.Store(true)
				f.mu.Lock()
				s.progress.Broadcast()
				f.mu.Unlock()
				continue
			}
			f.mu.Lock()
			f.fileOff = sp.off + int64(len(sp.b))
			f.dropLocked()
			s.progress.Broadcast()
			f.mu.Unlock()
		}
	})
	s.wg.Go(func() {
		for sp := range s.h {
			s.hash.Write(sp.b)
			f.mu.Lock()
			f.hashed = sp.off + int64(len(sp.b))
			f.dropLocked()
			s.progress.Broadcast()
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

// waitDone waits until the file and the hash have every byte before off,
// or the writer failed. A fill whose budget is spent waits so before each
// new small chunk: it then holds two small chunks, not stageDepth spans.
func (s *stages) waitDone(off int64) error {
	f := s.f
	f.mu.Lock()
	defer f.mu.Unlock()
	for min(f.fileOff, f.hashed) < off {
		if s.writeFail.Load() {
			return errWriteFailed
		}
		s.progress.Wait()
	}
	return nil
}

// finish waits for the writer and the hasher and returns the digest of the
// bytes hashed and the writer's failure.
func (s *stages) finish() (notarize.Digest, error) {
	close(s.w)
	close(s.h)
	s.wg.Wait()
	return digestOf(s.hash), s.writeErr
}

// receive reads the upstream body into memory chunks, publishing each read
// to the readers and handing spans of at least spanMin to the stages. Each
// chunk is a large buffer charged to the cache's fill memory budget or,
// with the budget spent, a small one; then the fill keeps no window of
// recent bytes (readers read the file) and at most two small chunks.
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
			prev := off // the chunk just filled starts there
			off += int64(filled)
			pb, small := f.c.takeBuf()
			if small {
				if err := st.waitDone(prev); err != nil {
					f.c.putBuf(pb)
					return err
				}
			}
			buf, filled, sent = *pb, 0, 0
			f.mu.Lock()
			f.mem = append(f.mem, &memChunk{off: off, buf: pb, small: small})
			if small {
				f.dropLocked() // the window's large chunks go back to the budget now
			}
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
// have, beyond memWindow bytes (readers then read them from the file). A
// small chunk, or any chunk once the newest is small (the budget is spent),
// goes as soon as the file and the hash have it.
func (f *Fill) dropLocked() {
	done := min(f.fileOff, f.hashed)
	lean := len(f.mem) > 0 && f.mem[len(f.mem)-1].small
	for len(f.mem) > 1 {
		c := f.mem[0]
		end := c.off + int64(len(c.b))
		if end > done || len(c.b) < len(*c.buf) {
			return
		}
		if !lean && !c.small && f.written-f.mem[1].off < memWindow {
			return
		}
		f.dropChunkLocked(c)
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
