package blobcache

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"

	"github.com/notarize/docker-notarize/notarize"
)

// DefaultStaleUploadAge is how old another instance's temporary upload
// must be before Shared removes it as left behind by a crash.
const DefaultStaleUploadAge = 24 * time.Hour

// DefaultCleanupTimeout bounds removing a temporary upload that was not
// moved into place (the upload failed, was cancelled, or another instance
// stored the blob first) unless configured otherwise.
const DefaultCleanupTimeout = time.Minute

// sharedRoot is where Shared keeps everything in the driver's namespace
// (under the driver's own rootdirectory, if any): committed blobs at
// sharedRoot/blobs/sha256/XX/HEX and temporary uploads at
// sharedRoot/uploads/INSTANCE/HEX-RANDOM.
const sharedRoot = "/notarize/v1"

// SharedConfig configures a Shared store.
type SharedConfig struct {
	// Driver is the storage driver the fleet shares, e.g. from
	// factory.Create (see OpenShared); required.
	Driver storagedriver.StorageDriver
	// InstanceDir is a directory of this instance only (the local cache's
	// Dir) where its instance identity is kept: the name of its temporary
	// uploads, removed wholesale when the same instance starts again;
	// required.
	InstanceDir string
	// Redirect makes RedirectURL answer with the driver's (presigned) URLs
	// instead of "".
	Redirect bool
	// StaleUploadAge is how old other instances' temporary uploads must be
	// to be removed at start (a crashed instance that never came back);
	// default DefaultStaleUploadAge.
	StaleUploadAge time.Duration
	// CleanupTimeout bounds removing a temporary upload that was not moved
	// into place. The removal runs detached from the upload's context, so
	// that an upload cut short (a cancelled or timed-out fill, a shutdown)
	// still removes what it wrote; default DefaultCleanupTimeout.
	CleanupTimeout time.Duration
	// Logger receives failed uploads and cleanups; default: discard.
	Logger *slog.Logger
}

// Shared is the fleet tier of the blob cache: verified blobs stored on a
// distribution storage driver that several proxies share (an S3 bucket).
// A blob is written to a temporary path of this instance, committed and
// only then moved (the driver's Move) under its digest, after the bytes
// were hashed to that digest; nothing read back from it is trusted before
// it is hashed again by the Fill that reads it. It is safe for concurrent
// use.
type Shared struct {
	cfg      SharedConfig
	instance string
}

// OpenShared creates the storage driver name with distribution's factory
// (the driver must be registered: import proxy/blobcache/drivers in the
// main package) and opens a Shared store on it.
func OpenShared(ctx context.Context, name string, params map[string]any, cfg SharedConfig) (*Shared, error) {
	d, err := factory.Create(ctx, name, params)
	if err != nil {
		var unknown factory.InvalidStorageDriverError
		if errors.As(err, &unknown) {
			return nil, fmt.Errorf("blobcache: storage driver %q is not registered in this program (notarize-proxy registers s3, gcs, azure and filesystem): %w", name, err)
		}
		return nil, fmt.Errorf("blobcache: storage driver %s: %w", name, err)
	}
	cfg.Driver = d
	return NewShared(ctx, cfg)
}

// NewShared opens a Shared store on cfg.Driver: it reads or makes this
// instance's identity in cfg.InstanceDir and removes temporary uploads left
// by an earlier run of this instance, and other instances' older than
// cfg.StaleUploadAge.
func NewShared(ctx context.Context, cfg SharedConfig) (*Shared, error) {
	switch {
	case cfg.Driver == nil:
		return nil, errors.New("blobcache: shared store: Driver is required")
	case cfg.InstanceDir == "":
		return nil, errors.New("blobcache: shared store: InstanceDir is required")
	case cfg.StaleUploadAge < 0:
		return nil, errors.New("blobcache: shared store: negative StaleUploadAge")
	case cfg.CleanupTimeout < 0:
		return nil, errors.New("blobcache: shared store: negative CleanupTimeout")
	}
	if cfg.StaleUploadAge == 0 {
		cfg.StaleUploadAge = DefaultStaleUploadAge
	}
	if cfg.CleanupTimeout == 0 {
		cfg.CleanupTimeout = DefaultCleanupTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	id, err := instanceID(cfg.InstanceDir)
	if err != nil {
		return nil, err
	}
	s := &Shared{cfg: cfg, instance: id}
	if err := s.cleanUploads(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// instanceID reads dir/instance-id, or makes it: 16 random bytes in hex.
func instanceID(dir string) (string, error) {
	p := filepath.Join(dir, "instance-id")
	b, err := os.ReadFile(p)
	if err == nil && len(b) == 32 {
		if _, err := hex.DecodeString(string(b)); err == nil {
			return string(b), nil
		}
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("blobcache: instance identity: %w", err)
	}
	id := randomHex(16)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("blobcache: instance identity: %w", err)
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(id), 0o600); err != nil {
		return "", fmt.Errorf("blobcache: instance identity: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return "", fmt.Errorf("blobcache: instance identity: %w", err)
	}
	return id, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// Driver returns the storage driver's name, e.g. "s3aws".
func (s *Shared) Driver() string { return s.cfg.Driver.Name() }

// Instance returns this instance's identity, the directory of its
// temporary uploads.
func (s *Shared) Instance() string { return s.instance }

// BlobPath returns where blob d is committed in the driver's namespace.
func BlobPath(d notarize.Digest) string {
	h := d.Hex()
	return path.Join(sharedRoot, "blobs", "sha256", h[:2], h)
}

func (s *Shared) uploadDir() string { return path.Join(sharedRoot, "uploads", s.instance) }

// cleanUploads removes this instance's temporary uploads (left by a crash:
// nothing of this instance is uploading yet) and other instances' ones
// older than StaleUploadAge. A temporary upload is never visible as a blob,
// so this is only about space.
func (s *Shared) cleanUploads(ctx context.Context) error {
	if err := s.cfg.Driver.Delete(ctx, s.uploadDir()); err != nil && !isNotFound(err) {
		return fmt.Errorf("blobcache: shared store: remove this instance's old uploads: %w", err)
	}
	cutoff := time.Now().Add(-s.cfg.StaleUploadAge)
	var stale []string
	err := s.cfg.Driver.Walk(ctx, path.Join(sharedRoot, "uploads"), func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() && fi.ModTime().Before(cutoff) {
			stale = append(stale, fi.Path())
		}
		return nil
	})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("blobcache: shared store: list uploads: %w", err)
	}
	for _, p := range stale {
		if err := s.cfg.Driver.Delete(ctx, p); err != nil && !isNotFound(err) {
			s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "shared blob store: cannot remove a stale upload", slog.String("path", p), slog.String("error", err.Error()))
		}
	}
	return nil
}

func isNotFound(err error) bool {
	var nf storagedriver.PathNotFoundError
	return errors.As(err, &nf)
}

// Stat returns the size of blob d in the shared store, or an error wrapping
// fs.ErrNotExist. A size says nothing about the content: it is checked by
// whoever reads the blob.
func (s *Shared) Stat(ctx context.Context, d notarize.Digest) (int64, error) {
	fi, err := s.cfg.Driver.Stat(ctx, BlobPath(d))
	if err != nil {
		if isNotFound(err) {
			return 0, fmt.Errorf("shared blob %s: %w", d, fs.ErrNotExist)
		}
		return 0, fmt.Errorf("shared blob %s: %w", d, err)
	}
	if fi.IsDir() {
		return 0, fmt.Errorf("shared blob %s: a directory: %w", d, fs.ErrNotExist)
	}
	return fi.Size(), nil
}

// Fetch returns a Fetch that reads blob d from the shared store (the
// Fill that uses it hashes every byte), or an error wrapping
// fs.ErrNotExist when the store does not have it.
func (s *Shared) Fetch(ctx context.Context, d notarize.Digest) (io.ReadCloser, int64, error) {
	size, err := s.Stat(ctx, d)
	if err != nil {
		return nil, 0, err
	}
	rc, err := s.cfg.Driver.Reader(ctx, BlobPath(d), 0)
	if err != nil {
		if isNotFound(err) { // evicted meanwhile
			return nil, 0, fmt.Errorf("shared blob %s: %w", d, fs.ErrNotExist)
		}
		return nil, 0, fmt.Errorf("shared blob %s: %w", d, err)
	}
	return rc, size, nil
}

// Put stores the verified blob d (size bytes read from src) unless the
// store has it already: written to a temporary path of this instance,
// committed, then moved under its digest. The bytes are hashed as they are
// uploaded: bytes that do not hash to d are never moved under d
// (ErrDigestMismatch). When another instance stored d while this one was
// uploading, the upload is not moved (stored is false): the copy in place
// is left alone. Two instances that both move identical bytes there leave
// one whole copy or the other.
//
// Whatever happens (a failed or cancelled upload, a failed move, another
// instance first), the temporary upload is gone when Put returns, unless
// removing it failed too (then the error says so; NewShared removes it at
// this instance's next start). The removal runs under a context detached
// from ctx and bounded by CleanupTimeout, so that an upload cut short by
// ctx still removes what it wrote.
func (s *Shared) Put(ctx context.Context, d notarize.Digest, src io.Reader, size int64) (stored bool, err error) {
	if have, err := s.Stat(ctx, d); err == nil && have == size {
		return false, nil
	}
	tmp := path.Join(s.uploadDir(), d.Hex()+"-"+randomHex(8))
	w, err := s.cfg.Driver.Writer(ctx, tmp, false)
	if err != nil {
		return false, fmt.Errorf("shared blob %s: upload: %w", d, err)
	}
	moved, committed := false, false
	defer func() {
		if moved {
			return
		}
		if cerr := s.removeUpload(ctx, w, tmp, committed); cerr != nil {
			err = errors.Join(err, fmt.Errorf("shared blob %s: %w", d, cerr))
		}
	}()
	h := sha256.New()
	n, err := io.CopyBuffer(w, io.TeeReader(src, h), make([]byte, chunkSize))
	if err != nil {
		return false, fmt.Errorf("shared blob %s: upload: %w", d, err)
	}
	if n != size {
		return false, fmt.Errorf("shared blob %s: upload: %w: %d bytes of %d", d, ErrSizeMismatch, n, size)
	}
	if got := digestOf(h); got != d { // never under d unless the bytes hash to d
		return false, fmt.Errorf("shared blob %s: upload: %w: the bytes hash to %s", d, ErrDigestMismatch, got)
	}
	if err := w.Commit(ctx); err != nil {
		// Not committed: the deferred removal cancels the writer, which
		// aborts a pending multipart upload (s3's Commit can fail before
		// it completes one) and closes a file; a Cancel after a Commit
		// that did complete only errs, and the delete follows anyway.
		return false, fmt.Errorf("shared blob %s: upload: commit: %w", d, err)
	}
	committed = true
	if err := w.Close(); err != nil {
		return false, fmt.Errorf("shared blob %s: upload: close: %w", d, err)
	}
	if have, err := s.Stat(ctx, d); err == nil && have == size {
		return false, nil // another instance stored it meanwhile: its copy stays
	}
	if err := s.cfg.Driver.Move(ctx, tmp, BlobPath(d)); err != nil {
		// s3's Move is a copy then a delete: the blob may be in place and
		// the temporary upload still there; the deferred removal sees to it.
		return false, fmt.Errorf("shared blob %s: move into place: %w", d, err)
	}
	moved = true
	return true, nil
}

// removeUpload removes the temporary upload tmp that was not moved into
// place: the writer's upload is cancelled unless it was committed (a
// pending multipart upload is aborted), and whatever reached tmp is
// deleted; both under a context detached from ctx, bounded by
// CleanupTimeout.
func (s *Shared) removeUpload(ctx context.Context, w storagedriver.FileWriter, tmp string, committed bool) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.CleanupTimeout)
	defer cancel()
	var errs []error
	if !committed {
		if err := w.Cancel(cctx); err != nil {
			errs = append(errs, fmt.Errorf("cancel the upload: %w", err))
		}
	}
	if err := s.cfg.Driver.Delete(cctx, tmp); err != nil && !isNotFound(err) {
		errs = append(errs, fmt.Errorf("remove the temporary upload %s: %w", tmp, err))
	}
	return errors.Join(errs...)
}

// Remove deletes blob d from the shared store: a copy that did not hash to
// its digest when read. Only the bytes are checked, never trusted, so this
// is about not reading a bad copy again.
func (s *Shared) Remove(ctx context.Context, d notarize.Digest) error {
	if err := s.cfg.Driver.Delete(ctx, BlobPath(d)); err != nil && !isNotFound(err) {
		return fmt.Errorf("shared blob %s: remove: %w", d, err)
	}
	return nil
}

// RedirectURL returns a URL the client of r can fetch blob d from directly
// (a presigned URL, as distribution's redirect option gives), or "" when
// redirects are not configured or the driver has none. The client checks
// the bytes against d itself, as every registry client does for blobs.
func (s *Shared) RedirectURL(r *http.Request, d notarize.Digest) (string, error) {
	if !s.cfg.Redirect {
		return "", nil
	}
	u, err := s.cfg.Driver.RedirectURL(r, BlobPath(d))
	if err != nil {
		return "", fmt.Errorf("shared blob %s: redirect: %w", d, err)
	}
	return u, nil
}

// Redirects reports whether redirects are configured.
func (s *Shared) Redirects() bool { return s.cfg.Redirect }

// String names the store for logs.
func (s *Shared) String() string {
	return strings.Join([]string{s.cfg.Driver.Name(), sharedRoot}, ":")
}
