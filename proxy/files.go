package proxy

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"go.yaml.in/yaml/v3"

	"github.com/notarize/docker-notarize/internal/boundedfile"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/replica"
	"github.com/notarize/docker-notarize/proxy/upstream"
)

const (
	maxKeyFileSize    = 64 << 10
	maxConfigFileSize = 1 << 20
)

// LoadPolicy reads a policy file and the public keys it names (signers'
// keys and revokers), and returns the policy bound to them. A key
// reference is inline PEM or a path to a PEM file, relative to the policy
// file's directory.
func LoadPolicy(path string) (*notarize.Evaluator, error) {
	b, err := boundedfile.Read(path, notarize.MaxPolicySize)
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	p, err := notarize.ParsePolicy(b)
	if err != nil {
		return nil, fmt.Errorf("load policy %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	keys, revokers := map[string][]crypto.PublicKey{}, map[string][]crypto.PublicKey{}
	for name, s := range p.Signers {
		for _, ref := range s.Keys {
			pub, err := loadPolicyKey(dir, ref)
			if err != nil {
				return nil, fmt.Errorf("load policy %s: signer %q: %w", path, name, err)
			}
			keys[name] = append(keys[name], pub)
		}
		for _, ref := range s.Revokers {
			pub, err := loadPolicyKey(dir, ref)
			if err != nil {
				return nil, fmt.Errorf("load policy %s: signer %q: revoker: %w", path, name, err)
			}
			revokers[name] = append(revokers[name], pub)
		}
	}
	ev, err := p.EvaluatorWithRevokers(keys, revokers)
	if err != nil {
		return nil, fmt.Errorf("load policy %s: %w", path, err)
	}
	return ev, nil
}

// loadPolicyKey reads the public key ref names: inline PEM, or a PEM file
// (relative paths are relative to dir).
func loadPolicyKey(dir, ref string) (crypto.PublicKey, error) {
	pemBytes := []byte(ref)
	if !strings.HasPrefix(strings.TrimSpace(ref), "-----BEGIN") {
		kp := ref
		if !filepath.IsAbs(kp) {
			kp = filepath.Join(dir, kp)
		}
		var err error
		if pemBytes, err = boundedfile.Read(kp, maxKeyFileSize); err != nil {
			return nil, err
		}
	}
	pub, err := notarize.ParsePublicKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", clip(ref, 80), err)
	}
	return pub, nil
}

// Configuration is the proxy's configuration: the one typed source that
// the configuration file (YAML, --config) decodes into and that
// notarize-proxy's flags are laid over, as distribution's configuration
// package does. ProxyConfig builds the Server's runtime Config from it;
// notarize-proxy reads the rest (listener, ledger, TLS) from it directly.
// Relative paths in a file are relative to the file.
//
//	addr: 127.0.0.1:5000
//	data: /var/lib/notarize-proxy
//	upstreams:
//	  - {name: docker.io, url: "https://registry-1.docker.io"}
//	  - {name: ghcr.io, url: "https://ghcr.io"}
//	  - {name: gitlab, url: "https://registry.gitlab.com", authHosts: [gitlab.com]}
//	defaultUpstream: docker.io
//	policy: policy.yaml
//	ledger: https://ledger.example.com
//	ledgerKey: ledger.pub            # verifier key or a file holding it
//	maxStaleness: 5m
//	witnessPolicy: witnesses.policy   # checkpoints count only when a quorum of witnesses cosigned them
//	peers: ["https://proxy-b.example:5000"] # compare ledger views with other proxies
//	cacheMaxBytes: 20GiB
//	fillMemoryBytes: 64MiB           # memory of the cold blob downloads at once
//	tlsCert: tls/cert.pem            # serve HTTPS (with tlsKey)
//	tlsKey: tls/key.pem
//	auth:                            # client authentication (distribution's shape)
//	  htpasswd: {realm: notarize-proxy, path: htpasswd}
type Configuration struct {
	// Addr is the listen address. A non-loopback address needs Auth or
	// Anonymous (see Validate).
	Addr string `yaml:"addr,omitempty"`
	// Data is the data directory: blob cache, ledger replica, ledger client state.
	Data string `yaml:"data,omitempty"`
	// Upstreams are the registries the proxy may contact.
	Upstreams []UpstreamConfig `yaml:"upstreams,omitempty"`
	// DefaultUpstream takes requests without ?ns= or a /v2/NAME/ prefix.
	DefaultUpstream string `yaml:"defaultUpstream,omitempty"`
	// InsecureUpstreams names upstreams that may be reached over plain
	// http, like UpstreamConfig.Insecure.
	InsecureUpstreams []string `yaml:"insecureUpstreams,omitempty"`
	// Policy is the trust policy file; required.
	Policy string `yaml:"policy,omitempty"`
	// Ledger is the ledger's URL; required.
	Ledger string `yaml:"ledger,omitempty"`
	// LedgerKey is the ledger's verifier key, inline or a file holding it.
	LedgerKey string `yaml:"ledgerKey,omitempty"`
	// LedgerCA is a PEM file of CA certificates an https ledger's
	// certificate may chain to, besides the system's roots (a private CA).
	LedgerCA string `yaml:"ledgerCA,omitempty"`
	// MaxStaleness bounds how long the proxy serves from its last verified
	// ledger state when the ledger cannot be followed.
	MaxStaleness Duration `yaml:"maxStaleness,omitempty"`
	// WitnessPolicy is a witness policy file (Tessera's witness policy
	// format): every ledger checkpoint must be cosigned by a quorum of its
	// witnesses, and MaxStaleness then also counts from the newest quorum's
	// cosignatures, so a front that freezes the ledger's checkpoint cannot
	// hold back a revocation past it. See ledgerclient.WitnessPolicy.
	WitnessPolicy string `yaml:"witnessPolicy,omitempty"`
	// Peers are other notarize-proxies (base URLs; user:password@ for basic
	// authentication) whose latest verified checkpoint this proxy compares
	// with its own (package proxy/peer): a ledger showing them another
	// history makes it fail closed.
	Peers []string `yaml:"peers,omitempty"`
	// CacheMaxBytes bounds the blob cache: "20GiB", "500MB" or a number of
	// bytes; 0 is unbounded.
	CacheMaxBytes ByteSize `yaml:"cacheMaxBytes,omitempty"`
	// FillMemoryBytes bounds the memory that all cold blob downloads and
	// their clients hold at once in 1 MiB chunks ("64MiB"; 0 is
	// blobcache.DefaultFillMemoryBytes); past it downloads stream through
	// their temporary files with small buffers (Config.BlobFillMemoryBytes).
	FillMemoryBytes ByteSize `yaml:"fillMemoryBytes,omitempty"`
	// Storage is where the blob cache lives, in distribution's shape:
	// filesystem (the default: DATA/blobs, bounded by CacheMaxBytes), or
	// s3, gcs or azure shared by a fleet of proxies, the local cache then
	// being this instance's hot tier. See blobcache.ParseStorage.
	Storage configuration.Storage `yaml:"storage,omitempty"`
	// TLSCert and TLSKey make the proxy serve HTTPS.
	TLSCert string `yaml:"tlsCert,omitempty"`
	TLSKey  string `yaml:"tlsKey,omitempty"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"logLevel,omitempty"`
	// Auth authenticates clients; zero serves anonymously.
	Auth AuthConfig `yaml:"auth,omitempty"`
	// Anonymous says, on purpose, that a proxy on a non-loopback address
	// serves clients without authentication.
	Anonymous bool `yaml:"anonymous,omitempty"`
}

// UpstreamConfig is one upstream in a Configuration.
type UpstreamConfig struct {
	Name      string   `yaml:"name"`
	URL       string   `yaml:"url"`
	Insecure  bool     `yaml:"insecure,omitempty"`
	AuthHosts []string `yaml:"authHosts,omitempty"`
	// PrivateNetwork lets the upstream's redirects reach private addresses
	// (upstream.Config.PrivateNetwork).
	PrivateNetwork bool `yaml:"privateNetwork,omitempty"`
}

// Upstream returns the upstream.Config it describes.
func (u UpstreamConfig) Upstream() upstream.Config {
	return upstream.Config{Name: u.Name, URL: u.URL, Insecure: u.Insecure, AuthHosts: append([]string(nil), u.AuthHosts...), PrivateNetwork: u.PrivateNetwork}
}

// Defaults of a Configuration (DefaultConfiguration).
const (
	DefaultAddr     = "127.0.0.1:5000"
	DefaultData     = ".notarize/proxy"
	DefaultLogLevel = "info"
)

// DefaultConfiguration returns the configuration a file and flags are laid
// over: loopback address, ./.notarize/proxy, a 20 GiB blob cache, the
// replica's default staleness bound, log level info.
func DefaultConfiguration() Configuration {
	return Configuration{
		Addr: DefaultAddr, Data: DefaultData, LogLevel: DefaultLogLevel,
		CacheMaxBytes: DefaultBlobCacheMaxBytes, MaxStaleness: Duration(replica.DefaultMaxStaleness),
	}
}

// LoadConfiguration lays the configuration file at path over c: the keys
// the file sets replace c's values, the others stay. It refuses unknown
// fields and makes the file's relative paths (data, policy, a ledgerKey
// file, TLS files, auth files) relative to the file.
func LoadConfiguration(path string, c *Configuration) error {
	b, err := boundedfile.Read(path, maxConfigFileSize)
	if err != nil {
		return fmt.Errorf("load config: %w", err)
	}
	// Strict decode into a zero value: refuses unknown fields, and tells
	// which paths the file itself sets.
	var file Configuration
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("load config %s: %w", path, err)
	}
	if err := yaml.Unmarshal(b, c); err != nil {
		return fmt.Errorf("load config %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	rel := func(dst *string, v string) {
		if v != "" && !filepath.IsAbs(v) {
			*dst = filepath.Join(dir, v)
		}
	}
	rel(&c.Data, file.Data)
	rel(&c.Policy, file.Policy)
	rel(&c.WitnessPolicy, file.WitnessPolicy)
	rel(&c.LedgerCA, file.LedgerCA)
	rel(&c.TLSCert, file.TLSCert)
	rel(&c.TLSKey, file.TLSKey)
	if !strings.Contains(file.LedgerKey, "+") {
		rel(&c.LedgerKey, file.LedgerKey)
	}
	if h := file.Auth.Htpasswd; h != nil {
		rel(&c.Auth.Htpasswd.Path, h.Path)
	}
	if tk := file.Auth.Token; tk != nil {
		rel(&c.Auth.Token.RootCertBundle, tk.RootCertBundle)
		rel(&c.Auth.Token.JWKS, tk.JWKS)
	}
	return nil
}

// Validate checks what notarize-proxy needs before it starts: a policy, a
// ledger, TLS certificate and key together, a valid auth section, and the
// secure default — a proxy listening on anything but a loopback address
// must authenticate its clients (Auth) unless Anonymous says otherwise on
// purpose, since it serves what only its upstream credentials may read.
func (c *Configuration) Validate() error {
	var errs []error
	if c.Policy == "" {
		errs = append(errs, errors.New("--policy is required (or policy: in the config file; see examples/policy.yaml)"))
	}
	if c.Ledger == "" {
		errs = append(errs, errors.New("--ledger is required (or ledger: in the config file)"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	switch {
	case c.Auth.Enabled() && c.Anonymous:
		errs = append(errs, errors.New("--anonymous and --auth contradict each other: pick one"))
	case !c.Auth.Enabled() && !c.Anonymous && !IsLoopbackAddr(c.Addr):
		errs = append(errs, fmt.Errorf("refusing to listen on %q without client authentication: anyone who can reach it could read what the proxy's upstream credentials can; "+
			"give --auth htpasswd:FILE (or auth: in the config file), listen on a loopback address, or pass --anonymous on purpose", c.Addr))
	}
	return errors.Join(errs...)
}

// IsLoopbackAddr reports whether a listen address ("host:port") binds a
// loopback interface only: localhost or a loopback IP. An empty host (all
// interfaces) is not loopback.
func IsLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	return upstream.IsLoopback(host)
}

// ProxyConfig builds the Server's runtime configuration from c and the
// parts built at run time: the loaded policy, the trust source (the ledger
// replica), the logger and the User-Agent sent upstream. It is the one
// place a Configuration becomes a Config.
func (c *Configuration) ProxyConfig(policy *notarize.Evaluator, trust TrustSource, log *slog.Logger, userAgent string) (Config, error) {
	insecure := map[string]bool{}
	for _, n := range c.InsecureUpstreams {
		insecure[n] = true
	}
	ups := make([]upstream.Config, 0, len(c.Upstreams))
	for _, u := range c.Upstreams {
		uc := u.Upstream()
		uc.Insecure = uc.Insecure || insecure[u.Name]
		uc.UserAgent = userAgent
		ups = append(ups, uc)
		delete(insecure, u.Name)
	}
	for _, n := range sortedNames(insecure) {
		return Config{}, fmt.Errorf("insecure upstream %q names no configured upstream", n)
	}
	return Config{
		DataDir: c.Data, Upstreams: ups, DefaultUpstream: c.DefaultUpstream,
		Policy: policy, Trust: trust, BlobCacheMaxBytes: int64(c.CacheMaxBytes), BlobFillMemoryBytes: int64(c.FillMemoryBytes),
		Storage: c.Storage, Auth: c.Auth, Logger: log,
	}, nil
}

func sortedNames(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Duration is a time.Duration written as "5m", "30s" in YAML and flags.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	return d.Set(s)
}

// Set parses a Go duration string (flag.Value); negative is refused.
func (d *Duration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v < 0 {
		return errors.New("negative duration")
	}
	*d = Duration(v)
	return nil
}

// String formats the duration (flag.Value).
func (d *Duration) String() string { return time.Duration(*d).String() }

// ByteSize is a size in bytes written as a plain number or with a unit
// (KB, MB, GB, TB powers of 1000; KiB, MiB, GiB, TiB powers of 1024), in
// YAML and flags.
type ByteSize int64

var byteUnits = []struct {
	suffix string
	n      int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

// String formats the size with the largest binary unit that divides it
// (flag.Value).
func (b *ByteSize) String() string {
	for _, u := range byteUnits[:4] {
		if v := int64(*b); v != 0 && v%u.n == 0 && (u.n == 1<<40 || v%(u.n<<10) != 0) {
			return strconv.FormatInt(v/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(*b), 10)
}

// Set parses a size (flag.Value).
func (b *ByteSize) Set(s string) error {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range byteUnits {
		if len(num) > len(u.suffix) && strings.EqualFold(num[len(num)-len(u.suffix):], u.suffix) {
			num, mult = strings.TrimSpace(num[:len(num)-len(u.suffix)]), u.n
			break
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 0 || v > math.MaxInt64/mult {
		return fmt.Errorf("%q: want a size in bytes such as 20GiB, 500MB or 1048576", s)
	}
	*b = ByteSize(v * mult)
	return nil
}

// UnmarshalYAML parses a size as Set does.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	return b.Set(s)
}

// ReadLedgerKey returns a ledger verifier key given inline ("name+hash+key")
// or as a file holding it (such as the ledger's DIR/ledger.pub).
func ReadLedgerKey(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	if _, err := os.Stat(s); err == nil {
		b, err := boundedfile.Read(s, maxKeyFileSize)
		if err != nil {
			return "", fmt.Errorf("ledger key: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if strings.Count(s, "+") >= 2 {
		return strings.TrimSpace(s), nil
	}
	return "", fmt.Errorf("ledger key %q: neither a verifier key nor a readable file", clip(s, 80))
}
