package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/auth"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/blobcache"
	"github.com/notarize/docker-notarize/proxy/replica"
	"github.com/notarize/docker-notarize/proxy/upstream"
)

// Defaults applied to zero Config fields.
const (
	// DefaultUpstreamName and DefaultUpstreamURL are the upstream used when
	// none is configured: Docker Hub, so dockerd's registry-mirrors works.
	DefaultUpstreamName = "docker.io"
	DefaultUpstreamURL  = "https://" + upstream.DockerHubHost
	// DefaultMaxManifestSize bounds a manifest fetched from upstream.
	DefaultMaxManifestSize = 4 << 20
	// DefaultManifestTimeout bounds one manifest fetch.
	DefaultManifestTimeout = time.Minute
	// DefaultManifestCacheBytes bounds the in-memory manifest cache.
	DefaultManifestCacheBytes = 64 << 20
	// DefaultMaxTrackedDigests bounds the per-digest verification counts.
	DefaultMaxTrackedDigests = 100_000
	// DefaultBlobCacheMaxBytes is notarize-proxy's --cache-max-bytes default.
	// Config itself leaves the cache unbounded unless BlobCacheMaxBytes is set.
	DefaultBlobCacheMaxBytes = 20 << 30
)

// TrustSource answers which verified statements exist about a digest. The
// proxy's is a *replica.Replica: lookups never leave the process. An error
// (e.g. wrapping replica.ErrStale) means no answer can be trusted now: the
// decision is then UNVERIFIABLE and fails closed under an enforcing rule.
type TrustSource interface {
	// Records returns the verified records about d.
	Records(ctx context.Context, d notarize.Digest) ([]notarize.Record, error)
	// RecordsBy returns the verified records about d by the keys keyIDs
	// only, in log order: what a decision reads.
	RecordsBy(ctx context.Context, d notarize.Digest, keyIDs []string) ([]notarize.Record, error)
	// Refresh catches up with the ledger now; the proxy calls it before
	// refusing a manifest, so that a statement signed just before a pull
	// counts.
	Refresh(ctx context.Context) error
	// Fresh returns why no answer can be trusted now, or nil (/healthz).
	Fresh() error
	// Status reports the source's state (metrics, stats).
	Status() replica.Status
	// Tallies, Revocations and History are what the dashboard shows of the
	// ledger: each key's count of current statements by status, recent
	// revocations, and a digest's statements (see package replica).
	Tallies(keyIDs []string) ([]replica.Tally, error)
	Revocations(keyIDs []string, limit int) ([]replica.Revocation, error)
	History(d notarize.Digest, keep func(keyID string) bool, others int) ([]notarize.Record, int, error)
	// Witnesses reports the witness policy's witnesses and their
	// cosignatures on the last verified checkpoint (the dashboard).
	Witnesses() replica.WitnessHealth
}

var _ TrustSource = (*replica.Replica)(nil)

// Config configures a Server.
type Config struct {
	// DataDir holds the blob cache (DataDir/blobs); required.
	DataDir string
	// Upstreams are the registries the proxy may contact; nothing else is
	// ever contacted. Default: Docker Hub as "docker.io".
	Upstreams []upstream.Config
	// DefaultUpstream names the upstream for requests without ns or name
	// prefix; default "docker.io" when configured, else the only upstream,
	// else none (such requests are NAME_UNKNOWN).
	DefaultUpstream string
	// Policy decides; required. Replace it at run time with SetPolicy.
	Policy *notarize.Evaluator
	// Trust answers lookups; required.
	Trust TrustSource
	// MaxManifestSize bounds a manifest; default DefaultMaxManifestSize.
	MaxManifestSize int64
	// ManifestTimeout bounds one manifest fetch; default DefaultManifestTimeout.
	ManifestTimeout time.Duration
	// ManifestCacheBytes bounds the in-memory manifest cache (by digest);
	// default DefaultManifestCacheBytes; negative disables it.
	ManifestCacheBytes int64
	// BlobFillTimeout bounds one blob download; default blobcache's.
	BlobFillTimeout time.Duration
	// BlobCacheMaxBytes bounds the blob cache on disk: least recently used
	// blobs are evicted, and a larger blob is served without being cached.
	// 0 means unbounded.
	BlobCacheMaxBytes int64
	// BlobFillMemoryBytes bounds the memory all blob downloads in progress
	// and their clients hold at once in 1 MiB chunks; past it downloads
	// stream through their temporary files with 32 KiB buffers, never
	// waiting or refused (blobcache.Config.FillMemoryBytes); default
	// blobcache.DefaultFillMemoryBytes (64 MiB).
	BlobFillMemoryBytes int64
	// Storage is where blobs are cached (distribution's storage section):
	// zero is filesystem under DataDir/blobs; s3, gcs or azure make a cache
	// shared by a fleet of proxies (blobcache.ParseStorage), the drivers
	// being registered by the main package (proxy/blobcache/drivers).
	Storage configuration.Storage
	// MaxTrackedDigests bounds the per-digest verification counts; default
	// DefaultMaxTrackedDigests.
	MaxTrackedDigests int
	// Logger receives one line per decision and the failures; default: discard.
	Logger *slog.Logger
	// Auth authenticates clients (htpasswd or bearer tokens); zero serves
	// them anonymously. Either way the policy's access rules apply.
	Auth AuthConfig

	// access is Auth's access controller, built by Validate.
	access auth.AccessController
}

// Validate checks the configuration (after defaults) and builds the
// access controller Auth describes (reading its files).
func (c *Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("DataDir is required"))
	}
	if c.Policy == nil {
		errs = append(errs, errors.New("Policy is required"))
	}
	if c.Trust == nil {
		errs = append(errs, errors.New("Trust is required"))
	}
	seen := map[string]bool{}
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		if err := u.Validate(); err != nil {
			errs = append(errs, err)
		}
		if seen[u.Name] {
			errs = append(errs, fmt.Errorf("upstream %q configured twice", u.Name))
		}
		seen[u.Name] = true
	}
	if c.DefaultUpstream != "" && !seen[c.DefaultUpstream] && len(c.Upstreams) > 0 {
		errs = append(errs, fmt.Errorf("default upstream %q is not configured", c.DefaultUpstream))
	}
	if c.Auth.Enabled() && c.access == nil {
		ac, err := c.Auth.accessController()
		if err != nil {
			errs = append(errs, err)
		}
		c.access = ac
	}
	if _, err := blobcache.ParseStorage(c.Storage); err != nil {
		errs = append(errs, err)
	}
	if c.MaxManifestSize < 0 || c.ManifestTimeout < 0 || c.BlobFillTimeout < 0 || c.MaxTrackedDigests < 0 || c.BlobCacheMaxBytes < 0 || c.BlobFillMemoryBytes < 0 {
		errs = append(errs, errors.New("negative size or timeout"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("proxy config: %w", err)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if len(c.Upstreams) == 0 {
		c.Upstreams = []upstream.Config{{Name: DefaultUpstreamName, URL: DefaultUpstreamURL}}
	} else {
		c.Upstreams = append([]upstream.Config(nil), c.Upstreams...)
	}
	if c.DefaultUpstream == "" {
		for _, u := range c.Upstreams {
			if u.Name == DefaultUpstreamName {
				c.DefaultUpstream = u.Name
			}
		}
		if c.DefaultUpstream == "" && len(c.Upstreams) == 1 {
			c.DefaultUpstream = c.Upstreams[0].Name
		}
	}
	if c.MaxManifestSize == 0 {
		c.MaxManifestSize = DefaultMaxManifestSize
	}
	if c.ManifestTimeout == 0 {
		c.ManifestTimeout = DefaultManifestTimeout
	}
	if c.ManifestCacheBytes == 0 {
		c.ManifestCacheBytes = DefaultManifestCacheBytes
	}
	if c.MaxTrackedDigests == 0 {
		c.MaxTrackedDigests = DefaultMaxTrackedDigests
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
