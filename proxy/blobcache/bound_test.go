package blobcache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/blobcache"
)

// blobOf returns a blob of n bytes that differs by seed.
func blobOf(seed, n int) []byte {
	b := bytes.Repeat([]byte(fmt.Sprintf("%08d", seed)), n/8+1)
	return b[:n]
}

func open(t *testing.T, cfg blobcache.Config) *blobcache.Cache {
	t.Helper()
	c, err := blobcache.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// fill downloads blob into c and releases the fill; it returns the digest
// once the download has let go of the blob too (its goroutine ends just after
// Wait returns), so that what the test does next sees a settled cache.
func fill(t *testing.T, c *blobcache.Cache, blob []byte) notarize.Digest {
	t.Helper()
	d := notarize.DigestOf(blob)
	f, _ := c.Fill(t.Context(), d, serve(blob))
	err := f.Wait(t.Context())
	f.Release()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(t.Context()); err != nil { // waits for the download goroutines
		t.Fatal(err)
	}
	return d
}

func serve(blob []byte) blobcache.Fetch {
	return func(context.Context) (io.ReadCloser, int64, error) {
		return io.NopCloser(bytes.NewReader(blob)), int64(len(blob)), nil
	}
}

func readAll(t *testing.T, c *blobcache.Cache, d notarize.Digest) []byte {
	t.Helper()
	b, err := c.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// diskBytes sums the committed files under dir/sha256.
func diskBytes(t *testing.T, dir string) (n int64) {
	t.Helper()
	err := filepath.WalkDir(filepath.Join(dir, "sha256"), func(_ string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		n += info.Size()
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return n
}

func tmpFiles(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  blobcache.Config
		ok   bool
	}{
		{"unbounded", blobcache.Config{Dir: "d"}, true},
		{"bounded", blobcache.Config{Dir: "d", MaxBytes: 100}, true},
		{"low water", blobcache.Config{Dir: "d", MaxBytes: 100, LowWaterBytes: 100}, true},
		{"no dir", blobcache.Config{MaxBytes: 100}, false},
		{"negative bound", blobcache.Config{Dir: "d", MaxBytes: -1}, false},
		{"low water above bound", blobcache.Config{Dir: "d", MaxBytes: 100, LowWaterBytes: 101}, false},
		{"low water unbounded", blobcache.Config{Dir: "d", LowWaterBytes: 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// TestEvictionOrder: least recently used first (a hit counts as use), down
// to the low-water mark, only when a commit would exceed the bound.
func TestEvictionOrder(t *testing.T) {
	dir := t.TempDir()
	c := open(t, blobcache.Config{Dir: dir, MaxBytes: 400, LowWaterBytes: 250})
	var ds []notarize.Digest
	for i := range 4 {
		ds = append(ds, fill(t, c, blobOf(i, 100))) // 400 bytes: at the bound, nothing evicted
	}
	if st := c.Stats(); st.Bytes != 400 || st.Blobs != 4 || st.Evictions != 0 {
		t.Fatalf("after 4 fills: %+v", st)
	}
	readAll(t, c, ds[0]) // 0 is now the most recently used: order 1, 2, 3, 0
	d4 := fill(t, c, blobOf(4, 100))
	// 500 > 400: evict down to 250 counting the new blob, so 1, 2 and 3 go.
	want := map[notarize.Digest]bool{ds[0]: true, ds[1]: false, ds[2]: false, ds[3]: false, d4: true}
	for d, cached := range want {
		if c.Has(d) != cached {
			t.Errorf("Has(%s) = %v, want %v", d, !cached, cached)
		}
	}
	if st := c.Stats(); st.Bytes != 200 || st.Blobs != 2 || st.Evictions != 3 || st.EvictedBytes != 300 {
		t.Fatalf("after eviction: %+v", st)
	}
	if n := diskBytes(t, dir); n != 200 {
		t.Fatalf("%d bytes on disk, want 200", n)
	}
	if left := tmpFiles(t, dir); len(left) != 0 {
		t.Fatalf("left in tmp: %v", left)
	}
	if _, err := c.Open(ds[1]); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open(evicted) = %v, want fs.ErrNotExist", err)
	}
	if got := readAll(t, c, ds[0]); !bytes.Equal(got, blobOf(0, 100)) {
		t.Fatal("a kept blob changed")
	}
}

// TestReadDuringEviction: a blob that is open, or whose fill still has a
// reader, is skipped by eviction and read whole; once closed it can go.
// When everything else is in use a new blob is served but not cached.
func TestReadDuringEviction(t *testing.T) {
	dir := t.TempDir()
	c := open(t, blobcache.Config{Dir: dir, MaxBytes: 3 << 20})
	blobA, blobB := blobOf(1, 1<<20), blobOf(2, 1<<20)
	dA := fill(t, c, blobA)

	// B: a fill whose reader is still streaming when the blob is committed.
	dB := notarize.DigestOf(blobB)
	fB, _ := c.Fill(t.Context(), dB, serve(blobB))
	if _, err := fB.Started(t.Context()); err != nil {
		t.Fatal(err)
	}
	rB := fB.NewReader(t.Context())
	if err := fB.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	fB.Release()

	a, err := c.Open(dA)
	if err != nil {
		t.Fatal(err)
	}
	half := make([]byte, len(blobA)/2)
	if _, err := io.ReadFull(a, half); err != nil {
		t.Fatal(err)
	}

	// C needs room: A and B are in use, so only C's own would do; it is
	// served and not cached.
	blobC := blobOf(3, 2<<20)
	dC := notarize.DigestOf(blobC)
	fC, _ := c.Fill(t.Context(), dC, serve(blobC))
	if _, err := fC.Started(t.Context()); err != nil {
		t.Fatal(err)
	}
	rC := fC.NewReader(t.Context())
	if got, err := io.ReadAll(rC); err != nil || !bytes.Equal(got, blobC) {
		t.Fatalf("uncached blob: %d bytes, %v", len(got), err)
	}
	rC.Close()
	if err := fC.Wait(t.Context()); err != nil { // the reader's last byte comes before the fill ends
		t.Fatal(err)
	}
	fC.Release()
	if !c.Has(dA) || !c.Has(dB) || c.Has(dC) {
		t.Fatalf("cached A %v, B %v, C %v; want A and B", c.Has(dA), c.Has(dB), c.Has(dC))
	}
	if st := c.Stats(); st.Uncached != 1 || st.Evictions != 0 || st.Bytes != 2<<20 {
		t.Fatalf("%+v", st)
	}

	// Both still read whole.
	rest, err := io.ReadAll(a)
	if err != nil || !bytes.Equal(append(half, rest...), blobA) {
		t.Fatalf("open blob A: %d bytes, %v", len(half)+len(rest), err)
	}
	if got, err := io.ReadAll(rB); err != nil || !bytes.Equal(got, blobB) {
		t.Fatalf("fill reader of B: %d bytes, %v", len(got), err)
	}

	// Closing A unpins it (B's reader is still open): D evicts A only.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	dD := fill(t, c, blobOf(4, 2<<20))
	if c.Has(dA) || !c.Has(dB) || !c.Has(dD) {
		t.Fatalf("cached A %v, B %v, D %v; want B and D", c.Has(dA), c.Has(dB), c.Has(dD))
	}
	rB.Close()
	if n, st := diskBytes(t, dir), c.Stats(); n != st.Bytes || n > 3<<20 {
		t.Fatalf("%d bytes on disk, %d counted", n, st.Bytes)
	}
}

// TestBoundUnderConcurrentFills: many fills of distinct and shared blobs,
// with readers holding blobs open, never take the cache over its bound,
// every reader gets whole blobs, and the count matches the disk.
func TestBoundUnderConcurrentFills(t *testing.T) {
	dir := t.TempDir()
	const bound = 64 << 10
	c := open(t, blobcache.Config{Dir: dir, MaxBytes: bound})
	stop := make(chan struct{})
	watched := make(chan int64)
	go func() {
		var peak int64
		for {
			if b := c.Stats().Bytes; b > peak {
				peak = b
			}
			select {
			case <-stop:
				watched <- peak
				return
			case <-time.After(50 * time.Microsecond):
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := range 8 {
		wg.Go(func() {
			for i := range 40 {
				seed := (w*7 + i) % 30 // blobs shared between workers
				blob := blobOf(seed, 1<<10+seed*512)
				d := notarize.DigestOf(blob)
				f, _ := c.Fill(t.Context(), d, serve(blob))
				if _, err := f.Started(t.Context()); err != nil {
					errs <- err
					f.Release()
					continue
				}
				r := f.NewReader(t.Context())
				got, err := io.ReadAll(r)
				r.Close()
				if werr := f.Wait(t.Context()); werr != nil { // committed (or not) and cleaned up
					errs <- werr
				}
				f.Release()
				if err != nil || !bytes.Equal(got, blob) {
					errs <- fmt.Errorf("fill of blob %d: %d bytes, %v", seed, len(got), err)
				}
				if b, err := c.Open(d); err == nil {
					got, err := io.ReadAll(b)
					b.Close()
					if err != nil || !bytes.Equal(got, blob) {
						errs <- fmt.Errorf("open of blob %d: %d bytes, %v", seed, len(got), err)
					}
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	peak := <-watched
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := c.Stats()
	if peak > bound || st.Bytes > bound {
		t.Fatalf("peak %d, now %d bytes; bound %d", peak, st.Bytes, bound)
	}
	if st.Evictions == 0 {
		t.Fatalf("no evictions: %+v", st)
	}
	if n := diskBytes(t, dir); n != st.Bytes {
		t.Fatalf("%d bytes on disk, %d counted", n, st.Bytes)
	}
	if left := tmpFiles(t, dir); len(left) != 0 {
		t.Fatalf("left in tmp: %v", left)
	}
}

// TestRestartAccounting: reopening recomputes size and last use from disk
// (mtimes), drops temporary files, ignores foreign files, and evicts when
// the bound was lowered.
func TestRestartAccounting(t *testing.T) {
	dir := t.TempDir()
	c := open(t, blobcache.Config{Dir: dir})
	var ds []notarize.Digest
	old := time.Now().Add(-time.Hour)
	for i := range 4 {
		d := fill(t, c, blobOf(i, 100))
		h := d.Hex()
		if err := os.Chtimes(filepath.Join(dir, "sha256", h[:2], h), time.Time{}, old.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	readAll(t, c, ds[0]) // used now: the order on disk is 1, 2, 3, 0
	if err := os.WriteFile(filepath.Join(dir, "tmp", "leftover"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sha256", "not-a-blob"), []byte("xx"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name      string
		max       int64
		wantBytes int64
		kept      []bool
	}{
		{"unbounded", 0, 400, []bool{true, true, true, true}},
		{"same", 400, 400, []bool{true, true, true, true}},
		{"lowered", 300, 200, []bool{true, false, false, true}}, // evicted 1 and 2 down to 270
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := open(t, blobcache.Config{Dir: dir, MaxBytes: tc.max})
			st := c.Stats()
			if st.Bytes != tc.wantBytes || st.MaxBytes != tc.max {
				t.Fatalf("%+v, want %d bytes", st, tc.wantBytes)
			}
			for i, d := range ds {
				if c.Has(d) != tc.kept[i] {
					t.Errorf("blob %d cached %v, want %v", i, c.Has(d), tc.kept[i])
				}
			}
			if left := tmpFiles(t, dir); len(left) != 0 {
				t.Fatalf("left in tmp: %v", left)
			}
		})
	}
	// After the restart the order still holds: 3, then 0.
	c = open(t, blobcache.Config{Dir: dir, MaxBytes: 300, LowWaterBytes: 300})
	d5 := fill(t, c, blobOf(5, 150))
	if c.Has(ds[3]) || !c.Has(ds[0]) || !c.Has(d5) || c.Stats().Bytes != 250 {
		t.Fatalf("after restart: 3 cached %v, 0 cached %v, %+v", c.Has(ds[3]), c.Has(ds[0]), c.Stats())
	}
}

// TestOversizedPassesThrough: a blob larger than the whole bound is
// verified and served to its readers, including by Open while its fill is
// referenced, but never cached and nothing else is evicted for it.
func TestOversizedPassesThrough(t *testing.T) {
	dir := t.TempDir()
	c := open(t, blobcache.Config{Dir: dir, MaxBytes: 1 << 10})
	small := fill(t, c, blobOf(1, 1<<10))
	big := blobOf(2, 64<<10)
	d := notarize.DigestOf(big)
	f, _ := c.Fill(t.Context(), d, serve(big))
	if _, err := f.Started(t.Context()); err != nil {
		t.Fatal(err)
	}
	r := f.NewReader(t.Context())
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("streamed %d bytes, %v", len(got), err)
	}
	r.Close()
	if err := f.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	// Still referenced: Open serves it (a Range request after the fill).
	b, err := c.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	f.Release()
	got := make([]byte, 10)
	if _, err := b.ReadAt(got, 1000); err != nil || !bytes.Equal(got, big[1000:1010]) || b.Size() != int64(len(big)) {
		t.Fatalf("ReadAt: %q, %v, size %d", got, err, b.Size())
	}
	b.Close()
	if c.Has(d) || !c.Has(small) {
		t.Fatalf("oversized cached %v, small cached %v", c.Has(d), c.Has(small))
	}
	// The download's own reference goes just after Wait returns: wait for it.
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Open(d); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open after release = %v, want fs.ErrNotExist", err)
	}
	if st := c.Stats(); st.Uncached != 1 || st.Evictions != 0 || st.Bytes != 1<<10 {
		t.Fatalf("%+v", st)
	}
	if left := tmpFiles(t, dir); len(left) != 0 {
		t.Fatalf("left in tmp: %v", left)
	}
}
