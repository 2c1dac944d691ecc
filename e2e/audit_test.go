package e2e

import (
	"bufio"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
)

// auditJSON is the part of `docker notarize audit -o json` the test reads.
type auditJSON struct {
	SchemaVersion int    `json:"schemaVersion"`
	Source        string `json:"source"`
	Verdict       string `json:"verdict"`
	ExitCode      int    `json:"exitCode"`
	Subjects      []struct {
		References []string `json:"references"`
		Digest     string   `json:"digest"`
		ImageID    string   `json:"imageId"`
		Verdict    string   `json:"verdict"`
		Reason     string   `json:"reason"`
		Signers    []struct {
			Name   string `json:"name"`
			Status string `json:"status"`
		} `json:"signers"`
		Containers []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"containers"`
	} `json:"subjects"`
	Signed []signJSON `json:"signed"`
}

// subject returns the audit subject with reference ref, or fails.
func (a auditJSON) subject(t *testing.T, ref string) int {
	t.Helper()
	for i, s := range a.Subjects {
		if slices.Contains(s.References, ref) {
			return i
		}
	}
	t.Fatalf("no subject with reference %s: %+v", ref, a.Subjects)
	return -1
}

// TestAuditRealDaemon runs `docker notarize audit` against a real dockerd
// (its own data root and socket, no networking) that pulled a signed and an
// unsigned image from a loopback registry, created a container from each and
// loaded a third image from a tar; then audits the registry repository, signs
// with --sign --yes, untrusts, and removes the local-only image.
func TestAuditRealDaemon(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("the docker CLI is not installed; the CI installs it (.ci/run)")
	}
	sock := startDockerd(t)
	led := ledgertest.Start(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	repo := host + "/e2e/app"
	signedRef, unsignedRef := repo+":signed", repo+":unsigned"
	signedDigest := pushRunnable(t, signedRef)
	unsignedDigest := pushRunnable(t, unsignedRef)
	// The signed image in a second registry too: the same manifest, so one
	// digest with two registry references.
	mirror := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(mirror.Close)
	mirrorRef := strings.TrimPrefix(mirror.URL, "http://") + "/mirror/app:signed"
	copyImage(t, signedRef, mirrorRef)

	c := newCLI(t, led.URL)
	c.env["DOCKER_HOST"] = "unix://" + sock
	c.notarize(0, "key", "generate", "--name", "alice")
	c.notarize(0, "sign", signedRef)

	for _, ref := range []string{signedRef, unsignedRef, mirrorRef} {
		if r := c.docker("pull", "-q", ref); r.code != 0 {
			t.Fatalf("docker pull %s: exit %d\n%s%s", ref, r.code, r.stdout, r.stderr)
		}
	}
	for name, ref := range map[string]string{"signed-ctr": signedRef, "unsigned-ctr": unsignedRef} {
		if r := c.docker("create", "--name", name, ref, "/bin/true"); r.code != 0 {
			t.Fatalf("docker create %s: exit %d\n%s%s", ref, r.code, r.stdout, r.stderr)
		}
	}
	loaded := loadImage(t, c, "local/loaded:v1")

	t.Run("local images and containers", func(t *testing.T) {
		r := c.notarize(2, "audit", "-o", "json")
		a := decode[auditJSON](t, r.stdout)
		if a.SchemaVersion != 1 || a.Source != "daemon" || a.Verdict != "UNKNOWN" || a.ExitCode != 2 || len(a.Subjects) != 3 {
			t.Fatalf("audit: %+v", a)
		}
		s := a.Subjects[a.subject(t, signedRef)]
		if s.Verdict != "TRUSTED" || s.Digest != signedDigest || len(s.Containers) != 1 || s.Containers[0].Name != "signed-ctr" || s.Containers[0].State != "created" ||
			len(s.Signers) != 1 || s.Signers[0].Name != "alice" || s.Signers[0].Status != "TRUSTED" {
			t.Errorf("signed image: %+v", s)
		}
		if i := a.subject(t, mirrorRef); i != a.subject(t, signedRef) {
			t.Errorf("the image pulled from two registries is two subjects: %+v and %+v", a.Subjects[i], s)
		}
		if !slices.Contains(s.References, strings.TrimSuffix(mirrorRef, ":signed")+"@"+signedDigest) || !slices.Contains(s.References, repo+"@"+signedDigest) {
			t.Errorf("the signed image's references lack a registry digest: %v", s.References)
		}
		u := a.Subjects[a.subject(t, unsignedRef)]
		if u.Verdict != "UNKNOWN" || u.Digest != unsignedDigest || len(u.Containers) != 1 || u.Containers[0].Name != "unsigned-ctr" || u.Signers[0].Status != "NONE" {
			t.Errorf("unsigned image: %+v", u)
		}
		l := a.Subjects[a.subject(t, "local/loaded:v1")]
		if l.Verdict != "UNVERIFIABLE" || l.Digest != "" || l.ImageID != loaded || !strings.Contains(l.Reason, "no registry digest") {
			t.Errorf("loaded image: %+v", l)
		}
		if strings.Contains(r.stderr, "\r[") {
			t.Errorf("a progress bar on a non-terminal: %q", r.stderr)
		}

		table := c.notarize(2, "audit").stdout
		t.Logf("docker notarize audit:\n%s", table)
		for _, want := range []string{"VERDICT", "TRUSTED", "UNKNOWN", "UNVERIFIABLE", signedDigest[:19], "signed-ctr (created)", "unsigned-ctr (created)", "alice=TRUSTED", "alice=NONE", "local/loaded:v1", "no registry digest", "(exit 2)"} {
			if !strings.Contains(table, want) {
				t.Errorf("table lacks %q:\n%s", want, table)
			}
		}
		c.standalone(2, "audit") // standalone: the docker client from DOCKER_HOST
		// A docker context that does not exist: could not audit (4), never
		// docker/cli's exit 1, which would read as UNTRUSTED.
		noCtx := newCLI(t, led.URL)
		noCtx.env["DOCKER_CONTEXT"] = "no-such-context"
		// (It accepts alice, as c does: an empty key store would be a
		// configuration error, 125, before the daemon is asked.)
		if r := noCtx.standalone(4, "audit", "--signer", filepath.Join(c.home(), "keys", "alice.pub")); !strings.Contains(r.stderr, "no-such-context") {
			t.Errorf("missing context: %s", r.stderr)
		}
	})

	t.Run("registry repository", func(t *testing.T) {
		a := decode[auditJSON](t, c.notarize(2, "audit", "-o", "json", repo, "--all-tags").stdout)
		if a.Source != "registry" || len(a.Subjects) != 2 ||
			a.Subjects[a.subject(t, signedRef)].Verdict != "TRUSTED" || a.Subjects[a.subject(t, unsignedRef)].Verdict != "UNKNOWN" {
			t.Fatalf("audit %s --all-tags: %+v", repo, a)
		}
		a = decode[auditJSON](t, c.notarize(0, "audit", "-o", "json", repo, "--tags", "sig*").stdout)
		if len(a.Subjects) != 1 || a.Subjects[0].Digest != signedDigest {
			t.Fatalf("audit --tags 'sig*': %+v", a.Subjects)
		}
	})

	t.Run("sign what is unknown", func(t *testing.T) {
		r := c.notarize(125, "audit", "--sign") // no terminal, no --yes: refused before anything
		if !strings.Contains(r.stderr, "--yes") {
			t.Errorf("refusal without a terminal: %s", r.stderr)
		}
		a := decode[auditJSON](t, c.notarize(2, "audit", "--sign", "--yes", "-o", "json").stdout)
		if len(a.Signed) != 1 || a.Signed[0].Digest != unsignedDigest || a.Signed[0].Status != "TRUSTED" {
			t.Fatalf("--sign recorded %+v, want only %s", a.Signed, unsignedDigest)
		}
		a = decode[auditJSON](t, c.notarize(2, "audit", "-o", "json").stdout)
		if v := a.Subjects[a.subject(t, unsignedRef)].Verdict; v != "TRUSTED" {
			t.Fatalf("after --sign: %s", v)
		}
		if v := a.Subjects[a.subject(t, "local/loaded:v1")].Verdict; v != "UNVERIFIABLE" {
			t.Fatalf("--sign made a local-only image %s", v)
		}
		c.notarize(0, "verify", unsignedRef)
	})

	t.Run("untrusted and all trusted", func(t *testing.T) {
		if r := c.docker("rmi", "local/loaded:v1"); r.code != 0 {
			t.Fatalf("docker rmi: %s", r.stderr)
		}
		c.notarize(0, "audit")
		c.notarize(0, "untrust", "--index-wait", "0", signedRef) // this ledger commits no map root for an hour: audit reads the log's tail
		a := decode[auditJSON](t, c.notarize(1, "audit", "-o", "json").stdout)
		if a.Verdict != "UNTRUSTED" || a.Subjects[a.subject(t, signedRef)].Verdict != "UNTRUSTED" {
			t.Fatalf("after untrust: %+v", a)
		}
		// --sign never undoes a revocation.
		a = decode[auditJSON](t, c.notarize(1, "audit", "--sign", "--yes", "-o", "json").stdout)
		if len(a.Signed) != 0 {
			t.Fatalf("--sign signed %+v over a revocation", a.Signed)
		}
	})

	t.Run("a local image under a signed tag", func(t *testing.T) {
		c.notarize(0, "sign", unsignedRef) // already trusted; the tag below is what matters
		// Loaded (or built) under the tag of a pulled, trusted image: the tag
		// moves to it, and it is judged by what it is, not by its name.
		id := loadImage(t, c, unsignedRef)
		a := decode[auditJSON](t, c.notarize(1, "audit", "-o", "json").stdout)
		l := a.Subjects[a.subject(t, unsignedRef)]
		if l.Verdict != "UNVERIFIABLE" || l.ImageID != id || l.Digest != "" {
			t.Fatalf("a loaded image under a trusted tag: %+v", l)
		}
		p := a.Subjects[a.subject(t, repo+"@"+unsignedDigest)]
		if p.Verdict != "TRUSTED" || slices.Contains(p.References, unsignedRef) || len(p.Containers) != 1 || p.Containers[0].Name != "unsigned-ctr" {
			t.Fatalf("the pulled image that lost its tag: %+v", p)
		}
	})
}

// copyImage copies the image at src to dst, manifest bytes unchanged.
func copyImage(t *testing.T, src, dst string) {
	t.Helper()
	s, err := name.ParseReference(src)
	if err != nil {
		t.Fatal(err)
	}
	d, err := name.ParseReference(dst)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(s, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(d, img, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
}

// pushRunnable pushes a random image that `docker create` accepts (a config
// with an OS, an architecture and a command) and returns its digest.
func pushRunnable(t testing.TB, ref string) string {
	t.Helper()
	img := runnableImage(t)
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func runnableImage(t testing.TB) v1.Image {
	t.Helper()
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Cmd = []string{"/bin/true"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// loadImage `docker load`s a random image tagged ref from a tar, as `docker
// save` writes it, and returns its image ID.
func loadImage(t *testing.T, c *cli, ref string) string {
	t.Helper()
	img := runnableImage(t)
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		t.Fatal(err)
	}
	if r := c.docker("load", "-q", "-i", path); r.code != 0 {
		t.Fatalf("docker load: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	id, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}

// startDockerd starts a dockerd of its own (data root, exec root and socket
// in a temporary directory; no iptables, no bridge, the vfs storage driver)
// and returns its socket, with extra flags of dockerd (a --registry-mirror).
// It stops it when the test ends. Without root or dockerd the test is
// skipped, loudly.
func startDockerd(t testing.TB, extra ...string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		skipLoudly(t, "not root: a real dockerd needs root")
	}
	bin, err := exec.LookPath("dockerd")
	if err != nil {
		skipLoudly(t, "dockerd is not installed (Debian package docker.io, installed by .ci/run)")
	}
	// A short directory: the socket path must fit in sun_path.
	dir, err := os.MkdirTemp("", "dkr")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "docker.sock")
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"-H", "unix://"+sock, "--pidfile", filepath.Join(dir, "docker.pid"),
		"--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver", "vfs")
	cmd.Args = append(cmd.Args, extra...)
	cmd.Stdout, cmd.Stderr = logf, logf
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
		unmountUnder(dir)
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("dockerd log (last 3000 bytes):\n%s", tail(b, 3000))
		}
		_ = logf.Close()
		_ = os.RemoveAll(dir)
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := exec.Command("docker", "-H", "unix://"+sock, "version", "--format", "{{.Server.Version}}").CombinedOutput()
		if err == nil {
			t.Logf("dockerd %s on %s", strings.TrimSpace(string(out)), sock)
			return sock
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("dockerd exited:\n%s", tail(b, 3000))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd did not answer within 30 s: %s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// skipLoudly skips the test with a line on stderr too, so that a run that
// skipped the real daemon does not pass unnoticed.
func skipLoudly(t testing.TB, why string) {
	t.Helper()
	fmt.Fprintf(os.Stderr, "\n*** %s SKIPPED: %s ***\n\n", t.Name(), why)
	t.Skip("SKIPPED LOUDLY: " + why)
}

// unmountUnder detaches every mount below dir that dockerd left behind.
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 1 && strings.HasPrefix(fields[1], dir+"/") {
			mounts = append(mounts, fields[1])
		}
	}
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, m := range mounts {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// BenchmarkAuditRealDaemon200Images is `docker notarize audit -o json`, the
// whole process (docker CLI, plugin, daemon, ledger), on a real dockerd
// holding 200 images pulled from a loopback registry, each with a created
// container, half of the digests signed. Set-up (200 pulls and creates) takes
// about two minutes on 2 cores; the audit about 0.4 s (2 ms an image).
func BenchmarkAuditRealDaemon200Images(b *testing.B) {
	if _, err := exec.LookPath("docker"); err != nil {
		b.Skip("the docker CLI is not installed")
	}
	sock := startDockerd(b)
	led := ledgertest.Start(b)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	b.Cleanup(srv.Close)
	repo := strings.TrimPrefix(srv.URL, "http://") + "/bench/app"
	for i := range 200 {
		prefix := "signed"
		if i%2 == 1 {
			prefix = "unsigned"
		}
		pushRunnable(b, fmt.Sprintf("%s:%s-%d", repo, prefix, i))
	}
	dc := b.TempDir()
	installPlugin(b, filepath.Join(dc, "cli-plugins"))
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + b.TempDir(), "DOCKER_CONFIG=" + dc, "DOCKER_CLI_HINTS=false",
		"DOCKER_HOST=unix://" + sock, "NOTARIZE_PASSWORD=" + password, "NOTARIZE_LEDGER=" + led.URL}
	run := func(want int, args ...string) string {
		cmd := exec.Command("docker", args...)
		cmd.Env = env
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			b.Fatal(err)
		}
		if code != want {
			b.Fatalf("docker %v: exit %d, want %d\n%s%s", args, code, want, out.String(), errOut.String())
		}
		return out.String()
	}
	start := time.Now()
	run(0, "pull", "-q", "--all-tags", repo)
	for i := range 200 {
		prefix := "signed"
		if i%2 == 1 {
			prefix = "unsigned"
		}
		run(0, "create", "--name", fmt.Sprintf("c%d", i), fmt.Sprintf("%s:%s-%d", repo, prefix, i), "/bin/true")
	}
	run(0, "notarize", "key", "generate", "--name", "alice")
	run(0, "notarize", "audit", repo, "--tags", "signed-*", "--sign", "--yes")
	b.Logf("set-up: 200 images pulled, 200 containers created, 100 digests signed in %v", time.Since(start).Round(time.Second))

	for b.Loop() {
		out := run(2, "notarize", "audit", "-o", "json")
		if n := strings.Count(out, `"verdict": "TRUSTED"`); n != 100 {
			b.Fatalf("%d TRUSTED subjects, want 100", n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/200, "µs/image")
}
