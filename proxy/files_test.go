package proxy_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy"
)

func TestLoadPolicy(t *testing.T) {
	dir := t.TempDir()
	sv := newSigner(t)
	pub, _ := newSigner(t).PublicKey()
	inline, _ := cryptoutils.MarshalPublicKeyToPEM(pub)
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeKey(t, filepath.Join(dir, "keys", "release.pub"), sv)
	good := write("good.yaml", "signers:\n  release: {keys: [keys/release.pub]}\n  inline:\n    keys:\n      - |\n"+
		indent(string(inline), "        ")+"rules:\n  - match: '**'\n    require: [release, inline]\n")
	ev, err := proxy.LoadPolicy(good)
	if err != nil {
		t.Fatal(err)
	}
	relPub, err := sv.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := notarize.KeyID(relPub)
	if ev.SignerName(id) != "release" {
		t.Fatalf("release key not bound: %q", ev.SignerName(id))
	}
	for name, doc := range map[string]string{
		"missing key file": "signers: {r: {keys: [nope.pub]}}\nrules: [{match: '**', require: [r]}]\n",
		"not a key":        "signers: {r: {keys: [good.yaml]}}\nrules: [{match: '**', require: [r]}]\n",
		"bad policy":       "rules: []\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := proxy.LoadPolicy(write("bad.yaml", doc)); err == nil {
				t.Fatal("loaded")
			}
		})
	}
	if _, err := proxy.LoadPolicy(write("bad2.yaml", "rules: []\n")); !errors.Is(err, notarize.ErrBadPolicy) {
		t.Fatalf("error %v is not ErrBadPolicy", err)
	}
}

func indent(s, pfx string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if l != "" {
			b.WriteString(pfx + l)
		}
	}
	return b.String()
}

func TestLoadConfiguration(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "proxy.yaml")
	doc := `addr: 0.0.0.0:5000
data: data
upstreams:
  - {name: docker.io, url: "https://registry-1.docker.io"}
  - {name: gitlab, url: "https://registry.gitlab.com", authHosts: [gitlab.com]}
defaultUpstream: docker.io
policy: policy.yaml
ledger: http://127.0.0.1:7070
ledgerKey: ledger.pub
maxStaleness: 90s
cacheMaxBytes: 0
auth: {htpasswd: {path: htpasswd}}
`
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	fc := proxy.DefaultConfiguration()
	if err := proxy.LoadConfiguration(p, &fc); err != nil {
		t.Fatal(err)
	}
	if fc.Data != filepath.Join(dir, "data") || fc.Policy != filepath.Join(dir, "policy.yaml") || fc.LedgerKey != filepath.Join(dir, "ledger.pub") ||
		fc.Auth.Htpasswd.Path != filepath.Join(dir, "htpasswd") ||
		time.Duration(fc.MaxStaleness) != 90*time.Second || len(fc.Upstreams) != 2 || fc.Upstreams[1].AuthHosts[0] != "gitlab.com" {
		t.Fatalf("%+v", fc)
	}
	// A key the file sets replaces the default, even to zero; the others stay.
	if fc.CacheMaxBytes != 0 || fc.LogLevel != proxy.DefaultLogLevel {
		t.Fatalf("cacheMaxBytes %d, logLevel %q", fc.CacheMaxBytes, fc.LogLevel)
	}
	for name, bad := range map[string]string{
		"unknown field":      "adress: typo\n",
		"unknown auth":       "auth: {ldap: {}}\n",
		"bad size":           "cacheMaxBytes: lots\n",
		"negative duration":  "maxStaleness: -1s\n",
		"unknown auth field": "auth: {htpasswd: {path: x, users: y}}\n",
	} {
		if err := os.WriteFile(p, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		c := proxy.DefaultConfiguration()
		if err := proxy.LoadConfiguration(p, &c); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

// TestConfigurationReachesTheProxy checks that every field of the
// configuration file reaches the running proxy: each leaf of the YAML type
// is set by one of the documents below, and each is found again in the
// Server's Config built by ProxyConfig or is one notarize-proxy reads from
// the Configuration itself (listener, ledger, TLS, logging; see
// cmd/notarize-proxy TestFlagsOverConfiguration). A new field fails this
// test until it is wired. (upstreams.authHosts was lost before: the file's
// upstreams were flattened to NAME=URL.)
func TestConfigurationReachesTheProxy(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	common := `addr: 127.0.0.2:6000
data: d
upstreams:
  - {name: lan, url: "http://10.0.0.5:5000", insecure: true, authHosts: [auth.lan:8443], privateNetwork: true}
  - {name: other, url: "http://10.0.0.6:5000"}
defaultUpstream: other
insecureUpstreams: [other]
policy: p.yaml
ledger: http://ledger:7070
ledgerKey: l.pub
ledgerCA: ca.pem
maxStaleness: 7m
witnessPolicy: w.policy
peers: ["https://peer:5000"]
cacheMaxBytes: 3GiB
fillMemoryBytes: 8MiB
tlsCert: c.pem
tlsKey: k.pem
logLevel: debug
anonymous: true
storage: {s3: {bucket: fleet, region: us-east-1}, redirect: {disable: false}}
`
	docs := []string{
		common + "auth: {htpasswd: {realm: r1, path: htpasswd}}\n",
		common + "auth: {token: {realm: 'https://auth/token', service: svc, issuer: iss, rootcertbundle: bundle.pem, jwks: keys.jwks, signingalgorithms: [ES256]}}\n",
	}
	// Read by notarize-proxy itself from the Configuration.
	readByMain := map[string]bool{"addr": true, "policy": true, "ledger": true, "ledgerKey": true, "ledgerCA": true, "maxStaleness": true, "witnessPolicy": true, "peers": true,
		"tlsCert": true, "tlsKey": true, "logLevel": true, "anonymous": true}
	// Found again in the Server's Config.
	inProxy := map[string]func(c proxy.Configuration, pc proxy.Config) bool{
		"data":           func(c proxy.Configuration, pc proxy.Config) bool { return pc.DataDir == filepath.Join(dir, "d") },
		"upstreams.name": func(c proxy.Configuration, pc proxy.Config) bool { return pc.Upstreams[0].Name == "lan" },
		"upstreams.url": func(c proxy.Configuration, pc proxy.Config) bool {
			return pc.Upstreams[0].URL == "http://10.0.0.5:5000"
		},
		"upstreams.insecure":       func(c proxy.Configuration, pc proxy.Config) bool { return pc.Upstreams[0].Insecure },
		"upstreams.privateNetwork": func(c proxy.Configuration, pc proxy.Config) bool { return pc.Upstreams[0].PrivateNetwork },
		"upstreams.authHosts": func(c proxy.Configuration, pc proxy.Config) bool {
			return slices.Equal(pc.Upstreams[0].AuthHosts, []string{"auth.lan:8443"})
		},
		"defaultUpstream":   func(c proxy.Configuration, pc proxy.Config) bool { return pc.DefaultUpstream == "other" },
		"insecureUpstreams": func(c proxy.Configuration, pc proxy.Config) bool { return pc.Upstreams[1].Insecure },
		"cacheMaxBytes":     func(c proxy.Configuration, pc proxy.Config) bool { return pc.BlobCacheMaxBytes == 3<<30 },
		"fillMemoryBytes":   func(c proxy.Configuration, pc proxy.Config) bool { return pc.BlobFillMemoryBytes == 8<<20 },
		"storage": func(c proxy.Configuration, pc proxy.Config) bool {
			return pc.Storage["s3"]["bucket"] == "fleet" && pc.Storage["redirect"]["disable"] == false
		},
		"auth.htpasswd.realm": func(c proxy.Configuration, pc proxy.Config) bool { return pc.Auth.Htpasswd.Realm == "r1" },
		"auth.htpasswd.path": func(c proxy.Configuration, pc proxy.Config) bool {
			return pc.Auth.Htpasswd.Path == filepath.Join(dir, "htpasswd")
		},
		"auth.token.realm":   func(c proxy.Configuration, pc proxy.Config) bool { return pc.Auth.Token.Realm == "https://auth/token" },
		"auth.token.service": func(c proxy.Configuration, pc proxy.Config) bool { return pc.Auth.Token.Service == "svc" },
		"auth.token.issuer":  func(c proxy.Configuration, pc proxy.Config) bool { return pc.Auth.Token.Issuer == "iss" },
		"auth.token.rootcertbundle": func(c proxy.Configuration, pc proxy.Config) bool {
			return pc.Auth.Token.RootCertBundle == filepath.Join(dir, "bundle.pem")
		},
		"auth.token.jwks": func(c proxy.Configuration, pc proxy.Config) bool {
			return pc.Auth.Token.JWKS == filepath.Join(dir, "keys.jwks")
		},
		"auth.token.signingalgorithms": func(c proxy.Configuration, pc proxy.Config) bool {
			return slices.Equal(pc.Auth.Token.SigningAlgorithms, []string{"ES256"})
		},
	}
	set := map[string]bool{}
	for i, doc := range docs {
		p := write("proxy.yaml", doc)
		c := proxy.Configuration{}
		if err := proxy.LoadConfiguration(p, &c); err != nil {
			t.Fatal(err)
		}
		collectSet(reflect.ValueOf(c), "", set)
		pc, err := c.ProxyConfig(nil, nil, nil, "ua")
		if err != nil {
			t.Fatal(err)
		}
		for path, ok := range inProxy {
			if strings.HasPrefix(path, "auth.token.") && c.Auth.Token == nil || strings.HasPrefix(path, "auth.htpasswd.") && c.Auth.Htpasswd == nil {
				continue
			}
			if !ok(c, pc) {
				t.Errorf("doc %d: %s does not reach the proxy's Config: %+v", i, path, pc)
			}
		}
		if pc.Upstreams[0].UserAgent != "ua" {
			t.Errorf("user agent not set: %+v", pc.Upstreams[0])
		}
	}
	for _, path := range yamlLeaves(reflect.TypeFor[proxy.Configuration](), "") {
		if !set[path] {
			t.Errorf("%s: no test document sets it", path)
		}
		if inProxy[path] == nil && !readByMain[path] {
			t.Errorf("%s: neither found in the proxy's Config nor read by notarize-proxy: wire it", path)
		}
	}
}

// yamlLeaves lists the YAML paths ("auth.token.realm") of t's leaf fields;
// a slice of structs contributes its element's fields.
func yamlLeaves(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.String {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return []string{prefix}
	}
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		out = append(out, yamlLeaves(f.Type, strings.TrimPrefix(prefix+"."+name, "."))...)
	}
	return out
}

// collectSet records the YAML paths of the non-zero leaves of v.
func collectSet(v reflect.Value, prefix string, set map[string]bool) {
	switch {
	case v.Kind() == reflect.Pointer:
		if !v.IsNil() {
			collectSet(v.Elem(), prefix, set)
		}
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct:
		for i := range v.Len() {
			collectSet(v.Index(i), prefix, set)
		}
	case v.Kind() == reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if f.IsExported() && name != "-" {
				collectSet(v.Field(i), strings.TrimPrefix(prefix+"."+name, "."), set)
			}
		}
	default:
		if !v.IsZero() {
			set[prefix] = true
		}
	}
}

// TestExampleConfigurationStarts: examples/proxy.yaml listens on all
// interfaces, so it must configure client authentication to pass the secure
// default, and examples/policy.yaml's access rules must say what they show.
func TestExampleConfigurationStarts(t *testing.T) {
	dir := filepath.Join("..", "examples")
	c := proxy.DefaultConfiguration()
	if err := proxy.LoadConfiguration(filepath.Join(dir, "proxy.yaml"), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("examples/proxy.yaml: %v", err)
	}
	if c.Auth.Htpasswd == nil || c.Auth.Htpasswd.Path != filepath.Join(dir, "htpasswd") {
		t.Fatalf("examples/proxy.yaml: auth %+v", c.Auth)
	}
	c.Auth = proxy.AuthConfig{}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--anonymous") {
		t.Fatalf("examples/proxy.yaml without auth: %v", err)
	}
	ev, err := proxy.LoadPolicy(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	p := ev.Policy()
	for _, tc := range []struct {
		user, target string
		allow        bool
	}{
		{"bob", "docker.io/library/nginx", true},
		{"alice", "ghcr.io/acme/app", true},
		{"bob", "ghcr.io/acme/app", false},
		{"alice", "quay.io/other/app", false},
	} {
		if d := p.MayPull(tc.user, tc.target); d.Allow != tc.allow {
			t.Errorf("examples/policy.yaml: %s may pull %s: %v", tc.user, tc.target, d.Allow)
		}
	}
}
