package blobcache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/blobcache"
)

// Tests of the shared (fleet) tier on distribution's inmemory driver; the
// same behaviour on S3 (versitygw) is in s3_test.go, through the same
// helpers.

// instance is one proxy's blob cache: its own directory, the shared driver.
func instance(t *testing.T, drv storagedriver.StorageDriver, dir string) *blobcache.Cache {
	t.Helper()
	sh, err := blobcache.NewShared(t.Context(), blobcache.SharedConfig{Driver: drv, InstanceDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c, err := blobcache.New(blobcache.Config{Dir: dir, Shared: sh})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// countingServe serves blob and counts the calls: the upstream's requests.
func countingServe(blob []byte, calls *atomic.Int64) blobcache.Fetch {
	return func(context.Context) (io.ReadCloser, int64, error) {
		calls.Add(1)
		return io.NopCloser(bytes.NewReader(blob)), int64(len(blob)), nil
	}
}

// stream fills d through c and reads the client's stream to its end.
func stream(t *testing.T, c *blobcache.Cache, d notarize.Digest, fetch blobcache.Fetch) ([]byte, bool, error) {
	t.Helper()
	f, _ := c.Fill(t.Context(), d, fetch)
	defer f.Release()
	if _, err := f.Started(t.Context()); err != nil {
		return nil, false, err
	}
	rd := f.NewReader(t.Context())
	defer rd.Close()
	got, err := io.ReadAll(rd)
	return got, f.FromShared(), err
}

// storedFiles lists every file of the driver under dir.
func storedFiles(t *testing.T, drv storagedriver.StorageDriver, dir string) []string {
	t.Helper()
	var files []string
	err := drv.Walk(t.Context(), dir, func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() {
			files = append(files, fi.Path())
		}
		return nil
	})
	var nf storagedriver.PathNotFoundError
	if err != nil && !errors.As(err, &nf) {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}

// TestSharedSecondInstanceSkipsUpstream: a blob the first instance fetched
// is read by the second from the shared store, hashed, and the upstream is
// not asked for it again.
func TestSharedSecondInstanceSkipsUpstream(t *testing.T) {
	testSecondInstanceSkipsUpstream(t, inmemory.New())
}

func testSecondInstanceSkipsUpstream(t *testing.T, drv storagedriver.StorageDriver) {
	a, b := instance(t, drv, t.TempDir()), instance(t, drv, t.TempDir())
	blob := blobOf(1, 3<<20+17)
	d := notarize.DigestOf(blob)
	var calls atomic.Int64
	got, shared, err := stream(t, a, d, countingServe(blob, &calls))
	if err != nil || !bytes.Equal(got, blob) || shared {
		t.Fatalf("first instance: %d bytes, from shared %v, %v", len(got), shared, err)
	}
	if err := a.Close(t.Context()); err != nil { // the put into the shared store ends with the fill
		t.Fatal(err)
	}
	if s := a.Stats(); s.SharedPuts != 1 {
		t.Fatalf("first instance stats %+v, want one put", s)
	}
	got, shared, err = stream(t, b, d, countingServe(blob, &calls))
	if err != nil || !bytes.Equal(got, blob) || !shared {
		t.Fatalf("second instance: %d bytes, from shared %v, %v", len(got), shared, err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("the upstream was asked %d times, want once", n)
	}
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !b.Has(d) {
		t.Fatal("the second instance did not cache the blob locally")
	}
	if s := b.Stats(); s.SharedHits != 1 || s.SharedPuts != 0 {
		t.Fatalf("second instance stats %+v", s)
	}
}

// TestSharedNeverStoresUnverified: bytes that do not hash to the digest
// abort the client's stream and never reach the shared store, under the
// digest or as a temporary upload; Put refuses them on its own too.
func TestSharedNeverStoresUnverified(t *testing.T) {
	testNeverStoresUnverified(t, inmemory.New())
}

func testNeverStoresUnverified(t *testing.T, drv storagedriver.StorageDriver) {
	c := instance(t, drv, t.TempDir())
	blob := blobOf(2, 1<<20)
	d := notarize.DigestOf(blob)
	bad := bytes.Clone(blob)
	bad[len(bad)/2] ^= 1
	var calls atomic.Int64
	if _, _, err := stream(t, c, d, countingServe(bad, &calls)); !errors.Is(err, blobcache.ErrDigestMismatch) {
		t.Fatalf("client stream ended with %v, want ErrDigestMismatch", err)
	}
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if files := storedFiles(t, drv, "/notarize"); len(files) != 0 {
		t.Fatalf("the shared store holds %v after a mismatch", files)
	}
	sh, err := blobcache.NewShared(t.Context(), blobcache.SharedConfig{Driver: drv, InstanceDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sh.Put(t.Context(), d, bytes.NewReader(bad), int64(len(bad))); !errors.Is(err, blobcache.ErrDigestMismatch) {
		t.Fatalf("Put of bytes that do not match = %v, want ErrDigestMismatch", err)
	}
	if files := storedFiles(t, drv, "/notarize"); len(files) != 0 {
		t.Fatalf("the shared store holds %v after a Put of bytes that do not match", files)
	}
	if _, err := sh.Put(t.Context(), d, bytes.NewReader(blob[:10]), int64(len(blob))); !errors.Is(err, blobcache.ErrSizeMismatch) {
		t.Fatalf("Put of a short body = %v, want ErrSizeMismatch", err)
	}
	if files := storedFiles(t, drv, "/notarize"); len(files) != 0 {
		t.Fatalf("the shared store holds %v after refused puts", files)
	}
	if stored, err := sh.Put(t.Context(), d, bytes.NewReader(blob), int64(len(blob))); err != nil || !stored {
		t.Fatalf("Put of the blob = %v, %v", stored, err)
	}
	if files := storedFiles(t, drv, "/notarize"); !slices.Equal(files, []string{blobcache.BlobPath(d)}) {
		t.Fatalf("the shared store holds %v, want only the blob", files)
	}
}

// TestSharedBadCopy: a copy in the shared store that does not hash to its
// digest (a bucket written behind the proxies' back) aborts the client's
// stream, is not cached locally, and is removed, so that the next pull
// gets the blob from the upstream and puts a good copy back.
func TestSharedBadCopy(t *testing.T) {
	testBadCopy(t, inmemory.New())
}

func testBadCopy(t *testing.T, drv storagedriver.StorageDriver) {
	c := instance(t, drv, t.TempDir())
	blob := blobOf(3, 1<<20)
	d := notarize.DigestOf(blob)
	bad := bytes.Clone(blob)
	bad[0] ^= 1
	if err := drv.PutContent(t.Context(), blobcache.BlobPath(d), bad); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	got, shared, err := stream(t, c, d, countingServe(blob, &calls))
	if !errors.Is(err, blobcache.ErrDigestMismatch) || !shared {
		t.Fatalf("client stream ended with %v (from shared %v), want ErrDigestMismatch", err, shared)
	}
	if len(got) == len(blob) {
		t.Fatal("the client got a whole blob of bad bytes")
	}
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if c.Has(d) || calls.Load() != 0 {
		t.Fatalf("cached %v, upstream calls %d", c.Has(d), calls.Load())
	}
	if files := storedFiles(t, drv, "/notarize"); len(files) != 0 {
		t.Fatalf("the bad copy is still there: %v", files)
	}
	got, shared, err = stream(t, c, d, countingServe(blob, &calls))
	if err != nil || shared || !bytes.Equal(got, blob) {
		t.Fatalf("second pull: %d bytes, from shared %v, %v", len(got), shared, err)
	}
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if good, err := drv.GetContent(t.Context(), blobcache.BlobPath(d)); err != nil || !bytes.Equal(good, blob) {
		t.Fatalf("the shared copy after the second pull: %d bytes, %v", len(good), err)
	}
}

// TestSharedUploadsCleanedAfterCrash: temporary uploads an instance left
// (a crash between write and move) are removed when it starts again, and
// other instances' after StaleUploadAge; a fresh one of another live
// instance is kept. None is ever visible as a blob.
func TestSharedUploadsCleanedAfterCrash(t *testing.T) {
	drv := inmemory.New()
	dirA, dirB := t.TempDir(), t.TempDir()
	a, err := blobcache.NewShared(t.Context(), blobcache.SharedConfig{Driver: drv, InstanceDir: dirA})
	if err != nil {
		t.Fatal(err)
	}
	b, err := blobcache.NewShared(t.Context(), blobcache.SharedConfig{Driver: drv, InstanceDir: dirB})
	if err != nil {
		t.Fatal(err)
	}
	blob := blobOf(4, 4096)
	d := notarize.DigestOf(blob)
	leftA := path.Join("/notarize/v1/uploads", a.Instance(), d.Hex()+"-crashed")
	leftB := path.Join("/notarize/v1/uploads", b.Instance(), d.Hex()+"-live")
	for _, p := range []string{leftA, leftB} {
		if err := drv.PutContent(t.Context(), p, blob); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := blobcache.NewShared(t.Context(), blobcache.SharedConfig{Driver: drv, InstanceDir: dirA}); err != nil { // A restarts
		t.Fatal(err)
	}
	if files := storedFiles(t, drv, "/notarize"); !slices.Equal(files, []string{leftB}) {
		t.Fatalf("after A restarted: %v, want only B's upload", files)
	}
	time.Sleep(10 * time.Millisecond)
	if _, err := blobcache.NewShared(t.Context(), blobcache.SharedConfig{Driver: drv, InstanceDir: t.TempDir(), StaleUploadAge: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if files := storedFiles(t, drv, "/notarize"); len(files) != 0 {
		t.Fatalf("a stale upload of another instance was kept: %v", files)
	}
	if _, err := b.Stat(t.Context(), d); err == nil {
		t.Fatal("a temporary upload is visible as a blob")
	}
}

// TestSharedConcurrentFills: two instances fill the same blob at once from
// the upstream: both clients get the blob, the store holds one copy under
// the digest and no temporary upload.
func TestSharedConcurrentFills(t *testing.T) {
	testConcurrentFills(t, inmemory.New())
}

func testConcurrentFills(t *testing.T, drv storagedriver.StorageDriver) {
	a, b := instance(t, drv, t.TempDir()), instance(t, drv, t.TempDir())
	blob := blobOf(5, 2<<20+3)
	d := notarize.DigestOf(blob)
	gate := make(chan struct{})
	var calls atomic.Int64
	fetch := func(context.Context) (io.ReadCloser, int64, error) {
		calls.Add(1)
		<-gate // both fills are fetching before either has a byte
		return io.NopCloser(bytes.NewReader(blob)), int64(len(blob)), nil
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, c := range []*blobcache.Cache{a, b} {
		wg.Go(func() {
			got, _, err := stream(t, c, d, fetch)
			if err == nil && !bytes.Equal(got, blob) {
				err = errors.New("wrong bytes")
			}
			errs[i] = err
		})
	}
	for calls.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	close(gate)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
	}
	for _, c := range []*blobcache.Cache{a, b} {
		if err := c.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if files := storedFiles(t, drv, "/notarize"); !slices.Equal(files, []string{blobcache.BlobPath(d)}) {
		t.Fatalf("the shared store holds %v, want one copy", files)
	}
	if got, err := drv.GetContent(t.Context(), blobcache.BlobPath(d)); err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("the shared copy: %d bytes, %v", len(got), err)
	}
}
