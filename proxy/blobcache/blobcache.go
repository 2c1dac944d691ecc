// Package blobcache is the proxy's content-addressed blob store: a blob is
// written to a temporary file while it streams in, its SHA-256 and size are
// checked, and only then is it renamed into place. Parallel requests for a
// blob share one download (a Fill) and can all stream from it as it grows;
// no reader ever receives the last byte of a blob before the whole blob has
// been verified, so a complete answer is always verified content and a
// failed download ends every reader's stream short.
package blobcache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// DefaultFillTimeout bounds a download unless configured otherwise.
const DefaultFillTimeout = 30 * time.Minute

const chunkSize = 256 << 10

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
	// FillTimeout bounds a download, which runs detached from the request
	// that started it; default DefaultFillTimeout.
	FillTimeout time.Duration
	// Logger receives failed downloads; default: discard.
	Logger *slog.Logger
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Dir == "" {
		return errors.New("blobcache: Dir is required")
	}
	if c.FillTimeout < 0 {
		return errors.New("blobcache: negative FillTimeout")
	}
	return nil
}

// Cache is a content-addressed blob store with shared downloads. It is safe
// for concurrent use.
type Cache struct {
	cfg Config

	mu    sync.Mutex
	fills map[notarize.Digest]*Fill
}

// New opens the cache in cfg.Dir, creating it and removing leftover
// temporary files.
func New(cfg Config) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.FillTimeout == 0 {
		cfg.FillTimeout = DefaultFillTimeout
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
	return &Cache{cfg: cfg, fills: map[notarize.Digest]*Fill{}}, nil
}

func (c *Cache) path(d notarize.Digest) string {
	h := d.Hex()
	return filepath.Join(c.cfg.Dir, "sha256", h[:2], h)
}

// Open returns the committed blob d, or an error wrapping fs.ErrNotExist.
func (c *Cache) Open(d notarize.Digest) (*os.File, error) {
	if _, err := notarize.ParseDigest(string(d)); err != nil {
		return nil, err
	}
	f, err := os.Open(c.path(d))
	if err != nil {
		return nil, fmt.Errorf("blobcache: %w", err)
	}
	return f, nil
}

// Fetch is how a Fill gets the blob: the body and its announced size (-1
// when unknown). It runs detached from any one request.
type Fetch func(ctx context.Context) (body io.ReadCloser, size int64, err error)

// Fill starts a download of d with fetch, or joins the one in progress; joined
// reports the latter. Call Release when done with the Fill.
func (c *Cache) Fill(ctx context.Context, d notarize.Digest, fetch Fetch) (f *Fill, joined bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.fills[d]; ok {
		f.acquire()
		return f, true
	}
	f = &Fill{c: c, d: d, size: -1, started: make(chan struct{}), done: make(chan struct{}), notify: make(chan struct{}), refs: 2}
	c.fills[d] = f
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.FillTimeout)
	go func() {
		defer cancel()
		defer f.Release() // the download's own reference
		f.run(fctx, fetch)
	}()
	return f, false
}

// Fill is one download of a blob into the cache.
type Fill struct {
	c *Cache
	d notarize.Digest

	started chan struct{} // closed once size is known or the fill failed
	done    chan struct{} // closed when the fill ended

	mu       sync.Mutex
	file     *os.File // the temporary file; readers ReadAt it
	size     int64
	written  int64
	err      error // set before done is closed
	verified bool  // the whole blob is written and its digest checked
	notify   chan struct{}
	refs     int
}

func (f *Fill) acquire() {
	f.mu.Lock()
	f.refs++
	f.mu.Unlock()
}

// Release drops a reference; the temporary file is closed with the last one.
func (f *Fill) Release() {
	f.mu.Lock()
	f.refs--
	last := f.refs == 0
	file := f.file
	f.mu.Unlock()
	if last && file != nil {
		_ = file.Close()
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

func (f *Fill) run(ctx context.Context, fetch Fetch) {
	err := f.download(ctx, fetch)
	f.c.mu.Lock()
	delete(f.c.fills, f.d)
	f.c.mu.Unlock()
	f.mu.Lock()
	f.err = err
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
		f.c.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "blob download failed; nothing cached", slog.String("digest", string(f.d)), slog.String("error", err.Error()))
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

	h := sha256.New()
	buf := make([]byte, chunkSize)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if size >= 0 && f.written+int64(n) > size {
				return fmt.Errorf("blob %s: %w: more than %d bytes", f.d, ErrSizeMismatch, size)
			}
			if _, err := tmp.Write(buf[:n]); err != nil {
				return fmt.Errorf("blobcache: write: %w", err)
			}
			h.Write(buf[:n])
			f.progress(int64(n))
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("blob %s: read from upstream after %d bytes: %w", f.d, f.written, rerr)
		}
	}
	if size >= 0 && f.written != size {
		return fmt.Errorf("blob %s: %w: %d bytes of %d", f.d, ErrSizeMismatch, f.written, size)
	}
	if got := digestOf(h); got != f.d {
		return fmt.Errorf("blob %s: %w: the bytes hash to %s", f.d, ErrDigestMismatch, got)
	}
	// Verified: readers may have the last byte now; committing to the cache
	// (fsync, rename) follows and only decides whether the blob is kept.
	f.mu.Lock()
	f.verified = true
	close(f.notify)
	f.notify = make(chan struct{})
	f.mu.Unlock()
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("blobcache: sync: %w", err)
	}
	dst := f.c.path(f.d)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("blobcache: %w", err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("blobcache: commit: %w", err)
	}
	return nil
}

func (f *Fill) progress(n int64) {
	f.mu.Lock()
	f.written += n
	close(f.notify)
	f.notify = make(chan struct{})
	f.mu.Unlock()
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

func (r *fillReader) Read(p []byte) (int, error) {
	f := r.f
	for {
		f.mu.Lock()
		avail, finished, ferr, wait, verified := f.written, isClosed(f.done), f.err, f.notify, f.verified
		file := f.file
		f.mu.Unlock()
		if !verified && avail > 0 {
			avail-- // the last byte waits for the digest check
		}
		if !verified && finished && ferr != nil {
			return 0, ferr
		}
		if r.off < avail {
			n := int64(len(p))
			if n > avail-r.off {
				n = avail - r.off
			}
			m, err := file.ReadAt(p[:n], r.off)
			r.off += int64(m)
			if err == io.EOF && m > 0 {
				err = nil
			}
			return m, err
		}
		if verified {
			return 0, io.EOF
		}
		if finished {
			return 0, io.ErrUnexpectedEOF
		}
		select {
		case <-wait:
		case <-r.ctx.Done():
			return 0, context.Cause(r.ctx)
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

// Has reports whether blob d is committed in the cache.
func (c *Cache) Has(d notarize.Digest) bool {
	if _, err := notarize.ParseDigest(string(d)); err != nil {
		return false
	}
	_, err := os.Stat(c.path(d))
	return err == nil
}
