package blobcache_test

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/blobcache"
)

// slowStore wraps a real driver: uploads' writes wait until gate is
// closed (a slow or stalled store), and it counts the uploads open at once.
type slowStore struct {
	storagedriver.StorageDriver
	gate       chan struct{}
	open, most atomic.Int64
}

func (d *slowStore) Writer(ctx context.Context, p string, append bool) (storagedriver.FileWriter, error) {
	w, err := d.StorageDriver.Writer(ctx, p, append)
	if err != nil {
		return nil, err
	}
	n := d.open.Add(1)
	for m := d.most.Load(); n > m && !d.most.CompareAndSwap(m, n); m = d.most.Load() {
	}
	return &slowWriter{FileWriter: w, d: d}, nil
}

type slowWriter struct {
	storagedriver.FileWriter
	d    *slowStore
	once sync.Once
}

func (w *slowWriter) Write(p []byte) (int, error) {
	<-w.d.gate
	return w.FileWriter.Write(p)
}

func (w *slowWriter) done() { w.once.Do(func() { w.d.open.Add(-1) }) }

func (w *slowWriter) Close() error { defer w.done(); return w.FileWriter.Close() }

func (w *slowWriter) Cancel(ctx context.Context) error {
	defer w.done()
	return w.FileWriter.Cancel(ctx)
}

// TestSharedPutsBounded: 76 blobs fetched from the upstream while the
// shared store stalls. Each verified blob is put into the store, and a put
// may hold its driver's part buffer (10 MiB with s3) until the store
// answers: at most 4 uploads are open at once, 64 more puts wait, and the
// 8 beyond are skipped (the blobs stay local). Once the store goes on,
// every waiting put completes. Without the bound, 76 uploads were open at
// once.
func TestSharedPutsBounded(t *testing.T) {
	const running, waiting, skipped = 4, 64, 8
	drv := &slowStore{StorageDriver: inmemory.New(), gate: make(chan struct{})}
	release := sync.OnceFunc(func() { close(drv.gate) })
	defer release()
	dir := t.TempDir()
	sh := newShared(t, drv, blobcache.SharedConfig{InstanceDir: dir})
	c, err := blobcache.New(blobcache.Config{Dir: dir, Shared: sh})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { release(); _ = c.Close(context.Background()) })
	var calls atomic.Int64
	var ds []notarize.Digest
	for i := range running + waiting + skipped {
		blob := blobOf(300+i, 64<<10)
		d := notarize.DigestOf(blob)
		ds = append(ds, d)
		if got, _, err := stream(t, c, d, countingServe(blob, &calls)); err != nil || !bytes.Equal(got, blob) {
			t.Fatalf("blob %d: %d bytes, %v", i, len(got), err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for drv.open.Load() < running || c.Stats().SharedSkipped < skipped {
		if time.Now().After(deadline) || drv.most.Load() > running {
			break
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // any more uploads would open now
	st := c.Stats()
	t.Logf("while the store stalls: %d uploads open (at most %d), %d puts skipped", drv.open.Load(), drv.most.Load(), st.SharedSkipped)
	if most := drv.most.Load(); most > running {
		t.Fatalf("%d uploads open at once before a stalled store, want at most %d", most, running)
	}
	if st.SharedSkipped != skipped {
		t.Fatalf("%d puts skipped, want %d (%d running, %d waiting)", st.SharedSkipped, skipped, running, waiting)
	}
	release()
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	st = c.Stats()
	stored := 0
	for _, d := range ds {
		if _, err := drv.Stat(t.Context(), blobcache.BlobPath(d)); err == nil {
			stored++
		}
	}
	if st.SharedPuts != running+waiting || stored != running+waiting || st.SharedErrors != 0 {
		t.Fatalf("after the store went on: %d puts, %d blobs in the store, %d errors; want %d, %d, 0", st.SharedPuts, stored, st.SharedErrors, running+waiting, running+waiting)
	}
}
