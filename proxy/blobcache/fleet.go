package blobcache

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"

	"github.com/notarize/docker-notarize/notarize"
)

// Bounds of the puts into the shared store. A put may hold its driver's
// part buffer (distribution's s3 driver: chunksize, 10 MiB by default) for
// as long as the store takes, and every verified download from the
// upstream makes one: without a bound, many fills ending at once before a
// slow store held that buffer each (red team 6, F6, in a fleet).
const (
	// maxSharedPuts is how many puts run at once.
	maxSharedPuts = 4
	// maxQueuedPuts is how many more wait for their turn (each holding only
	// its fill's temporary file or pinned blob); past it a put is skipped
	// (Stats.SharedSkipped): the blob stays local, and the next instance
	// to need it fetches it from the upstream and puts it then.
	maxQueuedPuts = 64
)

// Shared returns the shared store, nil without one.
func (c *Cache) Shared() *Shared { return c.cfg.Shared }

// source returns how f gets the blob: from the shared store when it has
// it, else with fetch (from the upstream), in which case the verified blob
// is put into the shared store after the fill. A shared store that cannot
// be read sends the fill to the upstream: the bytes are hashed either way.
func (c *Cache) source(f *Fill, fetch Fetch) Fetch {
	sh := c.cfg.Shared
	if sh == nil {
		return fetch
	}
	return func(ctx context.Context) (io.ReadCloser, int64, error) {
		body, size, err := sh.Fetch(ctx, f.d)
		if err == nil {
			f.fromShared = true
			c.count(func(s *Stats) { s.SharedHits++ })
			return body, size, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			c.count(func(s *Stats) { s.SharedErrors++ })
			c.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "shared blob store unreadable; fetching from the upstream", slog.String("digest", string(f.d)), slog.String("error", err.Error()))
		}
		f.upload = true
		return fetch(ctx)
	}
}

func (c *Cache) count(f func(*Stats)) {
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}

// dropBadShared removes the shared copy of d that did not hash to d, so
// that the next fill fetches it from the upstream instead of failing again.
func (c *Cache) dropBadShared(ctx context.Context, d notarize.Digest) {
	c.count(func(s *Stats) { s.SharedBad++ })
	if err := c.cfg.Shared.Remove(ctx, d); err != nil {
		c.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "shared blob store: cannot remove a bad copy", slog.String("digest", string(d)), slog.String("error", err.Error()))
		return
	}
	c.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "shared blob store: removed a copy that does not match its digest", slog.String("digest", string(d)))
}

// putShared puts f's verified blob into the shared store, from the local
// file f pins (committed, or served without caching), at most
// maxSharedPuts at once, maxQueuedPuts more waiting. A failure only costs
// the fleet a download: the blob was served and may be cached here.
func (c *Cache) putShared(ctx context.Context, f *Fill) {
	c.mu.Lock()
	var p string
	switch {
	case f.entry != nil:
		p = c.path(f.d)
	case f.passTmp != "":
		p = f.passTmp
	}
	c.mu.Unlock()
	if p == "" {
		return
	}
	if c.putsWaiting.Add(1) > maxQueuedPuts {
		c.putsWaiting.Add(-1)
		c.count(func(s *Stats) { s.SharedSkipped++ })
		c.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "shared blob store: too many puts waiting; the blob stays local", slog.String("digest", string(f.d)), slog.Int("running", maxSharedPuts), slog.Int("waiting", maxQueuedPuts))
		return
	}
	select {
	case c.puts <- struct{}{}:
		c.putsWaiting.Add(-1)
		defer func() { <-c.puts }()
	case <-ctx.Done():
		c.putsWaiting.Add(-1)
		c.count(func(s *Stats) { s.SharedErrors++ })
		c.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "shared blob store: put not started; the blob stays local", slog.String("digest", string(f.d)), slog.String("error", context.Cause(ctx).Error()))
		return
	}
	f.mu.Lock()
	size := f.written
	f.mu.Unlock()
	err := func() error {
		file, err := os.Open(p)
		if err != nil {
			return err
		}
		defer file.Close()
		stored, err := c.cfg.Shared.Put(ctx, f.d, file, size)
		if stored {
			c.count(func(s *Stats) { s.SharedPuts++ })
		}
		return err
	}()
	if err != nil {
		c.count(func(s *Stats) { s.SharedErrors++ })
		c.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "shared blob store: put failed; the blob stays local", slog.String("digest", string(f.d)), slog.String("error", err.Error()))
	}
}
