package blobcache

import (
	"cmp"
	"container/list"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// DefaultFillTimeout bounds a download unless configured otherwise.
const DefaultFillTimeout = 30 * time.Minute

const chunkSize = 256 << 10

// DefaultFillMemoryBytes is the default Config.FillMemoryBytes: room for
// about eight fills at full speed at once (each keeps up to ~8 MiB of 1 MiB
// chunks while its client streams), beyond which fills stream through
// their temporary files with 32 KiB buffers.
const DefaultFillMemoryBytes = 64 << 20

// Errors of a failed fill, wrapped with the digest.
var (
	// ErrDigestMismatch: the bytes do not hash to the blob's digest.
	ErrDigestMismatch = errors.New("blob content does not match its digest")
	// ErrSizeMismatch: fewer or more bytes than announced.
	ErrSizeMismatch = errors.New("blob size does not match the announced length")
)

// Config configures a Cache.
type Config struct {
	// Dir holds the blobs (Dir/sha256/xx/…) and temporary files (Dir/tmp); required.
	Dir string
	// MaxBytes bounds the total size of the cached blobs; 0 means unbounded.
	// Blobs being downloaded are not counted until they are committed.
	MaxBytes int64
	// LowWaterBytes is what eviction brings the cache down to (counting the
	// blob being committed); default MaxBytes - MaxBytes/10. Only with MaxBytes.
	LowWaterBytes int64
	// FillTimeout bounds a download, which runs detached from the request
	// that started it; default DefaultFillTimeout.
	FillTimeout time.Duration
	// Logger receives failed downloads and evictions; default: discard.
	Logger *slog.Logger
	// FillMemoryBytes bounds the memory that all fills and their readers
	// hold at once in 1 MiB chunks (the window of recent bytes readers
	// stream from, the spans queued for the file and the hash); default
	// DefaultFillMemoryBytes. Past it a fill, or a reader reading the
	// file, uses 32 KiB buffers and the fill keeps no window: it never
	// waits for room and is never refused, so slow fills (a slow
	// upstream, a client that does not read) cannot make the proxy hold
	// memory per fill beyond the budget (red team 6, F6). Below 1 MiB,
	// every fill streams through its file.
	FillMemoryBytes int64
	// Shared is the fleet tier (optional): a blob missing here is read from
	// it, hashed like any download, before the upstream is asked; a blob
	// downloaded from the upstream is put there once verified.
	Shared *Shared
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("blobcache: Dir is required")
	case c.FillTimeout < 0:
		return errors.New("blobcache: negative FillTimeout")
	case c.FillMemoryBytes < 0:
		return errors.New("blobcache: negative FillMemoryBytes")
	case c.MaxBytes < 0 || c.LowWaterBytes < 0:
		return errors.New("blobcache: negative MaxBytes or LowWaterBytes")
	case c.MaxBytes == 0 && c.LowWaterBytes != 0:
		return errors.New("blobcache: LowWaterBytes without MaxBytes")
	case c.LowWaterBytes > c.MaxBytes:
		return errors.New("blobcache: LowWaterBytes above MaxBytes")
	}
	return nil
}

// Stats describes the cache.
type Stats struct {
	// Bytes and Blobs are the size and number of the committed blobs.
	Bytes int64
	Blobs int
	// MaxBytes is the bound (0: unbounded).
	MaxBytes int64
	// Evictions and EvictedBytes count the blobs evicted since New.
	Evictions, EvictedBytes uint64
	// Uncached counts verified blobs served without being cached since New:
	// larger than MaxBytes, or no room because the rest was in use.
	Uncached uint64
	// SharedHits counts fills read from the shared store, SharedPuts the
	// blobs this instance put there, SharedBad the copies there that did
	// not hash to their digest (removed), SharedErrors the failed reads and
	// puts (the fill went to the upstream, or the blob stayed local).
	SharedHits, SharedPuts, SharedBad, SharedErrors uint64
	// SharedSkipped counts the verified blobs not put into the shared store
	// because too many puts were already running and waiting.
	SharedSkipped uint64
	// FillMemory is the memory the fills and their readers hold in 1 MiB
	// chunks now, FillMemoryMax its bound (Config.FillMemoryBytes), and
	// SmallBuffers counts the 32 KiB buffers taken since New because the
	// bound was reached.
	FillMemory, FillMemoryMax int64
	SmallBuffers              uint64
}

// Cache is a content-addressed blob store with shared downloads. It is safe
// for concurrent use.
type Cache struct {
	cfg Config

	mu      sync.Mutex
	fills   map[fillKey]*Fill          // downloads in progress
	passing map[notarize.Digest]*Fill  // verified, not cached, still referenced
	blobs   map[notarize.Digest]*entry // committed blobs
	lru     list.List                  // of *entry, most recently used first
	size    int64                      // sum of the committed blobs' sizes
	trashN  uint64                     // names evicted files in Dir/tmp
	stats   Stats                      // counters only

	mem       memBudget     // of the fills' 1 MiB chunks (pipeline.go)
	smallBufs atomic.Uint64 // small buffers taken past mem

	puts        chan struct{} // a place per shared-store put running (fleet.go)
	putsWaiting atomic.Int64  // puts waiting for a place, and taking one

	running sync.WaitGroup // download goroutines, for Close
	// quit is cancelled when Close gives up waiting: the downloads and
	// shared-store uploads in progress stop, removing what they wrote.
	quit context.Context
	stop context.CancelFunc
}

// abortWait bounds how long Close waits, once its context is done, for the
// downloads and uploads it cancelled to remove their temporary files and
// uploads (each removal is bounded by SharedConfig.CleanupTimeout too).
const abortWait = 5 * time.Second

// entry is a committed blob. refs counts the open Blobs and the Fill that
// committed it (until the Fill's last reference): a blob with refs is never
// evicted.
type entry struct {
	d    notarize.Digest
	size int64
	refs int
	elem *list.Element
}

// New opens the cache in cfg.Dir, creating it, removing leftover temporary
// files and reading the committed blobs' sizes and last use (mtime). When
// they exceed cfg.MaxBytes (a lowered bound), it evicts down to the
// low-water mark.
func New(cfg Config) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.FillTimeout == 0 {
		cfg.FillTimeout = DefaultFillTimeout
	}
	if cfg.FillMemoryBytes == 0 {
		cfg.FillMemoryBytes = DefaultFillMemoryBytes
	}
	if cfg.MaxBytes > 0 && cfg.LowWaterBytes == 0 {
		cfg.LowWaterBytes = cfg.MaxBytes - cfg.MaxBytes/10
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tmp := filepath.Join(cfg.Dir, "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("blobcache: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("blobcache: %w", err)
	}
	c := &Cache{cfg: cfg, fills: map[fillKey]*Fill{}, passing: map[notarize.Digest]*Fill{}, blobs: map[notarize.Digest]*entry{}}
	c.quit, c.stop = context.WithCancel(context.Background())
	c.stats.MaxBytes = cfg.MaxBytes
	c.mem.max = cfg.FillMemoryBytes
	c.puts = make(chan struct{}, maxSharedPuts)
	if err := c.load(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	var trash []string
	if cfg.MaxBytes > 0 && c.size > cfg.MaxBytes {
		trash = c.evictLocked(cfg.LowWaterBytes)
	}
	c.mu.Unlock()
	c.removeTrash(context.Background(), trash)
	return c, nil
}

// load indexes the committed blobs, least recently used (oldest mtime) last.
func (c *Cache) load() error {
	type found struct {
		d     notarize.Digest
		size  int64
		mtime time.Time
	}
	var all []found
	shards, err := os.ReadDir(filepath.Join(c.cfg.Dir, "sha256"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blobcache: %w", err)
	}
	for _, shard := range shards {
		if !shard.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(c.cfg.Dir, "sha256", shard.Name()))
		if err != nil {
			return fmt.Errorf("blobcache: %w", err)
		}
		for _, de := range files {
			d, err := notarize.ParseDigest("sha256:" + de.Name())
			if err != nil || !de.Type().IsRegular() || d.Hex()[:2] != shard.Name() {
				continue // not ours
			}
			info, err := de.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return fmt.Errorf("blobcache: %w", err)
			}
			all = append(all, found{d, info.Size(), info.ModTime()})
		}
	}
	slices.SortFunc(all, func(a, b found) int {
		return cmp.Or(a.mtime.Compare(b.mtime), cmp.Compare(a.d, b.d))
	})
	for _, f := range all {
		e := &entry{d: f.d, size: f.size}
		e.elem = c.lru.PushFront(e)
		c.blobs[f.d] = e
		c.size += f.size
	}
	return nil
}

func (c *Cache) path(d notarize.Digest) string {
	h := d.Hex()
	return filepath.Join(c.cfg.Dir, "sha256", h[:2], h)
}

// Blob is an open blob. While it is open the blob stays in the cache, whole:
// eviction skips it.
type Blob struct {
	f       *os.File
	size    int64
	release func()
	once    sync.Once
}

// File returns the open file, e.g. for http.ServeContent (which can then
// use sendfile). Do not close it: close the Blob.
func (b *Blob) File() *os.File { return b.f }

// Size returns the blob's size.
func (b *Blob) Size() int64 { return b.size }

// Read reads from the blob.
func (b *Blob) Read(p []byte) (int, error) { return b.f.Read(p) }

// ReadAt reads from the blob at off.
func (b *Blob) ReadAt(p []byte, off int64) (int, error) { return b.f.ReadAt(p, off) }

// Seek sets the offset of the next Read.
func (b *Blob) Seek(off int64, whence int) (int64, error) { return b.f.Seek(off, whence) }

// Close closes the file and unpins the blob.
func (b *Blob) Close() error {
	err := os.ErrClosed
	b.once.Do(func() {
		err = b.f.Close()
		b.release()
	})
	return err
}

// Open returns the committed blob d, marked as used now, or a verified blob
// that was served without being cached while its Fill is still referenced;
// else an error wrapping fs.ErrNotExist. Close the Blob when done.
func (c *Cache) Open(d notarize.Digest) (*Blob, error) {
	if _, err := notarize.ParseDigest(string(d)); err != nil {
		return nil, err
	}
	c.mu.Lock()
	if e := c.blobs[d]; e != nil {
		e.refs++
		c.lru.MoveToFront(e.elem)
		c.mu.Unlock()
		p := c.path(d)
		f, err := os.Open(p)
		if err != nil {
			c.mu.Lock()
			e.refs--
			if errors.Is(err, fs.ErrNotExist) { // removed behind our back
				c.forgetLocked(e)
			}
			c.mu.Unlock()
			return nil, fmt.Errorf("blobcache: %w", err)
		}
		now := time.Now()
		_ = os.Chtimes(p, time.Time{}, now) // last use, for the order after a restart
		return &Blob{f: f, size: e.size, release: func() { c.unpin(e) }}, nil
	}
	if fl := c.passing[d]; fl != nil {
		fl.refs++
		tmp, size := fl.passTmp, fl.passSize
		c.mu.Unlock()
		f, err := os.Open(tmp)
		if err != nil {
			fl.Release()
			return nil, fmt.Errorf("blobcache: %w", err)
		}
		return &Blob{f: f, size: size, release: fl.Release}, nil
	}
	c.mu.Unlock()
	return nil, fmt.Errorf("blobcache: blob %s: %w", d, fs.ErrNotExist)
}

func (c *Cache) unpin(e *entry) {
	c.mu.Lock()
	e.refs--
	c.mu.Unlock()
}

// forgetLocked drops e from the index.
func (c *Cache) forgetLocked(e *entry) {
	if c.blobs[e.d] != e {
		return
	}
	delete(c.blobs, e.d)
	c.lru.Remove(e.elem)
	c.size -= e.size
}

// evictLocked evicts least recently used blobs that are not in use until
// the cache holds at most target bytes or nothing more can go. Each file
// is renamed out of the cache (atomic: Open finds the whole blob or none);
// the caller removes the returned files without holding c.mu.
func (c *Cache) evictLocked(target int64) (trash []string) {
	var n int
	var bytes int64
	for el := c.lru.Back(); el != nil && c.size > target; {
		e := el.Value.(*entry)
		el = el.Prev()
		if e.refs > 0 {
			continue
		}
		c.trashN++
		t := filepath.Join(c.cfg.Dir, "tmp", "evicted-"+e.d.Hex()+"-"+strconv.FormatUint(c.trashN, 10))
		if err := os.Rename(c.path(e.d), t); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				c.cfg.Logger.Warn("blob cache: cannot evict", slog.String("digest", string(e.d)), slog.String("error", err.Error()))
				continue
			}
		} else {
			trash = append(trash, t)
		}
		c.forgetLocked(e)
		n++
		bytes += e.size
	}
	c.stats.Evictions += uint64(n)
	c.stats.EvictedBytes += uint64(bytes)
	if n > 0 {
		c.cfg.Logger.Debug("blob cache: evicted", slog.Int("blobs", n), slog.Int64("bytes", bytes), slog.Int64("size", c.size), slog.Int64("max_bytes", c.cfg.MaxBytes))
	}
	return trash
}

func (c *Cache) removeTrash(ctx context.Context, trash []string) {
	for _, t := range trash {
		if err := os.Remove(t); err != nil {
			c.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "blob cache: cannot remove an evicted blob", slog.String("file", t), slog.String("error", err.Error()))
		}
	}
}

// commit makes the verified temporary file tmp (size bytes) blob d, evicting
// to make room, and pins it for f. When the blob cannot fit, tmp stays for
// f's readers (and Open) and is removed with f's last reference.
func (c *Cache) commit(ctx context.Context, f *Fill, tmp string, size int64) error {
	dst := c.path(f.d)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("blobcache: %w", err)
	}
	var trash []string
	defer func() { c.removeTrash(ctx, trash) }()
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.blobs[f.d]; e != nil {
		// Committed by an earlier fill meanwhile: keep that file.
		e.refs++
		f.entry = e
		c.lru.MoveToFront(e.elem)
		trash = append(trash, tmp)
		return nil
	}
	if bound := c.cfg.MaxBytes; bound > 0 {
		if size <= bound && c.size+size > bound {
			trash = c.evictLocked(c.cfg.LowWaterBytes - size)
		}
		if c.size+size > bound {
			c.stats.Uncached++
			f.passTmp, f.passSize = tmp, size
			c.passing[f.d] = f
			c.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "blob cache: served without caching", slog.String("digest", string(f.d)), slog.Int64("size", size), slog.Int64("cached", c.size), slog.Int64("max_bytes", bound))
			return nil
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("blobcache: commit: %w", err)
	}
	e := &entry{d: f.d, size: size, refs: 1}
	e.elem = c.lru.PushFront(e)
	c.blobs[f.d] = e
	c.size += size
	f.entry = e
	return nil
}

// Has reports whether blob d is committed in the cache.
func (c *Cache) Has(d notarize.Digest) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.blobs[d] != nil
}

// Stats returns the cache's size and counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Bytes, s.Blobs = c.size, len(c.blobs)
	s.FillMemory, s.FillMemoryMax, s.SmallBuffers = c.mem.used.Load(), c.mem.max, c.smallBufs.Load()
	return s
}

// Fetch is how a Fill gets the blob: the body and its announced size (-1
// when unknown). It runs detached from any one request.
type Fetch func(ctx context.Context) (body io.ReadCloser, size int64, err error)

// fillKey names a download in progress: the blob, and where it is fetched
// from (FillFrom).
type fillKey struct {
	d      notarize.Digest
	source string
}

// Fill is FillFrom with no source: it joins only the downloads of d
// started by Fill.
func (c *Cache) Fill(ctx context.Context, d notarize.Digest, fetch Fetch) (f *Fill, joined bool) {
	return c.FillFrom(ctx, d, "", fetch)
}

// FillFrom starts a download of d with fetch, or joins the one in
// progress from the same source; joined reports the latter. source names
// where fetch reads (the proxy: an upstream and a repository): a download
// is shared only by requests for the same blob from the same source, so
// that a source that fails or stalls (a repository that does not hold the
// blob, a slow or lying upstream) never fails or slows a request that
// would fetch it elsewhere (red team 15). Downloads of d from different
// sources each check the digest; the first verified is committed.
// Call Release when done with the Fill.
func (c *Cache) FillFrom(ctx context.Context, d notarize.Digest, source string, fetch Fetch) (f *Fill, joined bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := fillKey{d, source}
	if f, ok := c.fills[k]; ok {
		f.refs++
		return f, true
	}
	f = &Fill{c: c, d: d, key: k, size: -1, started: make(chan struct{}), done: make(chan struct{}), notify: make(chan struct{}), refs: 2}
	c.fills[k] = f
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.FillTimeout)
	unhook := context.AfterFunc(c.quit, cancel)
	c.running.Go(func() {
		defer unhook()
		defer cancel()
		defer f.Release() // the download's own reference
		f.run(fctx, fetch)
	})
	return f, false
}

// Close waits until the downloads in progress have ended (each is bounded by
// FillTimeout) and their blobs are committed or removed, and their puts
// into the shared store have ended, or until ctx is done. Then it cancels
// those still running and waits (at most abortWait more) while they remove
// their temporary files and temporary uploads, so that a shutdown does not
// leave them in the shared store, and returns ctx's error. Fills started
// after Close gave up fail at once; those started after a Close that
// returned nil are not waited for.
func (c *Cache) Close(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		c.running.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	c.stop()
	t := time.NewTimer(abortWait)
	defer t.Stop()
	select {
	case <-done:
		return fmt.Errorf("close blob cache: downloads cancelled: %w", ctx.Err())
	case <-t.C:
		return fmt.Errorf("close blob cache: downloads cancelled, still ending after %v: %w", abortWait, ctx.Err())
	}
}

// Fill is one download of a blob into the cache.
type Fill struct {
	c   *Cache
	d   notarize.Digest
	key fillKey // in c.fills while it runs

	started chan struct{} // closed once size is known or the fill failed
	done    chan struct{} // closed when the fill ended

	// Guarded by c.mu.
	refs     int
	entry    *entry // the committed blob, pinned until the last reference
	passTmp  string // the verified blob served without caching; removed with the last reference
	passSize int64

	fromShared bool // read from the shared store; set before started is closed
	upload     bool // from the upstream: put into the shared store once verified

	mu       sync.Mutex
	file     *os.File // the temporary file; readers ReadAt it
	size     int64
	written  int64
	err      error // set before done is closed
	verified bool  // the whole blob is written and its digest checked
	notify   chan struct{}
	waiters  int         // readers waiting on notify
	mem      []*memChunk // recent bytes, for readers (pipeline.go)
	fileOff  int64       // bytes in the temporary file
	hashed   int64       // bytes hashed
}

func (f *Fill) acquire() {
	f.c.mu.Lock()
	f.refs++
	f.c.mu.Unlock()
}

// Release drops a reference. The last one closes the temporary file, unpins
// the committed blob or removes the uncached one.
func (f *Fill) Release() {
	c := f.c
	c.mu.Lock()
	f.refs--
	if f.refs > 0 {
		c.mu.Unlock()
		return
	}
	if f.entry != nil {
		f.entry.refs--
		f.entry = nil
	}
	if c.passing[f.d] == f {
		delete(c.passing, f.d)
	}
	tmp := f.passTmp
	c.mu.Unlock()
	f.mu.Lock()
	file := f.file
	f.mu.Unlock()
	if file != nil {
		_ = file.Close()
	}
	if tmp != "" {
		_ = os.Remove(tmp)
	}
}

// Started waits until the blob's size is known (the upstream answered) or
// the fill failed, and returns the size (-1 when unknown) or the failure.
func (f *Fill) Started(ctx context.Context) (int64, error) {
	select {
	case <-f.started:
	case <-ctx.Done():
		return 0, context.Cause(ctx)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.file == nil {
		return 0, f.err
	}
	return f.size, nil
}

// Wait waits for the fill to end and returns its failure, if any.
func (f *Fill) Wait(ctx context.Context) error {
	select {
	case <-f.done:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// FromShared reports whether the blob is read from the shared store rather
// than fetched from the upstream. Call it after Started succeeded.
func (f *Fill) FromShared() bool {
	<-f.started
	return f.fromShared
}

func (f *Fill) run(ctx context.Context, fetch Fetch) {
	err := f.download(ctx, f.c.source(f, fetch))
	f.c.mu.Lock()
	delete(f.c.fills, f.key)
	f.c.mu.Unlock()
	f.mu.Lock()
	f.err = err
	f.dropAllLocked() // readers go on from the file
	close(f.notify)
	f.notify = make(chan struct{})
	select {
	case <-f.started:
	default:
		close(f.started)
	}
	close(f.done)
	f.mu.Unlock()
	if err != nil {
		f.c.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "blob download failed; nothing cached", slog.String("digest", string(f.d)), slog.Bool("from_shared", f.fromShared), slog.String("error", err.Error()))
		if f.fromShared && (errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrSizeMismatch)) {
			f.c.dropBadShared(ctx, f.d)
		}
		return
	}
	if f.upload {
		f.c.putShared(ctx, f)
	}
}

func (f *Fill) download(ctx context.Context, fetch Fetch) (err error) {
	body, size, err := fetch(ctx)
	if err != nil {
		return err
	}
	defer body.Close()
	tmp, err := os.CreateTemp(filepath.Join(f.c.cfg.Dir, "tmp"), f.d.Hex()+"-*")
	if err != nil {
		return fmt.Errorf("blobcache: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	f.mu.Lock()
	f.file, f.size = tmp, size
	close(f.started)
	f.mu.Unlock()

	st := f.startStages(tmp)
	rerr := f.receive(body, size, st)
	got, werr := st.finish()
	switch {
	case werr != nil:
		return werr
	case rerr != nil:
		return rerr
	}
	if size >= 0 && f.written != size {
		return fmt.Errorf("blob %s: %w: %d bytes of %d", f.d, ErrSizeMismatch, f.written, size)
	}
	if got != f.d {
		return fmt.Errorf("blob %s: %w: the bytes hash to %s", f.d, ErrDigestMismatch, got)
	}
	// Verified: readers may have the last byte now; committing to the cache
	// (fsync, rename) follows and only decides whether the blob is kept.
	f.mu.Lock()
	f.verified = true
	close(f.notify)
	f.notify = make(chan struct{})
	f.mu.Unlock()
	// Only the bytes verified are kept: a file that is longer (extended
	// by anything but the writer, such as preallocation) is not cached,
	// since a cache hit serves the file to its end.
	if fi, err := tmp.Stat(); err != nil {
		return fmt.Errorf("blobcache: stat: %w", err)
	} else if fi.Size() != f.written {
		// Not ErrSizeMismatch: the source's bytes were right (a shared
		// store's copy must not be dropped for this).
		return fmt.Errorf("blobcache: %s not cached: its temporary file holds %d bytes, %d were verified", f.d, fi.Size(), f.written)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("blobcache: sync: %w", err)
	}
	return f.c.commit(ctx, f, tmp.Name(), f.written)
}

func digestOf(h hash.Hash) notarize.Digest {
	return notarize.Digest("sha256:" + hex.EncodeToString(h.Sum(nil)))
}

// NewReader returns a reader of the blob as it streams in. It holds back
// the last byte until the fill has verified the whole blob; when the fill
// fails, Read returns its error. Call it after Started succeeded; the
// reader holds a reference to the Fill until closed.
func (f *Fill) NewReader(ctx context.Context) io.ReadCloser {
	f.acquire()
	return &fillReader{f: f, ctx: ctx}
}

type fillReader struct {
	f      *Fill
	ctx    context.Context
	off    int64
	closed bool
}

// segment is where a reader's next bytes are: in memory (mem, in chunk c,
// which the reader pinned), or n bytes in file at the reader's offset.
type segment struct {
	c    *memChunk
	mem  []byte
	file *os.File
	n    int64
}

// next waits until the reader may have more bytes, at most max, and says
// where they are. It returns io.EOF after the last verified byte and the
// fill's failure, if it failed before verifying the blob.
func (r *fillReader) next(max int) (segment, error) {
	f := r.f
	for {
		f.mu.Lock()
		avail, finished, ferr, wait, verified := f.written, isClosed(f.done), f.err, f.notify, f.verified
		file := f.file
		if !verified && avail > 0 {
			avail-- // the last byte waits for the digest check
		}
		if !verified && finished && ferr != nil {
			f.mu.Unlock()
			return segment{}, ferr
		}
		if c, src := f.memAtLocked(r.off, avail); len(src) > 0 {
			c.pins++ // the chunk's buffer is not reused until unpinned
			f.mu.Unlock()
			return segment{c: c, mem: src[:min(len(src), max)]}, nil
		}
		// Bytes not in memory are read from the file, but only those the
		// writer has put there: a reader behind the window must not read
		// on into the chunks still in memory, whose bytes the file does not
		// have yet (it would read zeros from a preallocated file).
		inFile, written := min(avail, f.fileOff), f.fileOff
		if r.off >= avail && !verified && !finished {
			f.waiters++
		}
		f.mu.Unlock()
		if r.off < inFile {
			return segment{file: file, n: min(inFile-r.off, int64(max))}, nil
		}
		if r.off < avail {
			// Cannot happen: a chunk leaves memory only once the file has it.
			return segment{}, fmt.Errorf("blobcache: %s at %d: in neither memory nor the file (%d bytes in it)", f.d, r.off, written)
		}
		if verified {
			return segment{}, io.EOF
		}
		if finished {
			return segment{}, io.ErrUnexpectedEOF
		}
		select {
		case <-wait:
		case <-r.ctx.Done():
			return segment{}, context.Cause(r.ctx)
		}
	}
}

func (r *fillReader) Read(p []byte) (int, error) {
	seg, err := r.next(len(p))
	if err != nil {
		return 0, err
	}
	if seg.c != nil {
		n := copy(p, seg.mem)
		r.f.unpin(seg.c)
		r.off += int64(n)
		return n, nil
	}
	m, err := seg.file.ReadAt(p[:seg.n], r.off)
	r.off += int64(m)
	if err == io.EOF && m > 0 {
		err = nil
	}
	return m, err
}

// WriteTo writes the blob to w as it streams in, straight from the fill's
// memory chunks (no copy through a buffer of the caller's) or, for bytes
// no longer in memory, from the file in reads of memChunkSize (of
// smallChunkSize when the fill memory budget is spent). Like Read it
// holds back the last byte until the fill verified the blob, and returns
// the fill's failure; io.Copy uses it.
func (r *fillReader) WriteTo(w io.Writer) (int64, error) {
	var (
		start = r.off
		buf   *[]byte // for bytes read from the file
	)
	defer func() {
		if buf != nil {
			r.f.c.putBuf(buf)
		}
	}()
	for {
		seg, err := r.next(memChunkSize)
		if err == io.EOF {
			return r.off - start, nil
		}
		if err != nil {
			return r.off - start, err
		}
		b := seg.mem
		if seg.c == nil {
			if buf == nil {
				buf, _ = r.f.c.takeBuf()
			}
			m, err := seg.file.ReadAt((*buf)[:min(seg.n, int64(len(*buf)))], r.off)
			if m == 0 {
				if err == nil || err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return r.off - start, fmt.Errorf("blobcache: read %s at %d: %w", r.f.d, r.off, err)
			}
			b = (*buf)[:m]
		}
		n, werr := w.Write(b)
		if seg.c != nil {
			r.f.unpin(seg.c)
		}
		r.off += int64(n)
		if werr != nil {
			return r.off - start, werr
		}
	}
}

func (r *fillReader) Close() error {
	if !r.closed {
		r.closed = true
		r.f.Release()
	}
	return nil
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
