package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/proxy"
)

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"version", []string{"--version"}, 0, "notarize-proxy"},
		{"no policy", []string{"--ledger", "http://127.0.0.1:1"}, 2, "--policy is required"},
		{"no ledger", []string{"--policy", "p.yaml"}, 2, "--ledger is required"},
		{"bad flag", []string{"--nope"}, 2, "flag provided but not defined"},
		{"bad log level", []string{"--policy", "p", "--ledger", "http://x", "--log-level", "loud"}, 2, "--log-level"},
		{"tls cert without key", []string{"--policy", "p", "--ledger", "http://x", "--tls-cert", "c.pem"}, 2, "go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(t.Context(), tc.args, &out, &errb); code != tc.code || !strings.Contains(out.String()+errb.String(), tc.want) {
				t.Fatalf("run(%q) = %d, %q %q", tc.args, code, out.String(), errb.String())
			}
		})
	}
}

func TestUpstreamFlags(t *testing.T) {
	cfg, _, err := configure([]string{"--policy", "p", "--ledger", "http://x",
		"--upstream", "docker.io=https://registry-1.docker.io", "--upstream", "lan=http://10.0.0.5:5000", "--insecure-upstream", "lan"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := cfg.ProxyConfig(nil, nil, nil, "ua")
	if err != nil || len(pc.Upstreams) != 2 || !pc.Upstreams[1].Insecure || pc.Upstreams[0].Insecure {
		t.Fatalf("%+v %v", pc.Upstreams, err)
	}
	if _, _, err := configure([]string{"--upstream", "noequals"}, io.Discard); err == nil || !strings.Contains(err.Error(), "NAME=URL") {
		t.Errorf("--upstream noequals: %v", err)
	}
	cfg, _, err = configure([]string{"--policy", "p", "--ledger", "http://x", "--upstream", "a=http://x", "--insecure-upstream", "b"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.ProxyConfig(nil, nil, nil, "ua"); err == nil {
		t.Error("--insecure-upstream naming no upstream accepted")
	}
}

func writeFile(t *testing.T, path, s string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigFileUnderFlags(t *testing.T) {
	dir := t.TempDir()
	cfgPath := writeFile(t, filepath.Join(dir, "proxy.yaml"), "addr: 127.0.0.2:6000\npolicy: policy.yaml\nledger: http://ledger:7070\nupstreams:\n  - {name: lan, url: 'http://10.0.0.5:5000', insecure: true, authHosts: [auth.lan]}\n")
	cfg, _, err := configure([]string{"--config", cfgPath, "--addr", "127.0.0.1:7000"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:7000" || cfg.Policy != filepath.Join(dir, "policy.yaml") || cfg.Ledger != "http://ledger:7070" ||
		len(cfg.Upstreams) != 1 || !cfg.Upstreams[0].Insecure || cfg.Upstreams[0].AuthHosts[0] != "auth.lan" {
		t.Fatalf("%+v", cfg)
	}
	// --upstream replaces the file's upstreams.
	cfg, _, err = configure([]string{"--config", cfgPath, "--upstream", "hub=https://registry-1.docker.io"}, io.Discard)
	if err != nil || len(cfg.Upstreams) != 1 || cfg.Upstreams[0].Name != "hub" {
		t.Fatalf("%+v %v", cfg.Upstreams, err)
	}

	// cacheMaxBytes: taken from the file unless the flag was set; a bad value is an error.
	for _, tc := range []struct {
		line string
		flag []string
		want int64
		bad  bool
	}{
		{"cacheMaxBytes: 5GiB\n", nil, 5 << 30, false},
		{"cacheMaxBytes: 5GiB\n", []string{"--cache-max-bytes", "1MiB"}, 1 << 20, false},
		{"cacheMaxBytes: '0'\n", nil, 0, false},
		{"cacheMaxBytes: 0\n", nil, 0, false},
		{"", nil, int64(proxy.DefaultBlobCacheMaxBytes), false},
		{"cacheMaxBytes: lots\n", nil, 0, true},
	} {
		writeFile(t, cfgPath, "policy: policy.yaml\nledger: http://ledger:7070\n"+tc.line)
		cfg, _, err := configure(append([]string{"--config", cfgPath}, tc.flag...), io.Discard)
		if tc.bad != (err != nil) || !tc.bad && int64(cfg.CacheMaxBytes) != tc.want {
			t.Errorf("%q (flags %q): cacheMaxBytes %d, err %v; want %d, error %v", tc.line, tc.flag, cfg.CacheMaxBytes, err, tc.want, tc.bad)
		}
	}
}

// TestFlagsOverConfiguration: every flag lays its value over the field of
// the configuration file it names.
func TestFlagsOverConfiguration(t *testing.T) {
	dir := t.TempDir()
	cfgPath := writeFile(t, filepath.Join(dir, "proxy.yaml"), `addr: 127.0.0.2:6000
data: d
upstreams: [{name: lan, url: "http://10.0.0.5:5000"}]
defaultUpstream: lan
insecureUpstreams: [lan]
policy: p.yaml
ledger: http://ledger:7070
ledgerKey: l.pub
maxStaleness: 7m
cacheMaxBytes: 3GiB
tlsCert: c.pem
tlsKey: k.pem
logLevel: debug
auth: {htpasswd: {path: h}}
`)
	for _, tc := range []struct {
		flags []string
		check func(c proxy.Configuration) bool
	}{
		{[]string{"--addr", "127.0.0.3:1"}, func(c proxy.Configuration) bool { return c.Addr == "127.0.0.3:1" }},
		{[]string{"--data", "/x"}, func(c proxy.Configuration) bool { return c.Data == "/x" }},
		{[]string{"--upstream", "u=http://127.0.0.1:1", "--default-upstream", "u"}, func(c proxy.Configuration) bool {
			return len(c.Upstreams) == 1 && c.Upstreams[0].Name == "u" && c.DefaultUpstream == "u"
		}},
		{[]string{"--insecure-upstream", "other"}, func(c proxy.Configuration) bool { return slices.Equal(c.InsecureUpstreams, []string{"other"}) }},
		{[]string{"--policy", "/p"}, func(c proxy.Configuration) bool { return c.Policy == "/p" }},
		{[]string{"--ledger", "http://l2"}, func(c proxy.Configuration) bool { return c.Ledger == "http://l2" }},
		{[]string{"--ledger-key", "/k"}, func(c proxy.Configuration) bool { return c.LedgerKey == "/k" }},
		{[]string{"--max-staleness", "1m"}, func(c proxy.Configuration) bool { return time.Duration(c.MaxStaleness) == time.Minute }},
		{[]string{"--witness-policy", "/w"}, func(c proxy.Configuration) bool { return c.WitnessPolicy == "/w" }},
		{[]string{"--peer", "http://p1", "--peer", "http://p2"}, func(c proxy.Configuration) bool { return slices.Equal(c.Peers, []string{"http://p1", "http://p2"}) }},
		{[]string{"--cache-max-bytes", "1KiB"}, func(c proxy.Configuration) bool { return c.CacheMaxBytes == 1024 }},
		{[]string{"--fill-memory-bytes", "16MiB"}, func(c proxy.Configuration) bool { return c.FillMemoryBytes == 16<<20 }},
		{[]string{"--tls-cert", "/c", "--tls-key", "/k"}, func(c proxy.Configuration) bool { return c.TLSCert == "/c" && c.TLSKey == "/k" }},
		{[]string{"--log-level", "warn"}, func(c proxy.Configuration) bool { return c.LogLevel == "warn" }},
		{[]string{"--auth", "htpasswd:/h2"}, func(c proxy.Configuration) bool { return c.Auth.Htpasswd.Path == "/h2" && c.Auth.Token == nil }},
		{[]string{"--auth", "token:realm=https://a/t,service=s,issuer=i,rootcertbundle=/b"}, func(c proxy.Configuration) bool {
			return c.Auth.Htpasswd == nil && reflect.DeepEqual(*c.Auth.Token, proxy.TokenAuth{Realm: "https://a/t", Service: "s", Issuer: "i", RootCertBundle: "/b"})
		}},
	} {
		cfg, _, err := configure(append([]string{"--config", cfgPath}, tc.flags...), io.Discard)
		if err != nil || !tc.check(cfg) {
			t.Errorf("%q: %+v, %v", tc.flags, cfg, err)
		}
	}
	// Without flags, the file's values stand.
	cfg, _, err := configure([]string{"--config", cfgPath}, io.Discard)
	if err != nil || cfg.Addr != "127.0.0.2:6000" || cfg.LogLevel != "debug" || cfg.Auth.Htpasswd.Path != filepath.Join(dir, "h") {
		t.Fatalf("%+v %v", cfg, err)
	}
}

// TestSecureDefault: a proxy reachable from the network must authenticate
// its clients unless --anonymous says otherwise on purpose.
func TestSecureDefault(t *testing.T) {
	base := []string{"--policy", "p", "--ledger", "http://x"}
	for _, tc := range []struct {
		args []string
		want string // "" accepted
	}{
		{[]string{"--addr", "127.0.0.1:5000"}, ""},
		{[]string{"--addr", "localhost:5000"}, ""},
		{[]string{"--addr", "[::1]:5000"}, ""},
		{[]string{"--addr", "0.0.0.0:5000"}, "without client authentication"},
		{[]string{"--addr", ":5000"}, "without client authentication"},
		{[]string{"--addr", "[::]:5000"}, "without client authentication"},
		{[]string{"--addr", "10.0.0.1:5000"}, "without client authentication"},
		{[]string{"--addr", "myhost:5000"}, "without client authentication"},
		{[]string{"--addr", "0.0.0.0:5000", "--anonymous"}, ""},
		{[]string{"--addr", "0.0.0.0:5000", "--auth", "htpasswd:/etc/htpasswd"}, ""},
		{[]string{"--addr", "0.0.0.0:5000", "--auth", "htpasswd:/etc/htpasswd", "--anonymous"}, "contradict"},
		{[]string{"--auth", "htpasswd:"}, "htpasswd:FILE"},
		{[]string{"--auth", "ldap:x"}, "want htpasswd:FILE or token"},
		{[]string{"--auth", "token:realm=https://a"}, "service and issuer are required"},
	} {
		_, _, err := configure(append(append([]string(nil), base...), tc.args...), io.Discard)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
		}
	}
	// The whole command refuses to start, with exit code 2 and the reason.
	var errb bytes.Buffer
	if code := run(t.Context(), append(base, "--addr", "0.0.0.0:0"), io.Discard, &errb); code != 2 || !strings.Contains(errb.String(), "--anonymous") {
		t.Fatalf("run on 0.0.0.0 without auth: %d %q", code, errb.String())
	}
}

// TestE2EScript runs scripts/e2e-proxy.sh: real crane, skopeo, dockerd and
// containerd pulling through the proxy. It installs Debian packages and
// starts daemons as root, so it only runs with NOTARIZE_E2E=1.
func TestE2EScript(t *testing.T) {
	if os.Getenv("NOTARIZE_E2E") == "" {
		t.Skip("set NOTARIZE_E2E=1 to run scripts/e2e-proxy.sh (installs skopeo, docker.io, containerd; runs dockerd and containerd as root)")
	}
	cmd := exec.CommandContext(t.Context(), "bash", filepath.Join("..", "..", "scripts", "e2e-proxy.sh"))
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) } // let it clean up
	cmd.WaitDelay = 30 * time.Second
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("e2e script: %v", err)
	}
	t.Logf("e2e script took %v", time.Since(start).Round(100*time.Millisecond))
}

func TestCacheMaxBytesFlag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		str  string
		bad  bool
	}{
		{in: "0", want: 0, str: "0"},
		{in: "1048576", want: 1 << 20, str: "1MiB"},
		{in: "20GiB", want: 20 << 30, str: "20GiB"},
		{in: "1536 MiB", want: 1536 << 20, str: "1536MiB"},
		{in: "500mb", want: 500e6, str: "500000000"},
		{in: "2TB", want: 2e12, str: "1953125000KiB"},
		{in: "100B", want: 100, str: "100"},
		{in: "-1", bad: true},
		{in: "1.5GiB", bad: true},
		{in: "GiB", bad: true},
		{in: "10PB", bad: true},
		{in: "9000000TiB", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			var b proxy.ByteSize
			err := b.Set(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("Set(%q) = %d, want an error", tc.in, b)
				}
				return
			}
			if err != nil || int64(b) != tc.want || b.String() != tc.str {
				t.Fatalf("Set(%q) = %d (%s), %v; want %d (%s)", tc.in, b, b.String(), err, tc.want, tc.str)
			}
		})
	}
	var errb bytes.Buffer
	if code := run(t.Context(), []string{"--cache-max-bytes", "lots"}, io.Discard, &errb); code != 2 || !strings.Contains(errb.String(), "cache-max-bytes") {
		t.Fatalf("bad --cache-max-bytes: %d, %q", code, errb.String())
	}
	errb.Reset()
	run(t.Context(), []string{"--help"}, io.Discard, &errb)
	if !strings.Contains(errb.String(), "(default 20GiB)") {
		t.Fatalf("--help does not show the default bound:\n%s", errb.String())
	}
}
