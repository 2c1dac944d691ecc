package proxy

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/notarize/docker-notarize/internal/boundedfile"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/upstream"
)

const (
	maxKeyFileSize    = 64 << 10
	maxConfigFileSize = 1 << 20
)

// LoadPolicy reads a policy file and the public keys it names, and returns
// the policy bound to them. A key reference is inline PEM or a path to a
// PEM file, relative to the policy file's directory.
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
	keys := map[string][]crypto.PublicKey{}
	for name, s := range p.Signers {
		for _, ref := range s.Keys {
			pemBytes := []byte(ref)
			if !strings.HasPrefix(strings.TrimSpace(ref), "-----BEGIN") {
				kp := ref
				if !filepath.IsAbs(kp) {
					kp = filepath.Join(dir, kp)
				}
				if pemBytes, err = boundedfile.Read(kp, maxKeyFileSize); err != nil {
					return nil, fmt.Errorf("load policy %s: signer %q: %w", path, name, err)
				}
			}
			pub, err := notarize.ParsePublicKey(pemBytes)
			if err != nil {
				return nil, fmt.Errorf("load policy %s: signer %q: key %s: %w", path, name, clip(ref, 80), err)
			}
			keys[name] = append(keys[name], pub)
		}
	}
	ev, err := p.Evaluator(keys)
	if err != nil {
		return nil, fmt.Errorf("load policy %s: %w", path, err)
	}
	return ev, nil
}

// FileConfig is the proxy's configuration file (YAML). Flags given on the
// command line override it. Relative paths are relative to the file.
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
//	tlsCert: tls/cert.pem            # serve HTTPS (with tlsKey)
//	tlsKey: tls/key.pem
type FileConfig struct {
	Addr              string           `yaml:"addr,omitempty"`
	Data              string           `yaml:"data,omitempty"`
	Upstreams         []UpstreamConfig `yaml:"upstreams,omitempty"`
	DefaultUpstream   string           `yaml:"defaultUpstream,omitempty"`
	InsecureUpstreams []string         `yaml:"insecureUpstreams,omitempty"`
	Policy            string           `yaml:"policy,omitempty"`
	Ledger            string           `yaml:"ledger,omitempty"`
	LedgerKey         string           `yaml:"ledgerKey,omitempty"`
	MaxStaleness      Duration         `yaml:"maxStaleness,omitempty"`
	// CacheMaxBytes bounds the blob cache, like --cache-max-bytes: "20GiB",
	// "500MB" or a number of bytes; "0" is unbounded.
	CacheMaxBytes string `yaml:"cacheMaxBytes,omitempty"`
	TLSCert       string `yaml:"tlsCert,omitempty"`
	TLSKey        string `yaml:"tlsKey,omitempty"`
}

// UpstreamConfig is one upstream in a FileConfig.
type UpstreamConfig struct {
	Name      string   `yaml:"name"`
	URL       string   `yaml:"url"`
	Insecure  bool     `yaml:"insecure,omitempty"`
	AuthHosts []string `yaml:"authHosts,omitempty"`
}

// Upstream returns the upstream.Config it describes.
func (u UpstreamConfig) Upstream() upstream.Config {
	return upstream.Config{Name: u.Name, URL: u.URL, Insecure: u.Insecure, AuthHosts: u.AuthHosts}
}

// Duration is a time.Duration written as "5m", "30s" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
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

// LoadFileConfig reads a configuration file, refusing unknown fields, and
// makes its relative paths (data, policy, a ledgerKey file) relative to it.
func LoadFileConfig(path string) (*FileConfig, error) {
	b, err := boundedfile.Read(path, maxConfigFileSize)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var fc FileConfig
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("load config %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	fc.Data, fc.Policy, fc.TLSCert, fc.TLSKey = rel(fc.Data), rel(fc.Policy), rel(fc.TLSCert), rel(fc.TLSKey)
	if fc.LedgerKey != "" && !strings.Contains(fc.LedgerKey, "+") {
		fc.LedgerKey = rel(fc.LedgerKey)
	}
	return &fc, nil
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
