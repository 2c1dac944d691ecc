package proxy_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/proxy"
)

// TestExamples keeps examples/ loadable by the proxy.
func TestExamples(t *testing.T) {
	dir := filepath.Join("..", "examples")
	ev, err := proxy.LoadPolicy(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if i, r, ok := ev.Policy().Match("docker.io/library/nginx"); !ok || i != 0 || len(r.Require) != 2 {
		t.Fatalf("examples/policy.yaml: docker.io/library/nginx matches rule %d %+v", i, r)
	}
	fc := proxy.DefaultConfiguration()
	if err := proxy.LoadConfiguration(filepath.Join(dir, "proxy.yaml"), &fc); err != nil {
		t.Fatal(err)
	}
	if fc.DefaultUpstream != "docker.io" || len(fc.Upstreams) < 3 {
		t.Fatalf("examples/proxy.yaml: %+v", fc)
	}
	for _, u := range fc.Upstreams {
		uc := u.Upstream()
		if err := uc.Validate(); err != nil {
			t.Errorf("examples/proxy.yaml: %v", err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "daemon.json"))
	if err != nil {
		t.Fatal(err)
	}
	var daemon struct {
		Mirrors []string `json:"registry-mirrors"`
	}
	if err := json.Unmarshal(b, &daemon); err != nil || len(daemon.Mirrors) != 1 {
		t.Fatalf("examples/daemon.json: %v %+v", err, daemon)
	}
	hosts, _ := filepath.Glob(filepath.Join(dir, "containerd", "certs.d", "*", "hosts.toml"))
	if len(hosts) == 0 {
		t.Fatal("no hosts.toml examples")
	}
	for _, h := range hosts {
		b, err := os.ReadFile(h)
		if err != nil {
			t.Fatal(err)
		}
		// The proxy must be the server (no fallback around it) and a [host] (containerd 1.6).
		if !strings.Contains(string(b), `server = "`+daemon.Mirrors[0]+`"`) || !strings.Contains(string(b), `[host."`+daemon.Mirrors[0]+`"]`) {
			t.Errorf("%s does not make the proxy its server and only host", h)
		}
	}
}
