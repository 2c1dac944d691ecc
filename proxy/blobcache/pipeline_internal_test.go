package blobcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// heldBytes is what the fill holds in memory for its readers now.
func (f *Fill) heldBytes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.mem {
		n += len(*c.buf)
	}
	return n
}

// caughtUp reports whether the file and the hash have every byte received.
func (f *Fill) caughtUp() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fileOff == f.written && f.hashed == f.written
}

// TestFillMemoryBounded streams a 48 MiB blob to a client that stalls
// after its first bytes: the fill keeps at most memWindow and two chunks in
// memory once the file and the hash have the bytes, and the chunks of the
// spans queued for them (stageDepth) more while they catch up, whatever
// the blob's size; the stalled reader then reads the rest from the file,
// all of it right.
func TestFillMemoryBounded(t *testing.T) {
	c, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	blob := make([]byte, 48<<20)
	for i := range blob {
		blob[i] = byte(i * 31 >> 8)
	}
	d := notarize.DigestOf(blob)
	pr, pw := io.Pipe()
	fill, _ := c.Fill(t.Context(), d, func(context.Context) (io.ReadCloser, int64, error) { return pr, int64(len(blob)), nil })
	defer fill.Release()
	go func() { _, _ = pw.Write(blob[:64<<10]) }()
	if _, err := fill.Started(t.Context()); err != nil {
		t.Fatal(err)
	}
	rd := fill.NewReader(t.Context())
	defer rd.Close()
	first := make([]byte, 32<<10) // less than was sent: a fill holds back its last byte
	if _, err := io.ReadFull(rd, first); err != nil {
		t.Fatal(err)
	}
	// The window, the chunk being filled, and the chunks of the spans the
	// writer and the hasher have queued (stageDepth), are working on, and
	// the receiver is pushing: ~15 MiB, whatever the blob's size.
	const inFlight = memWindow + (stageDepth+3)*memChunkSize
	most := 0
	for off := 64 << 10; off < len(blob)-1; off += 1 << 20 {
		if _, err := pw.Write(blob[off:min(off+1<<20, len(blob)-1)]); err != nil {
			t.Fatal(err)
		}
		most = max(most, fill.heldBytes())
	}
	if most > inFlight {
		t.Fatalf("the fill held %d bytes in memory, more than %d", most, inFlight)
	}
	for deadline := time.Now().Add(30 * time.Second); !fill.caughtUp(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the file and the hash did not catch up")
		}
	}
	if held := fill.heldBytes(); held > memWindow+2*memChunkSize {
		t.Fatalf("the fill holds %d bytes in memory once written and hashed, more than %d", held, memWindow+2*memChunkSize)
	}
	_, _ = pw.Write(blob[len(blob)-1:])
	_ = pw.Close()
	rest, err := io.ReadAll(rd)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(first, rest...), blob) {
		t.Fatal("the stalled reader got other bytes than the blob's")
	}
}

// TestFillsLeaveNoGoroutines: a good fill, a fill whose bytes do not match
// the digest, a fill whose upstream fails mid-body and a reader whose
// request is cancelled mid-stream each end with the download's goroutine
// and its writer and hasher gone.
func TestFillsLeaveNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	c, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	blob := bytes.Repeat([]byte("notarize"), 3<<20/8)
	d := notarize.DigestOf(blob)
	for _, tc := range []struct {
		name   string
		body   func() io.Reader
		cancel bool
		want   error
	}{
		{"good", func() io.Reader { return bytes.NewReader(blob) }, false, nil},
		{"mismatch", func() io.Reader { b := bytes.Clone(blob); b[5] ^= 1; return bytes.NewReader(b) }, false, ErrDigestMismatch},
		{"upstream fails", func() io.Reader {
			return io.MultiReader(bytes.NewReader(blob[:1<<20]), iotestErrReader{})
		}, false, errUpstream},
		{"client cancels", nil, true, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			body := tc.body
			pr, pw := io.Pipe()
			defer pw.CloseWithError(errUpstream)
			if body == nil { // the upstream stalls after its first MiB
				body = func() io.Reader { return pr }
				go func() { _, _ = pw.Write(blob[:1<<20]) }()
			}
			fill, _ := c.Fill(ctx, d, func(context.Context) (io.ReadCloser, int64, error) {
				return io.NopCloser(body()), int64(len(blob)), nil
			})
			if _, err := fill.Started(ctx); err != nil {
				t.Fatal(err)
			}
			rd := fill.NewReader(ctx)
			var err error
			if tc.cancel {
				_, err = io.ReadFull(rd, make([]byte, 512<<10)) // not the whole MiB: a fill holds back its last byte
				if err != nil {
					t.Fatal(err)
				}
				cancel() // the reader waits for more bytes
			}
			_, err = io.Copy(io.Discard, rd)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("the reader ended with %v, want %v", err, tc.want)
			}
			rd.Close()
			pw.CloseWithError(errUpstream) // the stalled upstream ends; the fill fails
			_ = fill.Wait(t.Context())
			fill.Release()
		})
	}
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after the fills ended, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
	}
}

var errUpstream = fmt.Errorf("upstream reset")

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errUpstream }

// TestReaderReadsOnlyWhatTheFileHas puts a reader behind the memory window
// while the writer lags: the chunks from fileOff on are in memory only, and
// the temporary file holds other bytes there (as a preallocated file, or one
// extended by anyone else, would: zeros, here 0xff). The reader must take
// the file's bytes only up to fileOff and the rest from memory. Before the
// fix it read a whole chunk's worth from the file and served the wrong
// bytes (found with fallocate(2), in the cold-blob benchmark).
func TestReaderReadsOnlyWhatTheFileHas(t *testing.T) {
	c, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	const size = 4 * memChunkSize
	blob := make([]byte, size)
	for i := range blob {
		blob[i] = byte(i * 7 >> 4)
	}
	file, err := os.CreateTemp(t.TempDir(), "fill-*")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	written := int64(2 * memChunkSize) // the writer's progress: chunks 0 and 1
	if _, err := file.Write(blob[:written]); err != nil {
		t.Fatal(err)
	}
	if _, err := file.Write(bytes.Repeat([]byte{0xff}, size-int(written))); err != nil {
		t.Fatal(err)
	}
	f := &Fill{c: c, d: notarize.DigestOf(blob), started: make(chan struct{}), done: make(chan struct{}), notify: make(chan struct{}),
		file: file, size: size, written: size, fileOff: written, hashed: size}
	for off := written; off < size; off += memChunkSize {
		buf := make([]byte, memChunkSize)
		copy(buf, blob[off:])
		f.mem = append(f.mem, &memChunk{off: off, b: buf, buf: &buf})
	}
	rd := &fillReader{f: f, ctx: t.Context(), off: written - memChunkSize/2}
	seg, err := rd.next(memChunkSize)
	if err != nil {
		t.Fatal(err)
	}
	if seg.c != nil || seg.n != memChunkSize/2 {
		t.Fatalf("the reader's next segment: in memory %v, %d bytes from the file; want the %d the file has", seg.c != nil, seg.n, memChunkSize/2)
	}
	// Read all but the held-back last byte, through Read and WriteTo.
	for _, how := range []string{"Read", "WriteTo"} {
		rd := &fillReader{f: f, ctx: t.Context(), off: written - memChunkSize/2}
		var got bytes.Buffer
		switch how {
		case "Read":
			buf := make([]byte, memChunkSize)
			for rd.off < size-1 { // the last byte is held back: not verified
				n, err := rd.Read(buf)
				if err != nil {
					t.Fatal(how, err)
				}
				got.Write(buf[:n])
			}
		case "WriteTo":
			f.mu.Lock()
			f.verified = true // so that WriteTo returns at the end
			f.mu.Unlock()
			if _, err := rd.WriteTo(&got); err != nil {
				t.Fatal(how, err)
			}
		}
		want := blob[written-memChunkSize/2:][:got.Len()]
		if i := firstDifference(got.Bytes(), want); i >= 0 {
			t.Fatalf("%s: byte %d of the blob is %#x, want %#x", how, int(written)-memChunkSize/2+i, got.Bytes()[i], want[i])
		}
	}
}

// TestReaderFailsOnBytesNowhere: were a chunk ever to leave memory before
// the file had it, a reader there gets an error, not the file's bytes and
// not a wait that nothing would end.
func TestReaderFailsOnBytesNowhere(t *testing.T) {
	c, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.CreateTemp(t.TempDir(), "fill-*")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if _, err := file.Write(make([]byte, 4*memChunkSize)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, memChunkSize)
	f := &Fill{c: c, d: notarize.DigestOf(nil), started: make(chan struct{}), done: make(chan struct{}), notify: make(chan struct{}),
		file: file, size: 4 * memChunkSize, written: 4 * memChunkSize, fileOff: 2 * memChunkSize, hashed: 4 * memChunkSize,
		mem: []*memChunk{{off: 3 * memChunkSize, b: buf, buf: &buf}}}
	rd := &fillReader{f: f, ctx: t.Context(), off: 2*memChunkSize + 1}
	if seg, err := rd.next(memChunkSize); err == nil || !strings.Contains(err.Error(), "in neither memory nor the file") {
		t.Fatalf("next: %+v, %v; want the error", seg, err)
	}
}

func firstDifference(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}
