package blobcache_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/blobcache"
)

// blobChecker is a client that compares what it receives with the blob as
// it goes, keeping nothing (the race detector makes buffers of the blob
// costly): n bytes so far, diff the offset of the first wrong byte or -1.
// With pause it takes bytes in pieces with pauses: a slow client that falls
// behind the fill's memory window.
type blobChecker struct {
	blob  []byte
	n     int
	diff  int
	piece int
	pause time.Duration
}

func (w *blobChecker) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		k := len(p)
		if w.piece > 0 {
			k = min(k, w.piece)
		}
		if w.diff < 0 {
			want := w.blob[min(w.n, len(w.blob)):min(w.n+k, len(w.blob))]
			if !bytes.Equal(p[:len(want)], want) || len(want) < k {
				w.diff = w.n
				for w.diff-w.n < len(want) && p[w.diff-w.n] == want[w.diff-w.n] {
					w.diff++
				}
			}
		}
		w.n += k
		p = p[k:]
		if w.pause > 0 {
			time.Sleep(w.pause)
		}
	}
	return total, nil
}

// extendTemps grows the first temporary file that appears in dir to n
// bytes (sparse zeros past the writer's offset), as a preallocating
// filesystem or fallocate(2) would: the file no longer ends where the
// writer stopped. It closes extended when done.
func extendTemps(ctx context.Context, dir string, n int64, extended chan<- struct{}) {
	defer close(extended)
	for ctx.Err() == nil {
		es, _ := os.ReadDir(filepath.Join(dir, "tmp"))
		if len(es) > 0 {
			if f, err := os.OpenFile(filepath.Join(dir, "tmp", es[0].Name()), os.O_WRONLY, 0); err == nil {
				_ = f.Truncate(n)
				f.Close()
				return
			}
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// TestFillReadersStress: many readers, fast and slow, early and late,
// Read and WriteTo, over blobs of awkward sizes and budgets (default, one
// byte: lean from the start, 1.5 MiB: lean part-way), optionally with the
// temporary file extended past the writer (preallocation). Every reader of
// an honest fill must get exactly the blob, with no error. Unlike
// TestReaderReadsOnlyWhatTheFileHas it runs the real writer and its drop
// timing: before that fix its preallocated cases served zeros (a review
// of the fix wrote it).
func TestFillReadersStress(t *testing.T) {
	const mib = 1 << 20
	sizes := []int{0, 32<<10 + 1, mib + 1, 5 * mib, 9*mib + 77}
	for _, prealloc := range []bool{false, true} {
		for _, budget := range []int64{0, 1, 3 << 19} {
			for _, size := range sizes {
				t.Run(fmt.Sprintf("prealloc=%v/budget=%d/size=%d", prealloc, budget, size), func(t *testing.T) {
					t.Parallel()
					blob := make([]byte, size)
					_, _ = rand.Read(blob)
					d := notarize.DigestOf(blob)
					dir := t.TempDir()
					c, err := blobcache.New(blobcache.Config{Dir: dir, FillMemoryBytes: budget})
					if err != nil {
						t.Fatal(err)
					}
					ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
					defer cancel()
					extended := make(chan struct{})
					if prealloc {
						go extendTemps(ctx, dir, int64(size)+64*mib, extended)
					}
					pr, pw := io.Pipe()
					fill, _ := c.Fill(ctx, d, func(context.Context) (io.ReadCloser, int64, error) { return pr, int64(size), nil })
					defer fill.Release()
					go func() {
						rng := mrand.New(mrand.NewPCG(uint64(size), 1))
						for off := 0; off < size; {
							n := min(size-off, 1+rng.IntN(300<<10))
							if _, err := pw.Write(blob[off : off+n]); err != nil {
								return
							}
							off += n
							if rng.IntN(8) == 0 {
								time.Sleep(time.Millisecond)
							}
						}
						if prealloc {
							<-extended // before the end: the fill is verified with the file extended
						}
						_ = pw.Close()
					}()
					if _, err := fill.Started(ctx); err != nil {
						t.Fatal(err)
					}
					var wg sync.WaitGroup
					for i := range 12 {
						wg.Go(func() {
							time.Sleep(time.Duration(i%4) * 5 * time.Millisecond) // some start late
							rd := fill.NewReader(ctx)
							defer rd.Close()
							w := &blobChecker{blob: blob, diff: -1}
							var err error
							switch i % 4 {
							case 0: // fast, WriteTo
								_, err = io.Copy(w, rd)
							case 1: // slow, WriteTo
								w.piece, w.pause = 64<<10, 200*time.Microsecond
								_, err = rd.(io.WriterTo).WriteTo(w)
							case 2: // Read with odd buffers
								_, err = io.CopyBuffer(w, struct{ io.Reader }{rd}, make([]byte, 1+i*4099))
							case 3: // slow Read
								buf := make([]byte, 128<<10)
								for {
									n, rerr := rd.Read(buf)
									_, _ = w.Write(buf[:n])
									if rerr == io.EOF {
										break
									}
									if rerr != nil {
										err = rerr
										break
									}
									time.Sleep(100 * time.Microsecond)
								}
							}
							if err != nil {
								t.Errorf("reader %d: %v after %d bytes", i, err, w.n)
								return
							}
							if w.diff >= 0 || w.n != len(blob) {
								t.Errorf("reader %d: %d bytes, first difference at %d: NOT THE BLOB", i, w.n, w.diff)
							}
						})
					}
					wg.Wait()
					err = fill.Wait(ctx)
					if c.Has(d) { // what a cache hit serves is the blob, to the byte
						b, err := c.Open(d)
						if err != nil {
							t.Fatal(err)
						}
						w := &blobChecker{blob: blob, diff: -1}
						_, err = io.Copy(w, b.File())
						b.Close()
						if err != nil || w.diff >= 0 || w.n != len(blob) {
							t.Fatalf("the cached blob: %d bytes, first difference at %d, %v; want the blob", w.n, w.diff, err)
						}
					}
					if !prealloc {
						if err != nil || !c.Has(d) {
							t.Fatalf("fill: %v, cached %v; want it cached", err, c.Has(d))
						}
						return
					}
					// Only the bytes verified are kept: the longer file is
					// not cached (the readers had the blob all the same).
					if err == nil || !strings.Contains(err.Error(), "were verified") || c.Has(d) {
						t.Fatalf("fill of a file longer than the blob: %v, cached %v; want it refused and not cached", err, c.Has(d))
					}
				})
			}
		}
	}
}
