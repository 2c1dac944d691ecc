// Package upstream is the proxy's client of one upstream registry (OCI
// distribution-spec, https://github.com/opencontainers/distribution-spec):
// it authenticates like the Docker CLI (anonymous or Basic credentials from
// the Docker config and credential helpers, exchanged for bearer tokens, via
// go-containerregistry's transport) and makes sure those credentials only
// ever reach the upstream's own host and the token hosts configured for it.
// It returns bytes and answers; it decides nothing.
package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/notarize/docker-notarize/notarize"
)

// Docker Hub's registry and token hosts.
const (
	DockerHubHost      = "registry-1.docker.io"
	DockerHubTokenHost = "auth.docker.io"
)

// Defaults applied to zero Config fields.
const (
	DefaultResponseHeaderTimeout = 30 * time.Second
	DefaultDialTimeout           = 10 * time.Second
	maxErrorBody                 = 64 << 10
	maxTransports                = 1024
	maxRedirects                 = 5
)

// Manifest media types asked for when the client sent no Accept header.
var DefaultAccept = []string{
	ocispec.MediaTypeImageIndex,
	ocispec.MediaTypeImageManifest,
	string(types.DockerManifestList),
	string(types.DockerManifestSchema2),
}

// Sentinel errors, wrapped with the upstream and the operation.
var (
	// ErrUnreachable: no answer (connection refused, reset, timeout, TLS).
	ErrUnreachable = errors.New("upstream unreachable")
	// ErrDigestMismatch: the bytes for a digest reference hash to another digest.
	ErrDigestMismatch = errors.New("upstream sent content that does not match the requested digest")
	// ErrTooLarge: a manifest over the size bound.
	ErrTooLarge = errors.New("upstream manifest too large")
	// ErrBadManifest: a manifest that notarize.ClassifyManifest refuses:
	// not one JSON object, of no known kind, or ambiguous (readable as an
	// image and as an index, or declaring another media type than the
	// Content-Type it came with). The wrapped *notarize.ManifestError says
	// what was found.
	ErrBadManifest = errors.New("upstream manifest invalid or ambiguous")
	// ErrBadAnswer: an answer that is not what the API defines (a tags
	// list that is not one JSON object of a name and tags).
	ErrBadAnswer = errors.New("upstream answer invalid")
)

// Error is a non-2xx answer from an upstream registry.
type Error struct {
	Upstream   string
	Method     string
	URL        string // without credentials
	StatusCode int
	// Code is the first OCI error code of the body ("MANIFEST_UNKNOWN"…), if any.
	Code    string
	Message string
}

// Error describes the answer.
func (e *Error) Error() string {
	msg := e.Message
	if e.Code != "" {
		msg = e.Code + ": " + msg
	}
	return fmt.Sprintf("upstream %s: %s %s: HTTP %d %s", e.Upstream, e.Method, e.URL, e.StatusCode, strings.TrimSpace(msg))
}

// Config describes one upstream registry.
type Config struct {
	// Name is how policies and routes call it, e.g. "docker.io"; required.
	Name string
	// URL is its base URL, e.g. "https://registry-1.docker.io"; required.
	URL string
	// Insecure allows plain http to a host that is not loopback.
	Insecure bool
	// AuthHosts are further hosts ("host" or "host:port") that may receive
	// the upstream's credentials: token realms on another host (Docker Hub's
	// auth.docker.io is added for Docker Hub). Any other host gets none.
	AuthHosts []string
	// Keychain resolves credentials; default authn.DefaultKeychain (the
	// Docker config and its credential helpers).
	Keychain authn.Keychain
	// Transport is the base transport; default a clone of
	// http.DefaultTransport with the timeouts below, whose dialer checks
	// every address it connects to for another host than the upstream's
	// and its AuthHosts (see PrivateNetwork). A Transport given here does
	// its own dialing: only literal addresses in redirects are checked.
	Transport http.RoundTripper
	// Resolver resolves host names for the default transport; default
	// net.DefaultResolver. Tests map names with it.
	Resolver Resolver
	// PrivateNetwork lets this upstream's redirects and token realms reach
	// loopback, link-local and private addresses (its blob storage on the
	// same private network). Without it they are refused at dial time,
	// unless the upstream's URL host is itself such an address or localhost.
	PrivateNetwork bool
	// ResponseHeaderTimeout bounds the wait for an answer's headers when
	// Transport is nil; default DefaultResponseHeaderTimeout.
	ResponseHeaderTimeout time.Duration
	// UserAgent is sent with every request.
	UserAgent string
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Name == "" || strings.ContainsAny(c.Name, "/ \t?#") {
		return fmt.Errorf("upstream name %q: want a non-empty name without '/', spaces, '?' or '#'", c.Name)
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("upstream %s: URL: %w", c.Name, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return fmt.Errorf("upstream %s: URL %q: want http(s)://host[:port]", c.Name, c.URL)
	}
	if u.Scheme == "http" && !c.Insecure && !IsLoopback(u.Hostname()) {
		return fmt.Errorf("upstream %s: plain http to %s is allowed only for loopback hosts or upstreams marked insecure", c.Name, u.Host)
	}
	if _, err := name.NewRegistry(u.Host); err != nil {
		return fmt.Errorf("upstream %s: %w", c.Name, err)
	}
	if c.ResponseHeaderTimeout < 0 {
		return fmt.Errorf("upstream %s: negative timeout", c.Name)
	}
	return nil
}

// IsLoopback reports whether host (no port) is localhost or a loopback IP.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Registry is a client of one upstream registry. It is safe for concurrent use.
type Registry struct {
	cfg    Config
	base   *url.URL
	reg    name.Registry
	authAs name.Registry // the registry whose credentials are looked up
	rt     http.RoundTripper
	// private: the upstream is on a private network, its redirects may
	// go to non-public addresses.
	private bool

	mu         sync.Mutex
	transports map[string]*repoTransport // by repository
}

type repoTransport struct {
	ready chan struct{}
	rt    http.RoundTripper
	err   error
}

// New returns a client of the upstream described by cfg.
func New(cfg Config) (*Registry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.URL)
	u.Path = ""
	var opts []name.Option
	if u.Scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(u.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cfg.Name, err)
	}
	authAs := reg
	allowed := map[string]bool{canonicalHost(u.Host, u.Scheme): true}
	if isDockerHub(u.Host) {
		// Docker Hub credentials are stored under index.docker.io.
		authAs, _ = name.NewRegistry(name.DefaultRegistry)
		allowed[canonicalHost(DockerHubTokenHost, "https")] = true
	}
	for _, h := range cfg.AuthHosts {
		allowed[canonicalHost(h, "https")] = true
	}
	if cfg.Keychain == nil {
		cfg.Keychain = authn.DefaultKeychain
	}
	if cfg.ResponseHeaderTimeout == 0 {
		cfg.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	private := cfg.PrivateNetwork || hostIsNonPublic(u.Hostname())
	base := cfg.Transport
	if base == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		dg := &dialGuard{
			dialer:   &net.Dialer{Timeout: DefaultDialTimeout, KeepAlive: 30 * time.Second},
			resolver: cfg.Resolver, trusted: allowed, private: private,
		}
		t.DialContext = dg.DialContext
		t.Proxy = dg.proxyFunc
		t.TLSHandshakeTimeout = DefaultDialTimeout
		t.ResponseHeaderTimeout = cfg.ResponseHeaderTimeout
		t.MaxIdleConnsPerHost = 64
		base = t
	}
	g := &credentialGuard{inner: base, hostname: u.Hostname(), scheme: u.Scheme, allowed: allowed}
	return &Registry{cfg: cfg, base: u, reg: reg, authAs: authAs, rt: g, private: private, transports: map[string]*repoTransport{}}, nil
}

// Name returns the upstream's name.
func (r *Registry) Name() string { return r.cfg.Name }

// Host returns the upstream's host[:port].
func (r *Registry) Host() string { return r.base.Host }

// URL returns the upstream's base URL.
func (r *Registry) URL() string { return r.base.String() }

// IsDockerHub reports whether the upstream is Docker Hub, whose one-segment
// repositories live under "library/".
func (r *Registry) IsDockerHub() bool { return isDockerHub(r.base.Host) }

func isDockerHub(host string) bool {
	h := strings.ToLower(host)
	return h == DockerHubHost || h == "index.docker.io" || h == "docker.io"
}

// transport returns the authenticated transport for repo, creating it (a
// ping and, for bearer auth, a token exchange) once per repository.
func (r *Registry) transport(ctx context.Context, repo string) (http.RoundTripper, error) {
	r.mu.Lock()
	t, ok := r.transports[repo]
	if !ok {
		if len(r.transports) >= maxTransports {
			for k := range r.transports { // drop an arbitrary one
				delete(r.transports, k)
				break
			}
		}
		t = &repoTransport{ready: make(chan struct{})}
		r.transports[repo] = t
	}
	r.mu.Unlock()
	if !ok {
		t.rt, t.err = r.newTransport(ctx, repo)
		close(t.ready)
		if t.err != nil {
			r.mu.Lock()
			if r.transports[repo] == t {
				delete(r.transports, repo)
			}
			r.mu.Unlock()
		}
	}
	select {
	case <-t.ready:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	return t.rt, t.err
}

func (r *Registry) newTransport(ctx context.Context, repo string) (http.RoundTripper, error) {
	auth, err := authn.Resolve(ctx, r.cfg.Keychain, r.authAs)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: credentials: %w", r.cfg.Name, err)
	}
	scope := r.reg.Repo(repo).Scope(transport.PullScope)
	// Detached from one request's cancellation: the transport is shared.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*r.cfg.ResponseHeaderTimeout)
	defer cancel()
	rt, err := transport.NewWithContext(tctx, r.reg, auth, transport.NewUserAgent(r.rt, r.cfg.UserAgent), []string{scope})
	if err != nil {
		return nil, r.wrap("GET", r.base.JoinPath("/v2/").String(), err)
	}
	return rt, nil
}

// Do sends method to /v2/REPO/PATH with query and header and returns the
// answer when it is 2xx; any other answer is an *Error (its body read and
// closed). The caller closes a returned body. A redirect is followed only
// to the upstream's own scheme and host (else ErrRedirectRefused): what
// Do returns is not checked against a digest (manifests by tag, tags,
// referrers), so it must come from the upstream itself.
func (r *Registry) Do(ctx context.Context, method, repo, path string, query url.Values, header http.Header) (*http.Response, error) {
	return r.do(ctx, method, repo, path, query, header, false)
}

// GetBlob sends method (GET or HEAD) for blob d of repo, as Do, but follows
// redirects to other hosts (registries serve blobs from a CDN or object
// store): the caller must check the bytes against d. A redirect target on
// a loopback, link-local or private address is refused unless the upstream
// is on a private network (Config.PrivateNetwork), at dial time for the
// default transport, or, when the environment routes the request through
// an HTTP proxy (HTTP_PROXY, HTTPS_PROXY), by resolving its host before
// it is sent (the egress proxy must refuse internal ranges too).
func (r *Registry) GetBlob(ctx context.Context, method, repo string, d notarize.Digest) (*http.Response, error) {
	return r.do(ctx, method, repo, "blobs/"+string(d), nil, nil, true)
}

func (r *Registry) do(ctx context.Context, method, repo, path string, query url.Values, header http.Header, anyHost bool) (*http.Response, error) {
	u := r.base.JoinPath("/v2/", repo, path)
	u.RawQuery = query.Encode()
	rt, err := r.transport(ctx, repo)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", r.cfg.Name, err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	c := &http.Client{Transport: rt, CheckRedirect: r.redirectPolicy(anyHost)}
	resp, err := c.Do(req)
	if err != nil {
		return nil, r.wrap(method, u.Redacted(), err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, r.answerError(method, u.Redacted(), resp)
}

// wrap turns a transport failure into an error: an *Error for an HTTP
// answer go-containerregistry turned into an error, else ErrUnreachable.
func (r *Registry) wrap(method, u string, err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		e := &Error{Upstream: r.cfg.Name, Method: method, URL: u, StatusCode: te.StatusCode}
		if len(te.Errors) > 0 {
			e.Code, e.Message = string(te.Errors[0].Code), te.Errors[0].Message
		}
		return e
	}
	return fmt.Errorf("upstream %s: %s %s: %w: %w", r.cfg.Name, method, u, ErrUnreachable, err)
}

func (r *Registry) answerError(method, u string, resp *http.Response) *Error {
	e := &Error{Upstream: r.cfg.Name, Method: method, URL: u, StatusCode: resp.StatusCode}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var body struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(b, &body) == nil && len(body.Errors) > 0 {
		e.Code, e.Message = clip(body.Errors[0].Code, 64), clip(body.Errors[0].Message, 512)
	} else {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}

// Manifest is a manifest as fetched and classified once: its bytes, the
// digest computed from them, and what they are.
type Manifest struct {
	Bytes []byte
	// MediaType is the media type the bytes declare (Parsed.MediaType),
	// never the upstream's Content-Type: it is what the proxy serves.
	MediaType string
	Digest    notarize.Digest
	// Parsed is the classification of Bytes: kind, the blobs of an image,
	// the manifests of an index.
	Parsed *notarize.Manifest
}

// GetManifest fetches the manifest of repo at reference (a tag or a
// digest), reading at most limit bytes. The digest is computed from the
// bytes; for a digest reference it must match (else ErrDigestMismatch).
// The bytes are classified with the Content-Type they came with
// (notarize.ClassifyManifest); a document it refuses, ambiguous ones
// included, is ErrBadManifest.
func (r *Registry) GetManifest(ctx context.Context, repo, reference string, accept []string, limit int64) (*Manifest, error) {
	return r.GetManifestAdmitted(ctx, repo, reference, accept, limit, nil)
}

// Admit is asked, once the answer's headers are in and before its body is
// read, whether size bytes may be read now: size is the answer's
// Content-Length, or the read limit when the upstream sent none. An error
// abandons the answer unread and is returned (wrapped).
type Admit func(size int64) error

// GetManifestAdmitted is GetManifest with admit (if not nil) asked before
// the body is read, so that the caller can bound the bytes it holds in
// flight by what each answer says it will send.
func (r *Registry) GetManifestAdmitted(ctx context.Context, repo, reference string, accept []string, limit int64, admit Admit) (*Manifest, error) {
	if len(accept) == 0 {
		accept = DefaultAccept
	}
	resp, err := r.Do(ctx, http.MethodGet, repo, "manifests/"+reference, nil, http.Header{"Accept": accept})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	where := fmt.Sprintf("upstream %s: manifest %s:%s", r.cfg.Name, repo, reference)
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("%s: %w: %d bytes, at most %d", where, ErrTooLarge, resp.ContentLength, limit)
	}
	if admit != nil {
		size := resp.ContentLength
		if size < 0 {
			size = limit
		}
		if err := admit(size); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", where, ErrUnreachable, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", where, ErrTooLarge, limit)
	}
	if resp.ContentLength >= 0 && int64(len(b)) != resp.ContentLength {
		return nil, fmt.Errorf("%s: %w: %d bytes of %d", where, ErrUnreachable, len(b), resp.ContentLength)
	}
	d := notarize.DigestOf(b)
	if strings.Contains(reference, ":") && string(d) != reference {
		return nil, fmt.Errorf("%s: %w: the bytes hash to %s", where, ErrDigestMismatch, d)
	}
	parsed, err := notarize.ClassifyManifest(b, resp.Header.Get("Content-Type"))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %w", where, d, ErrBadManifest, err)
	}
	return &Manifest{Bytes: b, MediaType: parsed.MediaType, Digest: d, Parsed: parsed}, nil
}

// HeadManifest asks the upstream, with HEAD (which Docker Hub does not count
// against the pull quota), for the digest of repo's manifest at reference,
// as its Docker-Content-Digest header says. The digest is the upstream's
// word only, never checked here: callers may use it as a key to look up
// bytes they hashed themselves, never to vouch for bytes. It is "" when the
// answer names no sha256 digest. A non-2xx answer is an *Error.
func (r *Registry) HeadManifest(ctx context.Context, repo, reference string, accept []string) (notarize.Digest, error) {
	if len(accept) == 0 {
		accept = DefaultAccept
	}
	resp, err := r.Do(ctx, http.MethodHead, repo, "manifests/"+reference, nil, http.Header{"Accept": accept})
	if err != nil {
		return "", err
	}
	_ = resp.Body.Close()
	d, err := notarize.ParseDigest(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		return "", nil
	}
	return d, nil
}

// credentialGuard is the transport under go-containerregistry's: it removes
// the Authorization header from any request to a host that may not receive
// the upstream's credentials (a token realm or redirect elsewhere), refuses
// any request but GET and HEAD to such a host (go-containerregistry's OAuth2
// token request is a POST whose form carries the refresh token or password),
// and refuses to speak another scheme than the configured one to the upstream.
type credentialGuard struct {
	inner    http.RoundTripper
	hostname string // without the port
	scheme   string
	allowed  map[string]bool // canonical host:port
}

func (g *credentialGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	h := canonicalHost(req.URL.Host, req.URL.Scheme)
	if strings.EqualFold(req.URL.Hostname(), g.hostname) && req.URL.Scheme != g.scheme {
		return nil, fmt.Errorf("refusing %s to %s: the upstream is configured for %s", req.URL.Scheme, req.URL.Host, g.scheme)
	}
	if g.allowed[h] {
		return g.inner.RoundTrip(req)
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return nil, fmt.Errorf("refusing %s to %s: it is not the upstream's host nor one of its auth hosts, and the body may carry credentials", req.Method, req.URL.Host)
	}
	if req.Header.Get("Authorization") != "" {
		req = req.Clone(req.Context())
		req.Header.Del("Authorization")
	}
	return g.inner.RoundTrip(req)
}

// canonicalHost returns lower-case host:port, with the scheme's default port.
func canonicalHost(host, scheme string) string {
	host = strings.ToLower(host)
	if h, p, err := net.SplitHostPort(host); err == nil {
		return net.JoinHostPort(h, p)
	}
	port := "443"
	if scheme == "http" {
		port = "80"
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
