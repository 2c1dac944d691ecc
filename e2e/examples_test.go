package e2e

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/notarize/docker-notarize/ledger/ledgertest"
)

// The examples/ directory, exercised file by file. Each test works on a
// copy: examples/ is under version control and is never written to.

// examplesDir is the repository's examples/ directory.
func examplesDir(t *testing.T) string {
	t.Helper()
	return filepath.Join(repoRoot(t), "examples")
}

// copyExamples copies examples/ into a temporary directory, replacing the
// proxy's example host with addr when addr is set.
func copyExamples(t *testing.T, addr string) string {
	t.Helper()
	src, dst := examplesDir(t), filepath.Join(t.TempDir(), "examples")
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if addr != "" {
			b = []byte(strings.ReplaceAll(string(b), "notarize-proxy.internal:5000", addr))
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// buildBinary returns ./cmd/NAME built: TestMain's build when NAME is
// among builtCommands, else one built now into a temporary directory.
func buildBinary(t *testing.T, name string) string {
	t.Helper()
	if slices.Contains(builtCommands, name) {
		return filepath.Join(binDir, name)
	}
	out := filepath.Join(t.TempDir(), name)
	cmd := buildCmd(name, out)
	cmd.Dir = repoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/%s: %v\n%s", name, err, b)
	}
	return out
}

// startProcess starts bin with args, stops it (SIGTERM) when the test ends
// and returns its output so far on demand.
func startProcess(t *testing.T, bin string, args ...string) *lockedBuffer {
	t.Helper()
	var out lockedBuffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), tail([]byte(out.String()), 3000))
		}
	})
	return &out
}

// waitHTTP waits until url answers with status want.
func waitHTTP(t *testing.T, url string, want int, out *lockedBuffer) {
	t.Helper()
	waitFor(t, url, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == want
	}, 30*time.Second, out)
}

// TestExamplesProxyConfigStarts: notarize-proxy starts on a copy of
// examples/proxy.yaml (its policy.yaml, keys/ and the htpasswd client
// authentication it names), only the address, data directory and ledger
// overridden by flags as compose.yaml's volumes would place them; the
// file's authentication is in force.
func TestExamplesProxyConfigStarts(t *testing.T) {
	dir := copyExamples(t, "")
	hash, err := bcrypt.GenerateFromPassword([]byte("alice-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	// compose.yaml mounts ./htpasswd, which its comment tells to create.
	if err := os.WriteFile(filepath.Join(dir, "htpasswd"), fmt.Appendf(nil, "alice:%s\n", hash), 0o600); err != nil {
		t.Fatal(err)
	}
	led := ledgertest.Start(t)
	addr := freeAddr(t)
	proxyBin := buildBinary(t, "notarize-proxy")
	out := startProcess(t, proxyBin, "--config", filepath.Join(dir, "proxy.yaml"), "--addr", addr,
		"--data", t.TempDir(), "--ledger", led.URL, "--ledger-key", led.VerifierKey)
	waitHTTP(t, "http://"+addr+"/healthz", http.StatusOK, out)

	resp, err := http.Get("http://" + addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("Www-Authenticate"), `realm="notarize-proxy"`) {
		t.Fatalf("GET /v2/ without credentials: %d %q, want 401 with the realm of examples/proxy.yaml", resp.StatusCode, resp.Header.Get("Www-Authenticate"))
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v2/", nil)
	req.SetBasicAuth("alice", "alice-pw")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/ as alice: %d", resp.StatusCode)
	}
	// The upstreams of the file, all of them.
	for _, up := range []string{"docker.io=https://registry-1.docker.io", "ghcr.io=https://ghcr.io", "quay.io=https://quay.io"} {
		if !strings.Contains(out.String(), up) {
			t.Errorf("the proxy's start-up log lacks upstream %s", up)
		}
	}
}

// composeFile is what the test reads of examples/compose.yaml.
type composeFile struct {
	Services map[string]struct {
		Build *struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
		} `yaml:"build"`
		Image   string   `yaml:"image"`
		Command []string `yaml:"command"`
		Volumes []string `yaml:"volumes"`
		Ports   []string `yaml:"ports"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

// TestExamplesCompose: compose.yaml parses; the files it builds from and
// mounts exist (htpasswd is made by the user, as its comment says); its
// services run binaries the Dockerfile builds; the ledger's command starts
// as written (address and data directory aside); the proxy's configuration
// names the ledger service, its port and the key the ledger writes into the
// volume the proxy mounts. The Dockerfile itself needs Docker Hub and gcr.io
// (it says so; mirrors via build args): its build step is run here without
// Docker, so that it builds what the services run.
func TestExamplesCompose(t *testing.T) {
	dir := examplesDir(t)
	b, err := os.ReadFile(filepath.Join(dir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	ledger, proxy := c.Services["ledger"], c.Services["proxy"]
	if ledger.Build == nil || len(ledger.Command) == 0 || len(proxy.Command) == 0 || proxy.Image != ledger.Image {
		t.Fatalf("compose.yaml: want a ledger service that builds the image and a proxy service on it: %+v", c.Services)
	}
	if _, err := os.Stat(filepath.Join(dir, ledger.Build.Context, ledger.Build.Dockerfile)); err != nil {
		t.Fatalf("compose.yaml builds from %s: %v", ledger.Build.Dockerfile, err)
	}
	for name, s := range c.Services {
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			switch {
			case strings.HasPrefix(src, "./"):
				if _, err := os.Stat(filepath.Join(dir, src)); err != nil && src != "./htpasswd" {
					t.Errorf("service %s mounts %s: %v", name, src, err)
				}
			case c.Volumes == nil || !hasKey(c.Volumes, src):
				t.Errorf("service %s mounts volume %s, not declared", name, src)
			}
		}
	}
	if !strings.Contains(string(b), "htpasswd -Bbn USER PASSWORD >> examples/htpasswd") {
		t.Error("compose.yaml mounts ./htpasswd without saying how to make it")
	}

	// The Dockerfile's build step, run as written, builds what the services run.
	df, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	build := regexp.MustCompile(`(?m)^RUN (go build .*)$`).FindSubmatch(df)
	if build == nil {
		t.Fatal("Dockerfile: no RUN go build")
	}
	for _, arg := range []string{"ARG GO_IMAGE=", "ARG RUNTIME_IMAGE=", "FROM ${GO_IMAGE}", "FROM ${RUNTIME_IMAGE}"} {
		if !strings.Contains(string(df), arg) {
			t.Errorf("Dockerfile lacks %q: a mirror of its base images cannot be named", arg)
		}
	}
	out := t.TempDir()
	cmd := exec.Command("bash", "-c", strings.Replace(string(build[1]), "/out/", out+"/", 1))
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOTOOLCHAIN=local")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("Dockerfile's %s: %v\n%s", build[1], err, b)
	}
	for name, s := range c.Services {
		if _, err := os.Stat(filepath.Join(out, s.Command[0])); err != nil {
			t.Errorf("service %s runs %s, which the Dockerfile does not build", name, s.Command[0])
		}
	}

	// The ledger's command as written, on a loopback address and a
	// temporary data directory.
	args := slices.Clone(ledger.Command[1:])
	addr := freeAddr(t)
	for i := range args {
		switch {
		case i > 0 && args[i-1] == "--addr":
			if !strings.HasSuffix(args[i], ":7070") {
				t.Errorf("the ledger listens on %s, proxy.yaml expects :7070", args[i])
			}
			args[i] = addr
		case i > 0 && args[i-1] == "--data":
			args[i] = t.TempDir()
		}
	}
	lout := startProcess(t, filepath.Join(out, ledger.Command[0]), args...)
	waitHTTP(t, "http://"+addr+"/api/v1/info", http.StatusOK, lout)

	// The proxy's configuration names that ledger and the key it writes.
	pc, err := os.ReadFile(filepath.Join(dir, "proxy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Ledger    string `yaml:"ledger"`
		LedgerKey string `yaml:"ledgerKey"`
	}
	if err := yaml.Unmarshal(pc, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Ledger != "http://ledger:7070" || !slices.Contains(proxy.Volumes, "ledger-data:/ledger:ro") || cfg.LedgerKey != "/ledger/ledger.pub" ||
		!slices.Contains(ledger.Volumes, "ledger-data:/data") || !slices.Contains(ledger.Command, "/data") {
		t.Errorf("proxy.yaml's ledger %q and ledgerKey %q do not match compose.yaml's services: %+v", cfg.Ledger, cfg.LedgerKey, c.Services)
	}
}

func hasKey(m map[string]any, k string) bool { _, ok := m[k]; return ok }

// TestExamplesDaemonAndContainerd: a real dockerd started with a copy of
// examples/daemon.json (its mirror pointed at a proxy on loopback) pulls a
// signed Docker Hub image through the proxy and not an unsigned one, and
// containerd with a copy of examples/containerd/certs.d does the same; the
// proxy's docker.io upstream is a local registry (no Docker Hub here).
func TestExamplesDaemonAndContainerd(t *testing.T) {
	requireTool(t, "containerd")
	requireTool(t, "ctr")
	hub := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(hub.Close)
	hubHost := strings.TrimPrefix(hub.URL, "http://")
	led := ledgertest.Start(t)
	c := newCLI(t, led.URL)
	c.notarize(0, "key", "generate", "--name", "release")
	pub := c.notarize(0, "key", "export", "release").stdout
	signed := pushRunnable(t, hubHost+"/library/demo:signed")
	pushRunnable(t, hubHost+"/library/demo:unsigned")
	c.notarize(0, "sign", hubHost+"/library/demo:signed")

	addr := freeAddr(t)
	dir := copyExamples(t, addr)
	if err := os.WriteFile(filepath.Join(dir, "keys", "release.pub"), []byte(pub), 0o644); err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(dir, "team-policy.yaml")
	if err := os.WriteFile(policy, []byte("signers:\n  release: {keys: [keys/release.pub]}\nrules:\n  - match: \"**\"\n    require: [release]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pout := startProcess(t, buildBinary(t, "notarize-proxy"), "--addr", addr, "--data", t.TempDir(), "--policy", policy,
		"--ledger", led.URL, "--ledger-key", led.VerifierKey, "--upstream", "docker.io="+hub.URL)
	waitHTTP(t, "http://"+addr+"/healthz", http.StatusOK, pout)

	t.Run("dockerd", func(t *testing.T) {
		sock := startDockerd(t, "--config-file", filepath.Join(dir, "daemon.json"))
		docker := func(args ...string) result {
			return c.exec("docker", append([]string{"-H", "unix://" + sock}, args...)...)
		}
		if r := docker("pull", "demo:signed"); r.code != 0 {
			t.Fatalf("docker pull demo:signed through examples/daemon.json's mirror: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if r := docker("image", "inspect", "--format", "{{.RepoDigests}}", "demo:signed"); !strings.Contains(r.stdout, signed) {
			t.Fatalf("pulled demo:signed is not %s: %s", signed, r.stdout)
		}
		// Refused by the mirror, dockerd falls back to Docker Hub, out of
		// reach here: the pull fails.
		r := docker("pull", "demo:unsigned")
		if r.code == 0 {
			t.Fatal("dockerd pulled an unsigned image through the mirror")
		}
		t.Logf("what the user sees of a pull the mirror refused:\n$ docker pull demo:unsigned\n%s%s", r.stdout, r.stderr)
	})

	t.Run("containerd", func(t *testing.T) {
		if os.Geteuid() != 0 {
			skipLoudly(t, "not root: containerd needs root")
		}
		cd, err := os.MkdirTemp("", "ctd") // short: the socket path must fit in sun_path
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unmountUnder(cd); _ = os.RemoveAll(cd) })
		config := filepath.Join(cd, "config.toml")
		if err := os.WriteFile(config, fmt.Appendf(nil, "version = 2\nroot = %q\nstate = %q\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = %q\n",
			filepath.Join(cd, "root"), filepath.Join(cd, "state"), filepath.Join(cd, "c.sock")), 0o644); err != nil {
			t.Fatal(err)
		}
		cout := startProcess(t, "containerd", "--config", config)
		waitFor(t, "containerd socket", func() bool { _, err := os.Stat(filepath.Join(cd, "c.sock")); return err == nil }, 30*time.Second, cout)
		ctr := func(args ...string) result {
			return c.exec("ctr", append([]string{"--address", filepath.Join(cd, "c.sock"), "--namespace", "examples"}, args...)...)
		}
		hosts := filepath.Join(dir, "containerd", "certs.d")
		pull := func(ref string) result {
			return ctr("images", "pull", "--snapshotter", "native", "--hosts-dir", hosts, ref)
		}
		if r := pull("docker.io/library/demo:signed"); r.code != 0 {
			t.Fatalf("ctr pull through examples/containerd/certs.d/docker.io/hosts.toml: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if r := pull("docker.io/library/demo:unsigned"); r.code == 0 || !strings.Contains(r.stderr, "403") {
			t.Fatalf("ctr pulled an unsigned image, or not refused by the proxy: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if !strings.Contains(pout.String(), "docker.io") {
			t.Error("the proxy logged no decision for docker.io")
		}
	})
}

// TestExamplesReadme runs examples/README.md's "Try it on one machine" and
// then "Use them for your team" on a fresh clone, as quickstart_test.go runs
// the README: without Docker Hub, and without changing a file of the clone
// (examples/ is under version control; the README has you edit a copy).
func TestExamplesReadme(t *testing.T) {
	for _, tool := range []string{"git", "make", "go", "docker", "curl"} {
		requireTool(t, tool)
	}
	work := t.TempDir()
	clone := filepath.Join(work, "clone")
	if out, err := exec.Command("git", "clone", "--quiet", "--no-hardlinks", repoRoot(t), clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(clone, "examples", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := parseReadme(t, string(b))
	sh := newQuickShell(t, clone, work, "", "")
	sh.env["NOTARIZE_PASSWORD"] = "examples-password" // the README's user answers the prompt
	sh.runBlocks(doc.section("Try it on one machine"))
	if sh.stack != nil {
		sh.stack.waitStopped() // its last command is make stop
	}
	sh.runBlocks(doc.section("Use them for your team"))
	if _, err := os.Stat(filepath.Join(sh.env["HOME"], "notarize-team", "keys", "release.pub")); err != nil {
		t.Errorf("the team's copy lacks the exported key: %v", err)
	}
	if out, err := exec.Command("git", "-C", clone, "status", "--porcelain", "--untracked-files=no").CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("examples/README.md changed committed files of the clone: %v\n%s", err, out)
	}
}
