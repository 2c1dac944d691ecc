package blobcache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/blobcache"
)

// Tests that no temporary upload outlives a put into the shared store,
// whoever wins and however the put ends (the e2e TestFleetProcesses flake:
// "temporary uploads left in the bucket"). They run on the inmemory driver
// here and on S3 (versitygw) in s3_test.go, through faultDriver: the real
// driver with faults injected at chosen points of an upload.

// faultDriver wraps a real storage driver and injects faults into uploads.
type faultDriver struct {
	storagedriver.StorageDriver
	// blockMove makes Move wait until its context is done and fail with it:
	// a put interrupted after its upload was committed (the temporary
	// object exists) and before it was moved into place.
	blockMove bool
	// moveCutShort makes Move copy the object, then fail before deleting
	// the source: s3's Move (a copy, then a delete) cut between the two.
	moveCutShort bool
	// blockDelete makes Delete of a temporary upload wait until its context
	// is done and fail with it: a store that hangs.
	blockDelete bool
	// failCommit makes an upload's Commit fail before it completes, as
	// s3's does when its last part cannot be flushed; cancels counts the
	// writers cancelled.
	failCommit bool
	cancels    atomic.Int64

	moves       atomic.Int64
	moveStarted chan struct{} // closed at the first Move
	once        sync.Once
}

func newFaultDriver(d storagedriver.StorageDriver) *faultDriver {
	return &faultDriver{StorageDriver: d, moveStarted: make(chan struct{})}
}

func (d *faultDriver) Move(ctx context.Context, src, dst string) error {
	d.moves.Add(1)
	d.once.Do(func() { close(d.moveStarted) })
	switch {
	case d.blockMove:
		<-ctx.Done()
		return context.Cause(ctx)
	case d.moveCutShort:
		b, err := d.GetContent(ctx, src)
		if err != nil {
			return err
		}
		if err := d.PutContent(ctx, dst, b); err != nil {
			return err
		}
		return errors.New("injected: the connection broke after the copy, before the source was deleted")
	}
	return d.StorageDriver.Move(ctx, src, dst)
}

func (d *faultDriver) Delete(ctx context.Context, p string) error {
	if err := ctx.Err(); err != nil { // as a network driver does; inmemory ignores ctx
		return err
	}
	if d.blockDelete && strings.Contains(p, "/uploads/") {
		<-ctx.Done()
		return context.Cause(ctx)
	}
	return d.StorageDriver.Delete(ctx, p)
}

func (d *faultDriver) Writer(ctx context.Context, p string, append bool) (storagedriver.FileWriter, error) {
	w, err := d.StorageDriver.Writer(ctx, p, append)
	if err != nil || !d.failCommit {
		return w, err
	}
	return &failCommitWriter{FileWriter: w, d: d}, nil
}

// failCommitWriter is an upload whose Commit fails without completing it.
type failCommitWriter struct {
	storagedriver.FileWriter
	d *faultDriver
}

func (w *failCommitWriter) Commit(context.Context) error {
	return errors.New("injected: the upload's last part could not be flushed")
}

func (w *failCommitWriter) Cancel(ctx context.Context) error {
	w.d.cancels.Add(1)
	return w.FileWriter.Cancel(ctx)
}

// TestSharedPutCommitFailedCancels: an upload whose Commit fails is
// cancelled (aborting s3's pending multipart upload, closing a file) and
// leaves nothing in the store; before, a failed Commit counted as
// committed, so the writer was neither cancelled nor closed.
func TestSharedPutCommitFailedCancels(t *testing.T) {
	drv := newFaultDriver(inmemory.New())
	drv.failCommit = true
	sh := newShared(t, drv, blobcache.SharedConfig{})
	blob := []byte("a blob whose upload cannot be committed")
	d := notarize.DigestOf(blob)
	if stored, err := sh.Put(t.Context(), d, bytes.NewReader(blob), int64(len(blob))); err == nil || stored {
		t.Fatalf("Put with a failing commit: stored=%v err=%v", stored, err)
	}
	if n := drv.cancels.Load(); n != 1 {
		t.Fatalf("the failed upload was cancelled %d times, want 1", n)
	}
	if left := uploadsLeft(t, drv); len(left) != 0 {
		t.Fatalf("temporary uploads left: %v", left)
	}
}

// uploadsLeft lists the temporary uploads in drv.
func uploadsLeft(t *testing.T, drv storagedriver.StorageDriver) []string {
	t.Helper()
	return slices.DeleteFunc(storedFiles(t, drv, "/notarize"), func(p string) bool { return !strings.Contains(p, "/uploads/") })
}

// gatedReader returns r's bytes once gate is closed; reading is closed at
// the first Read.
type gatedReader struct {
	r             io.Reader
	gate, reading chan struct{}
	once          sync.Once
}

func (g *gatedReader) Read(p []byte) (int, error) {
	g.once.Do(func() { close(g.reading) })
	<-g.gate
	return g.r.Read(p)
}

func newShared(t *testing.T, drv storagedriver.StorageDriver, cfg blobcache.SharedConfig) *blobcache.Shared {
	t.Helper()
	cfg.Driver = drv
	if cfg.InstanceDir == "" {
		cfg.InstanceDir = t.TempDir()
	}
	sh, err := blobcache.NewShared(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sh
}

// TestSharedPutLoserLeavesNoUpload: two instances put the same blob; B's
// upload is held until A's put has ended (the interleaving of the e2e
// flake, made certain). B does not move its upload over A's copy: it
// removes it and reports the blob as not stored by it. The store holds one
// copy and no temporary upload, and only one Move ran.
func TestSharedPutLoserLeavesNoUpload(t *testing.T) {
	testPutLoserLeavesNoUpload(t, inmemory.New())
}

func testPutLoserLeavesNoUpload(t *testing.T, inner storagedriver.StorageDriver) {
	drv := newFaultDriver(inner)
	a, b := newShared(t, drv, blobcache.SharedConfig{}), newShared(t, drv, blobcache.SharedConfig{})
	blob := blobOf(7, 1<<20+9)
	d := notarize.DigestOf(blob)
	src := &gatedReader{r: bytes.NewReader(blob), gate: make(chan struct{}), reading: make(chan struct{})}
	type result struct {
		stored bool
		err    error
	}
	done := make(chan result, 1)
	go func() {
		stored, err := b.Put(context.Background(), d, src, int64(len(blob)))
		done <- result{stored, err}
	}()
	<-src.reading // B checked the store (empty) and is uploading
	if stored, err := a.Put(t.Context(), d, bytes.NewReader(blob), int64(len(blob))); err != nil || !stored {
		t.Fatalf("A's put = %v, %v", stored, err)
	}
	close(src.gate)
	r := <-done
	if r.err != nil {
		t.Fatalf("B's put failed: %v", r.err)
	}
	if r.stored || drv.moves.Load() != 1 {
		t.Fatalf("B's put reported stored=%v after A stored the blob; %d moves, want 1 (B must not move over A's copy)", r.stored, drv.moves.Load())
	}
	if files := storedFiles(t, drv, "/notarize"); !slices.Equal(files, []string{blobcache.BlobPath(d)}) {
		t.Fatalf("the store holds %v, want only the blob", files)
	}
	if got, err := drv.GetContent(t.Context(), blobcache.BlobPath(d)); err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("the stored copy: %d bytes, %v", len(got), err)
	}
}

// TestSharedPutMoveCutShort: the move is cut between its copy and the
// deletion of the source (s3's Move). The put fails, and the temporary
// upload is removed anyway; the copy under the digest is whole.
func TestSharedPutMoveCutShort(t *testing.T) {
	testPutMoveCutShort(t, inmemory.New())
}

func testPutMoveCutShort(t *testing.T, inner storagedriver.StorageDriver) {
	drv := newFaultDriver(inner)
	drv.moveCutShort = true
	sh := newShared(t, drv, blobcache.SharedConfig{})
	blob := blobOf(8, 300<<10)
	d := notarize.DigestOf(blob)
	if _, err := sh.Put(t.Context(), d, bytes.NewReader(blob), int64(len(blob))); err == nil || !strings.Contains(err.Error(), "move into place") {
		t.Fatalf("Put = %v, want the move's failure", err)
	}
	if left := uploadsLeft(t, drv); len(left) != 0 {
		t.Fatalf("temporary uploads left after a failed move: %v", left)
	}
}

// TestSharedPutCleanupOutlivesItsContext: the put's context ends while the
// upload waits to be moved (a fill timing out, a shutdown). What it wrote
// is removed all the same: the removal does not run under the dead context.
func TestSharedPutCleanupOutlivesItsContext(t *testing.T) {
	testPutCleanupOutlivesItsContext(t, inmemory.New())
}

func testPutCleanupOutlivesItsContext(t *testing.T, inner storagedriver.StorageDriver) {
	drv := newFaultDriver(inner)
	drv.blockMove = true
	sh := newShared(t, drv, blobcache.SharedConfig{})
	blob := blobOf(9, 200<<10)
	d := notarize.DigestOf(blob)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-drv.moveStarted
		if len(uploadsLeft(t, drv)) == 0 {
			t.Error("no temporary upload while the move waits: the test injects nothing")
		}
		cancel()
	}()
	if _, err := sh.Put(ctx, d, bytes.NewReader(blob), int64(len(blob))); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put = %v, want context.Canceled", err)
	}
	if left := uploadsLeft(t, drv); len(left) != 0 {
		t.Fatalf("temporary uploads left after the put's context ended: %v", left)
	}
}

// TestSharedPutCleanupBounded: a store that hangs on deleting the
// temporary upload does not hang the put (and with it the fill and the
// cache's Close): the removal is bounded by CleanupTimeout, and its
// failure is in the put's error.
func TestSharedPutCleanupBounded(t *testing.T) {
	drv := newFaultDriver(inmemory.New())
	sh := newShared(t, drv, blobcache.SharedConfig{CleanupTimeout: 50 * time.Millisecond})
	drv.moveCutShort, drv.blockDelete = true, true
	blob := blobOf(10, 4096)
	d := notarize.DigestOf(blob)
	done := make(chan error, 1)
	go func() {
		_, err := sh.Put(t.Context(), d, bytes.NewReader(blob), int64(len(blob)))
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "remove the temporary upload") {
			t.Fatalf("Put = %v, want the move's failure and the removal's timeout", err)
		}
	case <-time.After(time.Minute): // a liveness bound, far above CleanupTimeout
		t.Fatal("Put still running a minute after its removal should have given up: the cleanup is not bounded")
	}
}

// TestSharedClientLeavesMidStream: the client that started a fill goes
// away after the first bytes. The fill is detached from it: the blob is
// verified, cached and put into the shared store, and no temporary upload
// is left.
func TestSharedClientLeavesMidStream(t *testing.T) {
	testClientLeavesMidStream(t, inmemory.New())
}

func testClientLeavesMidStream(t *testing.T, drv storagedriver.StorageDriver) {
	c := instance(t, drv, t.TempDir())
	blob := blobOf(11, 2<<20+1)
	d := notarize.DigestOf(blob)
	gate := make(chan struct{})
	fetch := func(context.Context) (io.ReadCloser, int64, error) {
		// The first 64 KiB at once, the rest once the client has gone.
		return io.NopCloser(io.MultiReader(bytes.NewReader(blob[:64<<10]), &gatedReader{r: bytes.NewReader(blob[64<<10:]), gate: gate, reading: make(chan struct{})})), int64(len(blob)), nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	f, _ := c.Fill(ctx, d, fetch)
	if _, err := f.Started(ctx); err != nil {
		t.Fatal(err)
	}
	rd := f.NewReader(ctx)
	if _, err := io.ReadFull(rd, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	cancel() // the client disconnects
	_ = rd.Close()
	f.Release()
	close(gate)
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.SharedPuts != 1 || !c.Has(d) {
		t.Fatalf("after the client left: stats %+v, cached %v; want the blob cached and put", s, c.Has(d))
	}
	if files := storedFiles(t, drv, "/notarize"); !slices.Equal(files, []string{blobcache.BlobPath(d)}) {
		t.Fatalf("the store holds %v, want only the blob", files)
	}
}

// TestSharedCloseCancelsUploads: the proxy shuts down while a put waits to
// be moved into place. Close, when its context ends, cancels the put and
// waits for it to remove its temporary upload: none is left in the store
// when Close returns (the process exits right after).
func TestSharedCloseCancelsUploads(t *testing.T) {
	testCloseCancelsUploads(t, inmemory.New())
}

func testCloseCancelsUploads(t *testing.T, inner storagedriver.StorageDriver) {
	drv := newFaultDriver(inner)
	drv.blockMove = true
	dir := t.TempDir()
	sh := newShared(t, drv, blobcache.SharedConfig{InstanceDir: dir})
	// FillTimeout ends the held put if Close does not; it only bounds the
	// test's clean-up when the defence is missing.
	c, err := blobcache.New(blobcache.Config{Dir: dir, Shared: sh, FillTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	blob := blobOf(12, 512<<10)
	d := notarize.DigestOf(blob)
	var calls atomic.Int64
	if got, _, err := stream(t, c, d, countingServe(blob, &calls)); err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("stream: %d bytes, %v", len(got), err)
	}
	<-drv.moveStarted
	if len(uploadsLeft(t, drv)) == 0 {
		t.Fatal("no temporary upload while the move waits: the test injects nothing")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := c.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want the deadline (the put was held)", err)
	}
	if left := uploadsLeft(t, drv); len(left) != 0 {
		t.Fatalf("temporary uploads left in the store after Close: %v", left)
	}
	if _, err := drv.Stat(t.Context(), blobcache.BlobPath(d)); err == nil {
		t.Fatal("the cancelled put moved the blob into place")
	}
}
