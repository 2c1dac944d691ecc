package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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
	o := options{upstreams: listFlag{"docker.io=https://registry-1.docker.io", "lan=http://10.0.0.5:5000"}, insecure: listFlag{"lan"}}
	ups, err := o.upstreamConfigs()
	if err != nil || len(ups) != 2 || !ups[1].Insecure || ups[0].Insecure {
		t.Fatalf("%+v %v", ups, err)
	}
	for _, bad := range []options{
		{upstreams: listFlag{"noequals"}},
		{upstreams: listFlag{"a=http://x"}, insecure: listFlag{"b"}},
	} {
		if _, err := bad.upstreamConfigs(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestConfigFileUnderFlags(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "proxy.yaml")
	if err := os.WriteFile(cfg, []byte("addr: 0.0.0.0:6000\npolicy: policy.yaml\nledger: http://ledger:7070\nupstreams:\n  - {name: lan, url: 'http://10.0.0.5:5000', insecure: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := options{config: cfg, addr: "127.0.0.1:7000"}
	if err := o.merge(map[string]bool{"addr": true}); err != nil {
		t.Fatal(err)
	}
	if o.addr != "127.0.0.1:7000" || o.policy != filepath.Join(dir, "policy.yaml") || o.ledger != "http://ledger:7070" || len(o.insecure) != 1 {
		t.Fatalf("%+v", o)
	}

	// cacheMaxBytes: taken from the file unless the flag was set; a bad value is an error.
	for _, tc := range []struct {
		line    string
		flagSet bool
		want    int64
		bad     bool
	}{
		{"cacheMaxBytes: 5GiB\n", false, 5 << 30, false},
		{"cacheMaxBytes: 5GiB\n", true, 1 << 20, false},
		{"cacheMaxBytes: '0'\n", false, 0, false},
		{"cacheMaxBytes: lots\n", false, 0, true},
	} {
		if err := os.WriteFile(cfg, []byte("policy: policy.yaml\nledger: http://ledger:7070\n"+tc.line), 0o600); err != nil {
			t.Fatal(err)
		}
		o := options{config: cfg, cacheMaxBytes: 1 << 20}
		err := o.merge(map[string]bool{"cache-max-bytes": tc.flagSet})
		if tc.bad != (err != nil) || !tc.bad && int64(o.cacheMaxBytes) != tc.want {
			t.Errorf("%q (flag set %v): cacheMaxBytes %d, err %v; want %d, error %v", tc.line, tc.flagSet, o.cacheMaxBytes, err, tc.want, tc.bad)
		}
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
			var b byteSize
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
