package blobcache_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/blobcache"
)

// nibbleWriter7 takes what it is given in small bites with short pauses, so
// that readers hold (pin) memory chunks while fills drop theirs.
type nibbleWriter7 struct {
	buf bytes.Buffer
	rng *rand.Rand
}

func (w *nibbleWriter7) Write(p []byte) (int, error) {
	if w.rng.IntN(8) == 0 {
		time.Sleep(time.Duration(w.rng.IntN(300)) * time.Microsecond)
	}
	return w.buf.Write(p)
}

// TestRedteam7ConcurrentFillsKeepTheirBytes attacks the recycling of fill
// memory (f243fc9, 82e136f: large chunks go back to a shared pool and
// budget when a fill turns to small chunks, or as its window moves): with
// a budget that runs out part-way, many fills of distinct blobs at once,
// and readers that read slowly, at once or late, with Read or WriteTo,
// every reader must get exactly its own blob's bytes. A chunk given back
// while a reader still uses it would hand that reader another fill's
// bytes (another client's blob), after the fill verified its own.
func TestRedteam7ConcurrentFillsKeepTheirBytes(t *testing.T) {
	const (
		fills   = 8
		size    = 5<<20 + 4321
		readers = 3
	)
	c, err := blobcache.New(blobcache.Config{Dir: t.TempDir(), FillMemoryBytes: 6 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	var wg sync.WaitGroup
	for i := range fills {
		blob := blobOf(1000+i, size)
		for k := range blob { // distinct bytes per blob at every offset
			blob[k] ^= byte(i * 37)
		}
		d := notarize.DigestOf(blob)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			pr, pw := io.Pipe()
			fill, _ := c.Fill(t.Context(), d, func(context.Context) (io.ReadCloser, int64, error) { return pr, size, nil })
			defer fill.Release()
			go func() {
				for off := 0; off < len(blob); {
					n := min(1+rng.IntN(200<<10), len(blob)-off)
					if _, err := pw.Write(blob[off : off+n]); err != nil {
						return
					}
					off += n
					if rng.IntN(4) == 0 {
						time.Sleep(time.Duration(rng.IntN(2)) * time.Millisecond)
					}
				}
				_ = pw.Close()
			}()
			if _, err := fill.Started(t.Context()); err != nil {
				t.Error(err)
				return
			}
			var rwg sync.WaitGroup
			for r := range readers {
				rwg.Go(func() {
					if r == 2 {
						time.Sleep(20 * time.Millisecond) // late: part from the file
					}
					rd := fill.NewReader(t.Context())
					defer rd.Close()
					w := &nibbleWriter7{rng: rand.New(rand.NewPCG(uint64(i), uint64(r)))}
					var err error
					if r == 1 {
						_, err = io.Copy(w, rd) // WriteTo
					} else {
						_, err = io.Copy(w, readOnly{rd})
					}
					if err != nil {
						t.Errorf("fill %d reader %d: %v", i, r, err)
						return
					}
					if got := w.buf.Bytes(); !bytes.Equal(got, blob) {
						at := 0
						for at < min(len(got), len(blob)) && got[at] == blob[at] {
							at++
						}
						t.Errorf("BYPASS: fill %d reader %d got %d bytes that differ from its blob (%d bytes) from offset %d: another fill's bytes reached it", i, r, len(got), len(blob), at)
					}
				})
			}
			rwg.Wait()
			if err := fill.Wait(t.Context()); err != nil {
				t.Errorf("fill %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	for i := range fills {
		blob := blobOf(1000+i, size)
		for k := range blob {
			blob[k] ^= byte(i * 37)
		}
		b, err := c.Open(notarize.DigestOf(blob))
		if err != nil {
			t.Fatalf("fill %d not cached: %v", i, err)
		}
		got, _ := io.ReadAll(b)
		_ = b.Close()
		if !bytes.Equal(got, blob) {
			t.Fatalf("BYPASS: the cache holds other bytes for blob %d", i)
		}
	}
}
