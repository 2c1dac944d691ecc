package blobcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// gateWriter blocks its first Write until let is closed (a client that
// stops reading: the reader's WriteTo holds a chunk it writes from), then
// keeps everything written.
type gateWriter struct {
	let   chan struct{}
	mu    sync.Mutex
	buf   bytes.Buffer
	calls int
}

func (w *gateWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.calls++
	first := w.calls == 1
	w.mu.Unlock()
	if first {
		<-w.let
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// TestFillMemoryBudgetShared is red team 6's F6 at the cache: 24 fills
// whose upstream sends 4 MiB of a 6 MiB blob and stalls, each with a client
// that stopped reading, under an 8 MiB fill memory budget. Together they
// hold at most the budget in 1 MiB chunks plus two small chunks each
// (without the budget: a 4 MiB window each, ~100 MiB). Every fill still
// runs: once the upstreams and the clients go on, each client gets its
// blob whole, the corrupt one gets ErrDigestMismatch without the last byte
// and is not cached, and the budget is all given back.
func TestFillMemoryBudgetShared(t *testing.T) {
	const (
		n, size, sent = 24, 6 << 20, 4 << 20
		budget        = 8 << 20
		corrupt       = 5 // the index of the fill whose upstream lies
	)
	c, err := New(Config{Dir: t.TempDir(), FillMemoryBytes: budget})
	if err != nil {
		t.Fatal(err)
	}
	type one struct {
		blob []byte
		d    notarize.Digest
		pw   *io.PipeWriter
		fill *Fill
		w    *gateWriter
		err  chan error
	}
	all := make([]*one, n)
	for i := range all {
		o := &one{blob: bytes.Repeat([]byte(fmt.Sprintf("%07d\n", i)), size/8), w: &gateWriter{let: make(chan struct{})}, err: make(chan error, 1)}
		o.d = notarize.DigestOf(o.blob)
		pr, pw := io.Pipe()
		o.pw = pw
		o.fill, _ = c.Fill(t.Context(), o.d, func(context.Context) (io.ReadCloser, int64, error) { return pr, size, nil })
		defer o.fill.Release()
		defer pw.CloseWithError(errUpstream)
		if _, err := pw.Write(o.blob[:sent]); err != nil { // returns once the fill read it all
			t.Fatal(err)
		}
		if _, err := o.fill.Started(t.Context()); err != nil {
			t.Fatal(err)
		}
		rd := o.fill.NewReader(t.Context())
		defer rd.Close()
		go func() {
			_, err := io.Copy(o.w, rd) // WriteTo, stalled in its first Write
			o.err <- err
		}()
		all[i] = o
	}
	for _, o := range all {
		for deadline := time.Now().Add(30 * time.Second); !o.fill.caughtUp(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the file and the hash did not catch up")
			}
		}
	}
	time.Sleep(50 * time.Millisecond) // the readers' first Writes began
	held := 0
	for _, o := range all {
		held += o.fill.heldBytes()
	}
	st := c.Stats()
	t.Logf("%d stalled fills: %d KiB in their chunks, %d KiB of the budget in use, %d small buffers taken", n, held>>10, st.FillMemory>>10, st.SmallBuffers)
	if most := budget + 2*n*smallChunkSize; held > most {
		t.Fatalf("%d stalled fills hold %d KiB in memory chunks, more than the budget and two small chunks each (%d KiB)", n, held>>10, most>>10)
	}
	if st.FillMemory > budget || st.FillMemoryMax != budget {
		t.Fatalf("the budget's use %d of %d, want at most %d", st.FillMemory, st.FillMemoryMax, budget)
	}
	for i, o := range all {
		rest := o.blob[sent:]
		if i == corrupt {
			rest = bytes.Clone(rest)
			rest[len(rest)-1] ^= 1
		}
		if _, err := o.pw.Write(rest); err != nil {
			t.Fatal(err)
		}
		_ = o.pw.Close()
		close(o.w.let)
	}
	for i, o := range all {
		err := <-o.err
		got := o.w.buf.Bytes()
		if i == corrupt {
			if !errors.Is(err, ErrDigestMismatch) || len(got) >= size || c.Has(o.d) {
				t.Fatalf("the corrupt fill: %v, %d bytes written of %d, cached %v", err, len(got), size, c.Has(o.d))
			}
			continue
		}
		if err != nil || !bytes.Equal(got, o.blob) {
			t.Fatalf("fill %d: %v, %d bytes, the blob's: %v", i, err, len(got), bytes.Equal(got, o.blob))
		}
		if err := o.fill.Wait(t.Context()); err != nil || !c.Has(o.d) {
			t.Fatalf("fill %d: Wait() = %v, cached %v", i, err, c.Has(o.d))
		}
	}
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.FillMemory != 0 || st.SmallBuffers == 0 {
		t.Fatalf("after the fills: %d bytes of the budget still in use (want 0), %d small buffers taken (want some)", st.FillMemory, st.SmallBuffers)
	}
}
