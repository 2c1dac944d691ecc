package plugin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/notarize/docker-notarize/notarize"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// FilePrefix marks an IMAGE argument that names a local file: file:PATH.
const FilePrefix = "file:"

// maxManifestSize bounds a manifest read from a registry (as go-containerregistry does).
const maxManifestSize = 4 << 20

// Manifest media types understood.
const (
	mediaTypeOCIManifest    = ocispec.MediaTypeImageManifest
	mediaTypeOCIIndex       = ocispec.MediaTypeImageIndex
	mediaTypeDockerManifest = string(types.DockerManifestSchema2)
	mediaTypeDockerList     = string(types.DockerManifestList)
)

// DefaultRegistryTimeout bounds each exchange with a registry (ping and
// token, then each manifest): a registry that accepts a connection and never
// answers must not hang a CI job.
const DefaultRegistryTimeout = time.Minute

// ErrDigestMismatch is returned (wrapped) when the bytes a registry served do
// not hash to the digest the registry announced or the reference asked for.
var ErrDigestMismatch = errors.New("digest mismatch")

// Subject is what a statement is about, resolved to its content digest.
type Subject struct {
	// Name is the fully qualified image reference, or the file's base name.
	Name string
	// Digest is the SHA-256 of the manifest, index or file bytes, computed here.
	Digest notarize.Digest
	// MediaType is the manifest media type ("" for files).
	MediaType string
	// Size is the size in bytes of the manifest or file.
	Size int64
	// Kind is notarize.KindImage, KindIndex or KindFile.
	Kind string
	// Manifests are the manifests an index lists, each fetched and hashed;
	// filled only when resolving an index recursively.
	Manifests []Subject
}

// Resolver turns an IMAGE argument into a Subject: file:PATH is hashed from
// disk; anything else is an image reference whose manifest is fetched from its
// registry and hashed locally.
type Resolver struct {
	keychain authn.Keychain
	guard    *plainHTTPGuard
	timeout  time.Duration // per registry exchange
	// plainFallback is how long an https attempt runs alone before an
	// http one starts beside it (plainFallbackDelay; anonymousGet).
	plainFallback time.Duration
}

// NewResolver returns a Resolver that authenticates with keychain (use
// authn.DefaultKeychain for the Docker config and credential helpers) over
// base (http.DefaultTransport if nil), allowing plain http only to loopback
// hosts and the insecure registries given as HOST or HOST:PORT.
func NewResolver(keychain authn.Keychain, base http.RoundTripper, insecure []string) (*Resolver, error) {
	if keychain == nil {
		keychain = authn.DefaultKeychain
	}
	guard, err := newPlainHTTPGuard(base, insecure)
	if err != nil {
		return nil, err
	}
	return &Resolver{keychain: keychain, guard: guard, timeout: DefaultRegistryTimeout, plainFallback: plainFallbackDelay}, nil
}

// Resolve resolves arg (file:PATH, NAME[:TAG] or NAME@sha256:…) to its subject.
// With recursive, an index's manifests are fetched and hashed too.
func (r *Resolver) Resolve(ctx context.Context, arg string, recursive bool) (*Subject, error) {
	if path, ok := strings.CutPrefix(arg, FilePrefix); ok {
		s, err := resolveFile(ctx, path)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", arg, err)
		}
		return s, nil
	}
	s, err := r.resolveImage(ctx, arg, recursive)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", arg, remoteError{err}) // a registry's text: one line
	}
	return s, nil
}

// DigestOnly returns the subject of a NAME@sha256:… reference without
// contacting the registry: the digest already names the content, and a verdict
// about a digest needs only the ledger. It returns false for any other
// argument (tags, files), which must be resolved with Resolve.
func DigestOnly(arg string) (*Subject, bool) {
	if strings.HasPrefix(arg, FilePrefix) {
		return nil, false
	}
	ref, err := name.NewDigest(arg)
	if err != nil {
		return nil, false
	}
	d, err := notarize.ParseDigest(ref.DigestStr())
	if err != nil {
		return nil, false
	}
	return &Subject{Name: ref.Name(), Digest: d}, true
}

// resolveFile hashes the regular file at path. Anything else (a directory, a
// FIFO, a device) is refused without blocking (openRegular), and ctx ends the
// hash.
func resolveFile(ctx context.Context, path string) (*Subject, error) {
	if path == "" {
		return nil, errors.New("empty path")
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	f, err := openRegular(path, fi)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, contextReader{ctx: ctx, r: f})
	if err != nil {
		return nil, err
	}
	return &Subject{
		Name:   filepath.Base(path),
		Digest: notarize.Digest("sha256:" + hex.EncodeToString(h.Sum(nil))),
		Size:   n,
		Kind:   notarize.KindFile,
	}, nil
}

func (r *Resolver) parseReference(arg string) (name.Reference, error) {
	ref, err := name.ParseReference(arg)
	if err != nil {
		return nil, err
	}
	if r.guard.allowsPlain(ref.Context().RegistryStr()) {
		// Loopback or --insecure-registry: let go-containerregistry try http.
		return name.ParseReference(arg, name.Insecure)
	}
	return ref, nil
}

func (r *Resolver) resolveImage(ctx context.Context, arg string, recursive bool) (*Subject, error) {
	ref, err := r.parseReference(arg)
	if err != nil {
		return nil, err
	}
	repo := ref.Context()
	m, tr, scheme, err := r.firstManifest(ctx, repo, ref.Identifier())
	if err != nil {
		return nil, err
	}
	if d, ok := ref.(name.Digest); ok && d.DigestStr() != string(m.Digest) {
		return nil, fmt.Errorf("%w: asked for %s, content hashes to %s", ErrDigestMismatch, d.DigestStr(), m.Digest)
	}
	s := &Subject{Name: ref.Name(), Digest: m.Digest, MediaType: m.MediaType, Size: int64(len(m.Bytes)), Kind: m.Kind}
	if !recursive || s.Kind != notarize.KindIndex {
		return s, nil
	}
	for _, child := range m.Manifests {
		cm, err := r.fetchManifest(ctx, tr, scheme, repo, child.Digest)
		if err != nil {
			return nil, fmt.Errorf("manifest %s of the index: %w", child.Digest, err)
		}
		if string(cm.Digest) != child.Digest {
			return nil, fmt.Errorf("%w: index lists %s, content hashes to %s", ErrDigestMismatch, child.Digest, cm.Digest)
		}
		if child.Size != 0 && child.Size != int64(len(cm.Bytes)) {
			return nil, fmt.Errorf("%w: index lists %s with size %d, got %d bytes", ErrDigestMismatch, child.Digest, child.Size, len(cm.Bytes))
		}
		s.Manifests = append(s.Manifests, Subject{
			Name:      repo.Digest(child.Digest).Name(),
			Digest:    cm.Digest,
			MediaType: cm.MediaType,
			Size:      int64(len(cm.Bytes)),
			Kind:      cm.Kind,
		})
	}
	return s, nil
}

// transport authenticates to repo's registry (credentials, ping, token)
// within the registry timeout and returns a transport for pulls from repo.
func (r *Resolver) transport(ctx context.Context, repo name.Repository) (http.RoundTripper, error) {
	auth, err := r.credentials(ctx, repo)
	if err != nil {
		return nil, err
	}
	return r.transportFor(ctx, repo, auth, r.guard)
}

// credentials returns the keychain's credentials for repo (authn.Anonymous
// when it has none), within the registry timeout (a credential helper).
func (r *Resolver) credentials(ctx context.Context, repo name.Repository) (authn.Authenticator, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	auth, err := authn.Resolve(ctx, r.keychain, repo)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", repo.RegistryStr(), err)
	}
	return auth, nil
}

// transportFor pings repo's registry over base (the guard, or a pingReplay
// over it) and fetches a token with auth as the ping's challenge asks,
// within the registry timeout, and returns a transport for pulls from repo.
func (r *Resolver) transportFor(ctx context.Context, repo name.Repository, auth authn.Authenticator, base http.RoundTripper) (http.RoundTripper, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	return transport.NewWithContext(ctx, repo.Registry, auth, base, []string{repo.Scope(transport.PullScope)})
}

// fetchManifest is fetchManifest within the registry timeout.
func (r *Resolver) fetchManifest(ctx context.Context, tr http.RoundTripper, scheme string, repo name.Repository, identifier string) (*manifest, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	return fetchManifest(ctx, tr, scheme, repo, identifier)
}

// manifest is a manifest as fetched, hashed and classified here
// (notarize.ClassifyManifest): MediaType is what its bytes declare, Kind is
// KindIndex only for a document that is an index and nothing else.
type manifest struct {
	Bytes     []byte
	Digest    notarize.Digest
	MediaType string
	Kind      string
	Manifests []descriptor // of an index
}

// descriptor is a manifest an index lists, as its index describes it.
type descriptor struct {
	MediaType string
	Digest    string
	Size      int64
}

// fetchManifest GETs SCHEME://REGISTRY/v2/REPO/manifests/IDENTIFIER and
// reads it (readManifest).
func fetchManifest(ctx context.Context, tr http.RoundTripper, scheme string, repo name.Repository, identifier string) (*manifest, error) {
	resp, err := sendManifestRequest(ctx, tr, scheme, repo, identifier)
	if err != nil {
		return nil, err
	}
	return readManifest(resp)
}

// sendManifestRequest sends the GET of a manifest, asking for every media
// type understood, and returns the response, whatever its status.
func sendManifestRequest(ctx context.Context, tr http.RoundTripper, scheme string, repo name.Repository, identifier string) (*http.Response, error) {
	u := url.URL{
		Scheme: scheme,
		Host:   repo.RegistryStr(),
		Path:   fmt.Sprintf("/v2/%s/manifests/%s", repo.RepositoryStr(), identifier),
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", strings.Join([]string{mediaTypeOCIManifest, mediaTypeOCIIndex, mediaTypeDockerManifest, mediaTypeDockerList}, ","))
	return (&http.Client{Transport: tr}).Do(req)
}

// readManifest reads and closes a manifest response: anything but 200 is
// the registry's error. It hashes the body itself and refuses it when it
// disagrees with the registry's Docker-Content-Digest. The body is
// classified once with the Content-Type it came with: a document
// notarize.ClassifyManifest refuses (ambiguous, a mediaType that disagrees
// with the Content-Type, schema 1, unknown) is an error wrapping
// notarize.ErrBadManifest, so it is never signed.
func readManifest(resp *http.Response) (*manifest, error) {
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	if len(body) > maxManifestSize {
		return nil, fmt.Errorf("manifest larger than %d bytes", maxManifestSize)
	}
	m := &manifest{Bytes: body, Digest: notarize.DigestOf(body)}
	if said := resp.Header.Get("Docker-Content-Digest"); said != "" && said != string(m.Digest) {
		return nil, fmt.Errorf("%w: registry says %s, content hashes to %s", ErrDigestMismatch, said, m.Digest)
	}
	c, err := notarize.ClassifyManifest(body, resp.Header.Get("Content-Type"))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", m.Digest, err)
	}
	m.MediaType, m.Kind = c.MediaType, c.Kind
	for _, d := range c.Manifests {
		m.Manifests = append(m.Manifests, descriptor{MediaType: d.MediaType, Digest: string(d.Digest), Size: d.Size})
	}
	return m, nil
}
