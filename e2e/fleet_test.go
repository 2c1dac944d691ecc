package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/blobcache"
	"github.com/notarize/docker-notarize/proxy/blobcache/s3test"
)

// TestFleetProcesses (issue 15): two notarize-proxy processes, each with its
// own data directory and ledger replica, cache blobs in one S3 bucket on a
// real S3 server (versitygw). Both pull the same signed image at once: both
// clients get every blob (go-containerregistry checks each digest); once both have
// stopped gracefully (which waits for their puts into the bucket), the
// bucket holds one copy of each blob and no temporary upload. A third
// process started on the bucket afterwards pulls the image without one
// blob GET to the upstream.
func TestFleetProcesses(t *testing.T) {
	s3 := s3test.Shared(t)
	bucket := s3.Bucket(t)
	var blobGETs atomic.Int64
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			blobGETs.Add(1)
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	upHost := strings.TrimPrefix(up.URL, "http://")

	led := ledgertest.Start(t)
	c := newCLI(t, led.URL)
	c.notarize(0, "key", "generate", "--name", "release")
	pub := c.notarize(0, "key", "export", "release").stdout
	img, err := random.Image(3<<20, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref := upHost + "/team/app:v1"
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	c.notarize(0, "sign", ref)

	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("release.pub", pub)
	policy := write("policy.yaml", "signers:\n  release: {keys: [release.pub]}\nrules:\n  - match: \"**\"\n    require: [release]\n")
	conf := write("fleet.yaml", "storage:\n  s3: {region: us-east-1, bucket: "+bucket+", regionendpoint: \""+s3.Endpoint+
		"\", forcepathstyle: true, secure: false, accesskey: "+s3test.AccessKey+", secretkey: "+s3test.SecretKey+"}\n")
	proxyBin := buildBinary(t, "notarize-proxy")
	startProxy := func() (string, func() error) {
		addr := freeAddr(t)
		out, stop := startStoppable(t, proxyBin, "--config", conf, "--addr", addr, "--data", t.TempDir(), "--policy", policy,
			"--ledger", led.URL, "--ledger-key", led.VerifierKey, "--upstream", "local="+up.URL)
		waitHTTP(t, "http://"+addr+"/healthz", http.StatusOK, out)
		return addr, stop
	}
	pull := func(addr string) error {
		r, err := name.ParseReference(addr+"/local/team/app:v1", name.Insecure)
		if err != nil {
			return err
		}
		img, err := remote.Image(r, remote.WithContext(t.Context()))
		if err != nil {
			return err
		}
		if _, err := img.RawConfigFile(); err != nil { // checks the config's digest
			return err
		}
		layers, err := img.Layers()
		if err != nil {
			return err
		}
		for _, l := range layers {
			rc, err := l.Compressed()
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, rc) // verifies the digest at EOF
			if cerr := rc.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	a, stopA := startProxy()
	b, stopB := startProxy()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, addr := range []string{a, b} {
		wg.Go(func() { errs[i] = pull(addr) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	want := []notarize.Digest{notarize.Digest(cfg.String())}
	for _, l := range layers {
		h, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, notarize.Digest(h.String()))
	}
	drv, err := factory.Create(t.Context(), "s3", s3.Params(bucket))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		var missing []notarize.Digest
		for _, d := range want {
			if _, err := drv.Stat(context.Background(), blobcache.BlobPath(d)); err != nil {
				missing = append(missing, d)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("blobs not in the bucket after a minute: %v\nproxy A:\n%s\nproxy B:\n%s", missing, blobMetrics(a), blobMetrics(b))
		}
	}

	// The clients had every blob before the puts into the bucket ended (they
	// run detached, after each fill): the first copy under a digest says
	// nothing of the other proxy's put of the same blob, which may still be
	// uploading. A graceful stop waits for the puts in progress, as a
	// rolling restart does; both must exit cleanly (a put cut short by the
	// shutdown would make the exit fail).
	for name, stop := range map[string]func() error{"A": stopA, "B": stopB} {
		if err := stop(); err != nil {
			t.Fatalf("proxy %s did not shut down cleanly: %v", name, err)
		}
	}

	// A third instance's first pull: from the bucket, no upstream blob GET.
	before := blobGETs.Load()
	c3, _ := startProxy()
	if err := pull(c3); err != nil {
		t.Fatal(err)
	}
	if n := blobGETs.Load() - before; n != 0 {
		t.Fatalf("the third proxy made %d upstream blob GETs for blobs the fleet had cached", n)
	}

	var files []string
	err = drv.Walk(t.Context(), "/notarize", func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() && strings.Contains(fi.Path(), "/uploads/") {
			files = append(files, fi.Path())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 0 {
		t.Fatalf("temporary uploads left in the bucket: %v", files)
	}
	for _, d := range want {
		got, err := drv.GetContent(t.Context(), blobcache.BlobPath(d))
		if err != nil || notarize.DigestOf(got) != d {
			t.Fatalf("the bucket's copy of %s: %v", d, err)
		}
	}
}

// startStoppable starts bin as startProcess does and returns, with its
// output, a stop that sends SIGTERM and waits for the exit (its error, nil
// for exit status 0); t's end stops it too, if it still runs.
func startStoppable(t *testing.T, bin string, args ...string) (*lockedBuffer, func() error) {
	t.Helper()
	var out lockedBuffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	exited := make(chan struct{})
	go func() { exitErr = cmd.Wait(); close(exited) }()
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
			return fmt.Errorf("%s still running 30s after SIGTERM (killed)", filepath.Base(bin))
		}
		return exitErr
	}
	t.Cleanup(func() {
		_ = stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), tail([]byte(out.String()), 3000))
		}
	})
	return &out, stop
}

// blobMetrics returns the blob lines of a proxy's /metrics.
func blobMetrics(addr string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "blob") && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
