// Package s3test starts a real S3-compatible object store for tests and
// benchmarks: the Versity S3 Gateway (versitygw, Apache-2.0) on its POSIX
// backend, built and started on loopback by scripts/versitygw.sh, with one
// bucket per caller. It checks every request's AWS signature. It is what
// the fleet tests of the shared blob cache (issue 15) run against; the
// parameters it returns are those of distribution's s3 driver.
package s3test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/notarize/docker-notarize/internal/testutil"
)

// AccessKey and SecretKey are the server's one account: every request
// must be signed with them (AWS Signature Version 4), as on a real S3.
const (
	AccessKey = "notarize"
	SecretKey = "notarize-test-only"
)

// exitUnavailable is scripts/versitygw.sh's exit code for "cannot be had here".
const exitUnavailable = 77

// Server is a versitygw server on 127.0.0.1, its one account AccessKey and
// SecretKey.
type Server struct {
	// Endpoint is the S3 endpoint, http://127.0.0.1:PORT.
	Endpoint string
	script   string
	dir      string
	mu       sync.Mutex
	buckets  int
}

// shared is the test binary's one server (Shared), started at the first
// call and stopped by Main.
var shared struct {
	mu   sync.Mutex
	main bool // Main is running the tests
	srv  *Server
	err  error // the start's failure, given to every later caller
	dir  string
}

// Main runs m's tests and then stops the shared server if one was started;
// it returns m.Run's code. A package whose tests call Shared calls it from
// its TestMain: os.Exit(s3test.Main(m)).
func Main(m *testing.M) int {
	shared.mu.Lock()
	shared.main = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv != nil {
		shared.srv.Stop()
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
	return code
}

// Shared returns the test binary's server, started at the first call, each
// caller keeping its data in buckets of its own (Bucket). One server per
// binary, not per test: a stop waits for the server's graceful exit
// (about a second), where a new bucket on a running server takes a few
// milliseconds. When versitygw cannot be built or found here it skips t
// loudly, unless $CI is set: then it fails. It fails t when the package's
// TestMain does not run the tests through Main, which stops the server.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.main {
		t.Fatal("s3test.Shared: the package's TestMain must run the tests with s3test.Main, which stops the server")
	}
	if shared.srv == nil && shared.err == nil {
		if shared.dir, shared.err = os.MkdirTemp("", "s3test-"); shared.err == nil {
			shared.srv, shared.err = start(shared.dir)
		}
	}
	if errors.Is(shared.err, errUnavailable) {
		if os.Getenv("CI") != "" {
			t.Fatalf("versitygw (S3) is required under CI: %v", shared.err)
		}
		bar := strings.Repeat("#", 78)
		t.Skipf("\n%s\n## SKIPPED: no versitygw for the S3 tests: %v\n## Run scripts/versitygw.sh install (go install, about 2 min once).\n%s", bar, shared.err, bar)
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.srv
}

var errUnavailable = errors.New("versitygw unavailable")

func start(dir string) (*Server, error) {
	script, err := testutil.Script("versitygw.sh")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnavailable, err)
	}
	// Outside CI, a missing binary skips (building it takes minutes on a
	// shared machine: run scripts/versitygw.sh install); under CI it is built.
	cmd := "installed"
	if os.Getenv("CI") != "" {
		cmd = "install"
	}
	if out, err := exec.Command(script, cmd).CombinedOutput(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == exitUnavailable {
			return nil, fmt.Errorf("%w: %s", errUnavailable, lastLines(out))
		}
		return nil, fmt.Errorf("versitygw install: %v: %s", err, lastLines(out))
	}
	// Another process may take the port between the check and the start:
	// try again on another.
	for attempt := 1; ; attempt++ {
		port, err := testutil.FreePort()
		if err != nil {
			return nil, err
		}
		var stderr bytes.Buffer
		cmd := exec.Command(script, "start", dir, fmt.Sprint(port))
		cmd.Env = append(os.Environ(), "S3_ACCESS_KEY="+AccessKey, "S3_SECRET_KEY="+SecretKey)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err == nil {
			return &Server{Endpoint: strings.TrimSpace(string(out)), script: script, dir: dir}, nil
		}
		_ = exec.Command(script, "stop", dir).Run()
		if attempt == 3 {
			return nil, fmt.Errorf("versitygw start: %v: %s", err, lastLines(stderr.Bytes()))
		}
	}
}

// Bucket creates a new bucket and returns its name.
func (s *Server) Bucket(t testing.TB) string {
	t.Helper()
	name, err := s.NewBucket()
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// NewBucket creates a new bucket and returns its name.
func (s *Server) NewBucket() (string, error) {
	s.mu.Lock()
	s.buckets++
	n := s.buckets
	s.mu.Unlock()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := fmt.Sprintf("b%d-%s", n, hex.EncodeToString(b))
	cmd := exec.Command(s.script, "bucket", s.Endpoint, name)
	cmd.Env = append(os.Environ(), "S3_ACCESS_KEY="+AccessKey, "S3_SECRET_KEY="+SecretKey)
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "versitygw.log"))
		return "", fmt.Errorf("versitygw bucket: %v: %s\nversitygw.log (last lines):\n%s", err, lastLines(out), lastLines(log))
	}
	return name, nil
}

// Params returns distribution's s3 driver parameters for bucket on s.
func (s *Server) Params(bucket string) map[string]any {
	return map[string]any{
		"region": "us-east-1", "bucket": bucket, "regionendpoint": s.Endpoint,
		"forcepathstyle": true, "secure": false, "accesskey": AccessKey, "secretkey": SecretKey,
	}
}

// Stop stops the server.
func (s *Server) Stop() {
	_ = exec.Command(s.script, "stop", s.dir).Run()
}

func lastLines(b []byte) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
