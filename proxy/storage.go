package proxy

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/notarize/docker-notarize/proxy/blobcache"
)

// sharedOpenTimeout bounds opening the shared blob store at start (its
// driver, and the cleanup of temporary uploads a crash left there).
const sharedOpenTimeout = time.Minute

// openBlobCache opens the blob cache cfg.Storage describes: the local
// cache (filesystem: its rootdirectory, else DataDir/blobs), on top of the
// fleet's shared store when the driver is not filesystem.
func openBlobCache(cfg Config) (*blobcache.Cache, error) {
	st, err := blobcache.ParseStorage(cfg.Storage)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cfg.DataDir, "blobs")
	if st.LocalDir != "" {
		dir = st.LocalDir
	}
	var shared *blobcache.Shared
	if st.Shared() {
		ctx, cancel := context.WithTimeout(context.Background(), sharedOpenTimeout)
		defer cancel()
		shared, err = blobcache.OpenShared(ctx, st.Driver, st.Params, blobcache.SharedConfig{
			InstanceDir: dir, Redirect: st.Redirect, StaleUploadAge: 2 * max(cfg.BlobFillTimeout, blobcache.DefaultFillTimeout), Logger: cfg.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("open the shared blob store: %w", err)
		}
	}
	return blobcache.New(blobcache.Config{Dir: dir, MaxBytes: cfg.BlobCacheMaxBytes, FillTimeout: cfg.BlobFillTimeout, Logger: cfg.Logger, Shared: shared})
}
