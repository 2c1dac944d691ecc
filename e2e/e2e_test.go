package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/plugin"
	"github.com/notarize/docker-notarize/proxy/blobcache/s3test"
	"golang.org/x/mod/sumdb/note"
)

// binDir holds the commands TestMain builds once (builtCommands), and
// pluginBin the docker-notarize binary among them: the verify-only build,
// which runs the full CLI, notarize-cli, installed next to it
// (installPlugin) for every command but verify.
var binDir, pluginBin string

// builtCommands are the commands TestMain builds into binDir.
var builtCommands = []string{"docker-notarize", plugin.FullCLIName, "notarize-proxy"}

// buildCmd is `go build` of the command name into out as `make build`
// builds it: without cgo (the Makefile's NOCGO_CMDS), but for the full CLI,
// which keeps it; docker-notarize is the verify-only build of
// ./cmd/docker-notarize, notarize-cli its full build.
func buildCmd(name, out string) *exec.Cmd {
	args := []string{"build", "-trimpath", "-o", out}
	env := append(os.Environ(), "CGO_ENABLED=0")
	switch name {
	case "docker-notarize":
		args = append(args, "-tags", "notarize_verifyonly", "./cmd/docker-notarize")
	case plugin.FullCLIName:
		args, env = append(args, "./cmd/docker-notarize"), os.Environ()
	default:
		args = append(args, "./cmd/"+name)
	}
	cmd := exec.Command("go", args...)
	cmd.Env = env
	return cmd
}

// installPlugin installs the plugin in dir as `make install` does: the
// verify-only docker-notarize and the full CLI beside it.
func installPlugin(tb testing.TB, dir string) {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	for _, name := range []string{"docker-notarize", plugin.FullCLIName} {
		b, err := os.ReadFile(filepath.Join(binDir, name))
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestMain builds the commands the tests run, before testing's -timeout
// clock starts (go test's own, a minute longer, counts it), with
// -trimpath and cgo or not as `make build` does (buildEnv): the
// quickstart's and the examples' `make run` in their fresh clones then
// find every package compiled (-trimpath makes the clone's path not
// matter), where a build with other flags would compile the ~350 packages
// again (about four minutes on a fresh 2-core machine, each).
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "notarize-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir, pluginBin = dir, filepath.Join(dir, "docker-notarize")
	for _, name := range builtCommands {
		build := buildCmd(name, filepath.Join(dir, name))
		build.Dir = ".." // the module's root: go test runs in the package's directory
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: building %s: %v\n", name, err)
			_ = os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := s3test.Main(m)
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

const password = "e2e-password"

// cli runs the real docker CLI (or the plugin standalone) with a private
// DOCKER_CONFIG holding the plugin, so the default NOTARIZE_HOME is
// DOCKER_CONFIG/notarize.
type cli struct {
	t            *testing.T
	dockerConfig string
	env          map[string]string
}

func newCLI(t *testing.T, ledgerURL string) *cli {
	t.Helper()
	dc := t.TempDir()
	installPlugin(t, filepath.Join(dc, "cli-plugins"))
	return &cli{t: t, dockerConfig: dc, env: map[string]string{
		"HOME":              t.TempDir(),
		"PATH":              os.Getenv("PATH"),
		"DOCKER_CONFIG":     dc,
		"DOCKER_CLI_HINTS":  "false",
		"NOTARIZE_PASSWORD": password,
		"NOTARIZE_LEDGER":   ledgerURL,
	}}
}

func (c *cli) home() string { return filepath.Join(c.dockerConfig, "notarize") }

type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

func (c *cli) exec(bin string, args ...string) result {
	c.t.Helper()
	cmd := exec.CommandContext(c.t.Context(), bin, args...)
	for k, v := range c.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		c.t.Fatalf("%s %v: %v", bin, args, err)
	}
	return r
}

// docker runs `docker ARGS...`.
func (c *cli) docker(args ...string) result { c.t.Helper(); return c.exec("docker", args...) }

// notarize runs `docker notarize ARGS...` and requires exit code want.
func (c *cli) notarize(want int, args ...string) result {
	c.t.Helper()
	r := c.docker(append([]string{"notarize"}, args...)...)
	if r.code != want {
		c.t.Fatalf("docker notarize %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
	}
	return r
}

// standalone runs `docker-notarize ARGS...` directly and requires exit code want.
func (c *cli) standalone(want int, args ...string) result {
	c.t.Helper()
	r := c.exec(filepath.Join(c.dockerConfig, "cli-plugins", "docker-notarize"), args...)
	if r.code != want {
		c.t.Fatalf("docker-notarize %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
	}
	return r
}

// registryFixture is an in-process registry on loopback with two images and an index.
type registryFixture struct {
	srv          *httptest.Server
	host         string
	app, other   v1.Image
	multi        v1.ImageIndex
	multiMembers []string // digests of the index's manifests
}

func startRegistry(t *testing.T) *registryFixture {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	r := &registryFixture{srv: srv, host: strings.TrimPrefix(srv.URL, "http://")}
	var err error
	if r.app, err = random.Image(1024, 1); err != nil {
		t.Fatal(err)
	}
	if r.other, err = random.Image(1024, 1); err != nil {
		t.Fatal(err)
	}
	if r.multi, err = random.Index(512, 1, 2); err != nil {
		t.Fatal(err)
	}
	push := func(ref string, write func(name.Reference) error) {
		n, err := name.ParseReference(r.host + "/" + ref)
		if err != nil {
			t.Fatal(err)
		}
		if err := write(n); err != nil {
			t.Fatal(err)
		}
	}
	push("app:v1", func(n name.Reference) error { return remote.Write(n, r.app, remote.WithContext(t.Context())) })
	push("other:v1", func(n name.Reference) error { return remote.Write(n, r.other, remote.WithContext(t.Context())) })
	push("multi:v1", func(n name.Reference) error { return remote.WriteIndex(n, r.multi, remote.WithContext(t.Context())) })
	im, err := r.multi.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		r.multiMembers = append(r.multiMembers, d.Digest.String())
	}
	return r
}

func digest(t *testing.T, d interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

type verifyJSON struct {
	Status         string  `json:"status"`
	Digest         string  `json:"digest"`
	Signer         string  `json:"signer"`
	KeyID          string  `json:"keyId"`
	Timestamp      string  `json:"timestamp"`
	LogIndex       *uint64 `json:"logIndex"`
	CheckpointSize *uint64 `json:"checkpointSize"`
	Reason         string  `json:"reason"`
}

type signJSON struct {
	Signer         string `json:"signer"`
	Timestamp      string `json:"timestamp"`
	Digest         string `json:"digest"`
	Status         string `json:"status"`
	LogIndex       uint64 `json:"logIndex"`
	CheckpointSize uint64 `json:"checkpointSize"`
	KeyID          string `json:"keyId"`
	Duplicate      bool   `json:"duplicate"`
}

// signResultJSON is what sign, untrust and unsupport print with -o json.
type signResultJSON struct {
	SchemaVersion int        `json:"schemaVersion"`
	Statements    []signJSON `json:"statements"`
	Indexed       *bool      `json:"indexed"`
}

type inspectJSON struct {
	Digest         string `json:"digest"`
	CheckpointSize uint64 `json:"checkpointSize"`
	Statements     []struct {
		LogIndex uint64 `json:"logIndex"`
		Status   string `json:"status"`
		Signer   string `json:"signer"`
		KeyID    string `json:"keyId"`
	} `json:"statements"`
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("output is not the expected JSON: %v\n%s", err, s)
	}
	return v
}

// TestPluginLifecycle drives the plugin through the real docker CLI: sign,
// verify, untrust, unsupport, replay, restart, an index, a file, JSON output
// and a ledger that goes away.
func TestPluginLifecycle(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("the docker CLI is not installed; the CI installs it (.ci/run)")
	}
	// The ledger commits map roots as `make run`'s does (every
	// DefaultMapCommitInterval), so untrust and unsupport wait for theirs
	// as they do for a user (--index-wait) and say so.
	led := ledgertest.Start(t, ledgertest.WithConfig(func(c *ledger.Config) { c.MapCommitInterval = ledger.DefaultMapCommitInterval }))
	reg := startRegistry(t)
	c := newCLI(t, led.URL)
	app, other, multi := reg.host+"/app:v1", reg.host+"/other:v1", reg.host+"/multi:v1"
	appDigest := digest(t, reg.app)

	t.Run("docker lists the plugin", func(t *testing.T) {
		r := c.docker("--help")
		if r.code != 0 || !strings.Contains(r.stdout, "notarize*") {
			t.Fatalf("docker --help (exit %d) does not list notarize:\n%s\n%s", r.code, r.stdout, r.stderr)
		}
		h := c.notarize(0, "--help")
		for _, sub := range []string{"sign", "verify", "untrust", "unsupport", "inspect", "key"} {
			if !strings.Contains(h.stdout, sub) {
				t.Errorf("docker notarize --help does not mention %s", sub)
			}
		}
	})

	c.notarize(0, "key", "generate", "--name", "alice")
	if list := c.notarize(0, "key", "list").stdout; !strings.Contains(list, "alice") {
		t.Fatalf("key list does not show alice:\n%s", list)
	}
	if fi, err := os.Stat(filepath.Join(c.home(), "keys", "alice.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key in the default home: %v (mode %v)", err, fi)
	}
	alicePub := filepath.Join(t.TempDir(), "alice.pub")
	if err := os.WriteFile(alicePub, []byte(c.notarize(0, "key", "export", "alice").stdout), 0o644); err != nil {
		t.Fatal(err)
	}

	signed := decode[signResultJSON](t, c.notarize(0, "sign", "-o", "json", "--attr", "team=payments", app).stdout).Statements
	if len(signed) != 1 || signed[0].Digest != appDigest || signed[0].Status != "TRUSTED" || signed[0].CheckpointSize <= signed[0].LogIndex ||
		signed[0].Signer != "alice" || signed[0].Timestamp == "" {
		t.Fatalf("sign output %+v, want one trusted statement about %s", signed, appDigest)
	}
	firstIndex := signed[0].LogIndex

	t.Run("trusted", func(t *testing.T) {
		v := decode[verifyJSON](t, c.notarize(0, "verify", "-o", "json", app).stdout)
		if v.Status != "TRUSTED" || v.Digest != appDigest || v.Signer != "alice" || v.KeyID != signed[0].KeyID || v.LogIndex == nil || *v.LogIndex != firstIndex || v.CheckpointSize == nil || v.Timestamp != signed[0].Timestamp {
			t.Fatalf("verify = %+v", v)
		}
		c.notarize(0, "verify", "--signer", alicePub, reg.host+"/app@"+appDigest)
		c.standalone(0, "verify", app)
	})
	t.Run("pinned ledger key", func(t *testing.T) {
		pinned := newCLI(t, led.URL)
		pinned.env["NOTARIZE_LEDGER_KEY"] = led.VerifierKey
		pinned.notarize(0, "verify", "--signer", alicePub, app)
		_, wrongKey, err := note.GenerateKey(rand.Reader, led.Origin)
		if err != nil {
			t.Fatal(err)
		}
		r := newCLI(t, led.URL).notarize(4, "verify", "--ledger-key", wrongKey, "--signer", alicePub, app)
		if r.stdout != "" {
			t.Fatalf("a verdict was printed under the wrong ledger key: %s", r.stdout)
		}
	})
	t.Run("never signed is unknown", func(t *testing.T) {
		r := c.notarize(2, "verify", other)
		if !strings.HasPrefix(r.stdout, "UNKNOWN ") {
			t.Fatalf("stdout %q", r.stdout)
		}
		if r.stderr != "" {
			t.Fatalf("a verdict printed on stderr: %q", r.stderr)
		}
		c.standalone(2, "verify", other)
	})
	t.Run("unknown signer is unknown", func(t *testing.T) {
		other := newCLI(t, led.URL)
		other.notarize(0, "key", "generate", "--name", "mallory")
		malloryPub := filepath.Join(t.TempDir(), "mallory.pub")
		if err := os.WriteFile(malloryPub, []byte(other.notarize(0, "key", "export", "mallory").stdout), 0o644); err != nil {
			t.Fatal(err)
		}
		c.notarize(2, "verify", "--signer", malloryPub, app)
		other.notarize(2, "verify", app) // mallory's store does not hold alice
	})

	if res := decode[signResultJSON](t, c.notarize(0, "untrust", "-o", "json", app).stdout); res.Indexed == nil || !*res.Indexed {
		t.Fatalf("untrust: the revocation is not reported indexed: %+v", res)
	}
	t.Run("untrusted", func(t *testing.T) {
		r := c.notarize(1, "verify", app)
		if !strings.HasPrefix(r.stdout, "UNTRUSTED ") || r.stderr != "" {
			t.Fatalf("stdout %q stderr %q", r.stdout, r.stderr)
		}
		c.standalone(1, "verify", app)
	})
	t.Run("replayed trusted envelope stays untrusted", func(t *testing.T) {
		entry := ledgerEntry(t, led.URL, appDigest, firstIndex)
		// The exact bytes: the ledger answers with the existing index.
		rc := submitRaw(t, led.URL, entry)
		if !rc.Duplicate || rc.Index != firstIndex {
			t.Fatalf("exact replay: index %d duplicate %v, want the existing index %d", rc.Index, rc.Duplicate, firstIndex)
		}
		c.notarize(1, "verify", app)
		// The same signed statement re-encoded (keyid dropped) is not its one
		// accepted encoding: refused, never logged (issue 8, class 3).
		e, err := notarize.ParseEntry(entry)
		if err != nil {
			t.Fatal(err)
		}
		e.Envelope.Signatures[0].KeyID = ""
		reencoded, err := e.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(led.URL+api.PathEntries, api.MediaTypeJSON, bytes.NewReader(reencoded))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("re-encoded replay: status %d, want 400", resp.StatusCode)
		}
		r := c.notarize(1, "verify", app)
		if !strings.HasPrefix(r.stdout, "UNTRUSTED ") {
			t.Fatalf("after replay: %s", r.stdout)
		}
	})

	if res := decode[signResultJSON](t, c.notarize(0, "unsupport", "-o", "json", app).stdout); res.Indexed == nil || !*res.Indexed {
		t.Fatalf("unsupport: not reported indexed: %+v", res)
	}
	c.notarize(3, "verify", app)

	t.Run("ledger restart keeps everything", func(t *testing.T) {
		led.Restart(t)
		c.notarize(3, "verify", app)
		in := decode[inspectJSON](t, c.notarize(0, "inspect", "-o", "json", app).stdout)
		var statuses []string
		for _, s := range in.Statements {
			statuses = append(statuses, s.Status)
		}
		if in.Digest != appDigest || !slices.Equal(statuses, []string{"TRUSTED", "UNTRUSTED", "UNSUPPORTED"}) { // the re-encoded replay was refused
			t.Fatalf("inspect after restart: digest %s statuses %v", in.Digest, statuses)
		}
		if txt := c.notarize(0, "inspect", app).stdout; strings.Count(txt, "alice") != 3 {
			t.Fatalf("inspect text:\n%s", txt)
		}
	})

	t.Run("index with --recursive", func(t *testing.T) {
		out := decode[signResultJSON](t, c.notarize(0, "sign", "--recursive", "-o", "json", multi).stdout).Statements
		var got []string
		for _, s := range out {
			got = append(got, s.Digest)
		}
		want := append([]string{digest(t, reg.multi)}, reg.multiMembers...)
		if !slices.Equal(got, want) {
			t.Fatalf("signed %v, want %v", got, want)
		}
		c.notarize(0, "verify", multi)
		for _, d := range reg.multiMembers {
			c.notarize(0, "verify", reg.host+"/multi@"+d)
		}
	})

	t.Run("file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "tool.tar.gz")
		if err := os.WriteFile(path, []byte("release artifact"), 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte("release artifact"))
		out := decode[signResultJSON](t, c.notarize(0, "sign", "-o", "json", "file:"+path).stdout).Statements
		if len(out) != 1 || out[0].Digest != "sha256:"+hex.EncodeToString(sum[:]) {
			t.Fatalf("sign file: %+v", out)
		}
		c.notarize(0, "verify", "file:"+path)
		if err := os.WriteFile(path, []byte("release artifact, tampered"), 0o644); err != nil {
			t.Fatal(err)
		}
		c.notarize(2, "verify", "file:"+path)
	})

	t.Run("latency", func(t *testing.T) {
		var plugin, direct []time.Duration
		for range 5 {
			plugin = append(plugin, c.notarize(3, "verify", app).took)
			direct = append(direct, c.standalone(3, "verify", app).took)
		}
		t.Logf("whole-process verify latency, median of 5: docker notarize %v, docker-notarize %v", median(plugin), median(direct))
	})

	t.Run("a digest reference needs no registry", func(t *testing.T) {
		reg.srv.Close()
		c.notarize(3, "verify", reg.host+"/app@"+appDigest)
		c.notarize(0, "inspect", reg.host+"/app@"+appDigest)
		c.notarize(4, "verify", app) // a tag must be resolved, and cannot be
	})

	t.Run("ledger down", func(t *testing.T) {
		led.Stop()
		app := reg.host + "/app@" + appDigest // the registry is down too: no tag can be resolved
		v := decode[verifyJSON](t, c.notarize(4, "verify", "-o", "json", app).stdout)
		if v.Status != "ERROR" || v.Digest != appDigest || v.Reason == "" {
			t.Fatalf("verify with the ledger down: %+v", v)
		}
		c.notarize(4, "verify", app)
		c.standalone(4, "verify", app)
		if r := c.docker("notarize", "sign", app); r.code == 0 {
			t.Fatal("sign succeeded with the ledger down")
		}
	})
}

// TestForkedLedgerIsCaught puts two ledgers with the same key and origin but
// different histories behind one URL; the client must refuse the second with
// exit 4 and leave its stored state byte for byte as it was.
func TestForkedLedgerIsCaught(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("the docker CLI is not installed; the CI installs it (.ci/run)")
	}
	a := ledgertest.Start(t)
	b := ledgertest.Start(t, ledgertest.WithSignerKey(a.SignerKey), ledgertest.WithOrigin(a.Origin))
	if a.VerifierKey != b.VerifierKey {
		t.Fatalf("fork ledgers have different verifier keys: %s vs %s", a.VerifierKey, b.VerifierKey)
	}
	reg := startRegistry(t)
	app, other := reg.host+"/app:v1", reg.host+"/other:v1"

	var target atomic.Pointer[url.URL]
	setTarget := func(s string) {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		target.Store(u)
	}
	setTarget(a.URL)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httputil.NewSingleHostReverseProxy(target.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)

	victim := newCLI(t, proxy.URL)
	victim.notarize(0, "key", "generate", "--name", "alice")
	victim.notarize(0, "sign", app)
	victim.notarize(0, "verify", app)

	// The other branch: the same ledger identity, another history (and longer).
	forger := newCLI(t, b.URL)
	forger.notarize(0, "key", "generate", "--name", "mallory")
	forger.notarize(0, "sign", other)
	forger.notarize(0, "sign", app)

	before := snapshot(t, victim.home())
	setTarget(b.URL)
	r := victim.notarize(4, "verify", app)
	t.Logf("fork refused: %s", r.stderr)
	if !strings.Contains(r.stderr, "history") {
		t.Errorf("fork error does not explain itself: %q", r.stderr)
	}
	victim.standalone(4, "verify", "--signer", "alice", other)
	victim.notarize(1, "inspect", app) // inspect refuses too (a failed command exits 1)
	if after := snapshot(t, victim.home()); !mapsEqual(before, after) {
		t.Fatalf("the client's state changed after seeing a fork:\nbefore %v\nafter  %v", before, after)
	}

	setTarget(a.URL)
	victim.notarize(0, "verify", app)
}

// ledgerEntry fetches, straight from the ledger's API, the stored bytes of
// the entry at index about digest d.
func ledgerEntry(t *testing.T, ledgerURL, d string, index uint64) []byte {
	t.Helper()
	resp, err := http.Get(ledgerURL + api.PathDigests + d)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lr api.LookupResponse
	if err := json.NewDecoder(resp.Body).Decode(&lr); err != nil {
		t.Fatal(err)
	}
	for _, e := range lr.Entries {
		if e.Index == index {
			return e.Entry
		}
	}
	t.Fatalf("ledger has no entry %d about %s", index, d)
	return nil
}

// submitRaw posts entry bytes straight to the ledger's API, as an attacker
// replaying an old envelope would, and returns the ledger's receipt.
func submitRaw(t *testing.T, ledgerURL string, entry []byte) api.Receipt {
	t.Helper()
	resp, err := http.Post(ledgerURL+api.PathEntries, api.MediaTypeJSON, bytes.NewReader(entry))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		t.Fatalf("ledger answered %d: %s", resp.StatusCode, body)
	}
	var rc api.Receipt
	if err := json.Unmarshal(body, &rc); err != nil {
		t.Fatal(err)
	}
	return rc
}

// snapshot hashes every file under dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[strings.TrimPrefix(path, dir)] = hex.EncodeToString(sum[:8])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
