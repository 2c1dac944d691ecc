package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"github.com/notarize/docker-notarize/notarize"
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
	return blobcache.New(blobcache.Config{Dir: dir, MaxBytes: cfg.BlobCacheMaxBytes, FillMemoryBytes: cfg.BlobFillMemoryBytes, FillTimeout: cfg.BlobFillTimeout, Logger: cfg.Logger, Shared: shared})
}

// redirectBlob answers a request for a blob that is not in the local cache
// with a redirect to the shared store's (presigned) URL, when redirects are
// configured and the shared store has the blob; it reports whether it
// answered. The gate has passed the request; the repository's own upstream
// must have answered for the blob, as for a blob served from the cache.
// The proxy does not read the copy before redirecting (that would cost the
// transfer the redirect spares): the client checks the bytes against the
// digest it asked for, as docker, containerd and go-containerregistry do
// (TestFleetRedirectClientChecksDigest), and nothing the proxy decides
// depends on them. A copy corrupted in the bucket fails those clients'
// pulls until a streaming instance of the fleet (which hashes it) removes
// it, or the operator deletes the object.
func (s *Server) redirectBlob(w http.ResponseWriter, r *http.Request, t target, d notarize.Digest, upstreamHas bool) bool {
	sh := s.blobs.Shared()
	if sh == nil || !sh.Redirects() {
		return false
	}
	if _, err := sh.Stat(r.Context(), d); err != nil {
		return false // not there, or unreadable: stream it through the cache
	}
	if !upstreamHas && !s.confirmUpstream(w, r, t, d) {
		return true
	}
	u, err := sh.RedirectURL(r, d)
	if err != nil || u == "" {
		if err != nil {
			s.log.LogAttrs(r.Context(), slog.LevelWarn, "shared blob store: no redirect; streaming", slog.String("digest", string(d)), slog.String("error", err.Error()))
		}
		return false
	}
	s.metrics.cache.WithLabelValues("blob", "redirect").Inc()
	http.Redirect(w, r, u, http.StatusTemporaryRedirect)
	return true
}

// fillSource labels the bytes a fill streamed: "shared" from the fleet's
// store, "upstream" otherwise.
func fillSource(f *blobcache.Fill) string {
	if f.FromShared() {
		return "shared"
	}
	return "upstream"
}
