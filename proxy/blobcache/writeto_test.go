package blobcache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/blobcache"
)

// recorder is an io.Writer that keeps what it was given and tells how much.
type recorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *recorder) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *recorder) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Len()
}

// TestWriteToWaitsForVerification is TestLastByteWaitsForVerification for
// the reader's WriteTo, which io.Copy (and so the proxy's client stream)
// uses: everything but the last byte is written while the body is still
// open; the last byte only once the digest is checked, and a mismatch ends
// WriteTo with ErrDigestMismatch, the last byte never written, nothing
// committed. The large blobs are read late: their first bytes come from
// the file, the rest from memory. The lean ones run with the fill memory
// budget spent: every byte goes through the file in small buffers.
func TestWriteToWaitsForVerification(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt bool
		size    int
		budget  int64 // Config.FillMemoryBytes; 1: every buffer is small
	}{
		{"good", false, 100_000, 0}, {"corrupt", true, 100_000, 0}, {"large", false, 40<<20 + 123, 0}, {"large corrupt", true, 40<<20 + 123, 0},
		{"large lean", false, 40<<20 + 123, 1}, {"large lean corrupt", true, 40<<20 + 123, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := blobcache.New(blobcache.Config{Dir: t.TempDir(), FillMemoryBytes: tc.budget})
			if err != nil {
				t.Fatal(err)
			}
			blob := blobOf(11, tc.size)
			d := notarize.DigestOf(blob)
			sent := bytes.Clone(blob)
			if tc.corrupt {
				sent[len(sent)-1] ^= 1
			}
			pr, pw := io.Pipe()
			fill, _ := c.Fill(t.Context(), d, func(context.Context) (io.ReadCloser, int64, error) { return pr, int64(len(blob)), nil })
			defer fill.Release()
			wrote := make(chan struct{})
			go func() { _, _ = pw.Write(sent); close(wrote) }()
			if _, err := fill.Started(t.Context()); err != nil {
				t.Fatal(err)
			}
			<-wrote // the fill has every byte; the body is still open
			rd := fill.NewReader(t.Context())
			defer rd.Close()
			var dst recorder
			copied := make(chan error, 1)
			go func() {
				_, err := io.Copy(&dst, rd) // WriteTo
				copied <- err
			}()
			deadline := time.Now().Add(30 * time.Second)
			for dst.len() < len(blob)-1 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if n := dst.len(); n != len(blob)-1 {
				t.Fatalf("WriteTo wrote %d bytes before the body ended, want all but the last (%d)", n, len(blob)-1)
			}
			select {
			case err := <-copied:
				t.Fatalf("WriteTo ended before verification (%v), %d bytes written", err, dst.len())
			case <-time.After(100 * time.Millisecond):
			}
			if dst.len() != len(blob)-1 {
				t.Fatal("the last byte was written before verification")
			}
			_ = pw.Close()
			err = <-copied
			got := dst.buf.Bytes()
			if tc.corrupt {
				if !errors.Is(err, blobcache.ErrDigestMismatch) {
					t.Fatalf("WriteTo: %v, want ErrDigestMismatch", err)
				}
				if len(got) != len(blob)-1 || c.Has(d) {
					t.Fatalf("a corrupt blob: %d bytes written of %d, cached %v", len(got), len(blob), c.Has(d))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, blob) {
				t.Fatal("WriteTo wrote other bytes than the blob's")
			}
			if err := fill.Wait(t.Context()); err != nil || !c.Has(d) {
				t.Fatalf("Wait() = %v, cached %v", err, c.Has(d))
			}
		})
	}
}

// stallWriter blocks in its first Write, holding the slice it was given,
// until let is closed; then it checks that the slice still holds what it
// held when the call began.
type stallWriter struct {
	first   chan struct{} // closed when the first Write began
	let     chan struct{}
	changed bool
	rest    bytes.Buffer
	calls   int
}

func (w *stallWriter) Write(p []byte) (int, error) {
	w.calls++
	if w.calls > 1 {
		return w.rest.Write(p)
	}
	before := bytes.Clone(p)
	close(w.first)
	<-w.let
	w.changed = !bytes.Equal(before, p)
	w.rest.Write(p)
	return len(p), nil
}

// TestWriteToChunkNotRecycledUnderWriter holds WriteTo's first Write (of
// bytes straight from a memory chunk) while the fill goes on past its
// memory window, ends and drops its chunks, and another fill reuses the
// chunk buffers: the bytes under the held Write must not change. Without
// the reader's pin, the first chunk's buffer went back to the pool and the
// second fill overwrote it mid-Write (a client would get another blob's
// bytes, after the digest check).
func TestWriteToChunkNotRecycledUnderWriter(t *testing.T) {
	c, err := blobcache.New(blobcache.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) }) // the fills' commits end before the directory goes
	blob := blobOf(21, 12<<20)
	d := notarize.DigestOf(blob)
	pr, pw := io.Pipe()
	fill, _ := c.Fill(t.Context(), d, func(context.Context) (io.ReadCloser, int64, error) { return pr, int64(len(blob)), nil })
	defer fill.Release()
	const head = 1 << 20
	go func() {
		_, _ = pw.Write(blob[:head])
	}()
	if _, err := fill.Started(t.Context()); err != nil {
		t.Fatal(err)
	}
	rd := fill.NewReader(t.Context())
	defer rd.Close()
	w := &stallWriter{first: make(chan struct{}), let: make(chan struct{})}
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(w, rd)
		copied <- err
	}()
	<-w.first // holding bytes of the first chunk, which the fill still has in memory
	if _, err := pw.Write(blob[head:]); err != nil {
		t.Fatal(err)
	}
	_ = pw.Close()
	if err := fill.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Another fill takes buffers from the pool and fills them with its own bytes.
	for i := range 4 {
		other := blobOf(1000+i, 12<<20)
		f2, _ := c.Fill(t.Context(), notarize.DigestOf(other), func(context.Context) (io.ReadCloser, int64, error) {
			return io.NopCloser(bytes.NewReader(other)), int64(len(other)), nil
		})
		if _, err := f2.Started(t.Context()); err != nil {
			t.Fatal(err)
		}
		r2 := f2.NewReader(t.Context())
		if _, err := io.Copy(io.Discard, r2); err != nil {
			t.Fatal(err)
		}
		r2.Close()
		if err := f2.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		f2.Release()
	}
	close(w.let)
	if err := <-copied; err != nil {
		t.Fatal(err)
	}
	if w.changed {
		t.Fatal("the bytes under a Write in progress changed: the chunk was reused while the reader used it")
	}
	if !bytes.Equal(w.rest.Bytes(), blob) {
		t.Fatal("WriteTo wrote other bytes than the blob's")
	}
}
