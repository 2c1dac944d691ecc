// Package seaweedtest starts a real S3-compatible object store for tests
// and benchmarks: SeaweedFS (Apache-2.0), built and started on loopback by
// scripts/seaweedfs.sh, with one bucket per caller. It is what the fleet
// tests of the shared blob cache (issue 15) run against; the parameters it
// returns are those of distribution's s3 driver.
package seaweedtest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/internal/testutil"
)

// exitUnavailable is scripts/seaweedfs.sh's exit code for "cannot be had here".
const exitUnavailable = 77

// Server is a SeaweedFS server on 127.0.0.1 with anonymous S3.
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
// its TestMain: os.Exit(seaweedtest.Main(m)).
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
// binary, not per test: a new SeaweedFS defers its first volume for ~5 s
// after its master's election, so a first write waited ~9 s (measured),
// and a stop ~1 s, where a new bucket on a running server costs ~0.2 s.
// When SeaweedFS cannot be built or found here it skips t loudly, unless
// $CI is set: then it fails. It fails t when the package's TestMain does
// not run the tests through Main, which stops the server.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.main {
		t.Fatal("seaweedtest.Shared: the package's TestMain must run the tests with seaweedtest.Main, which stops the server")
	}
	if shared.srv == nil && shared.err == nil {
		if shared.dir, shared.err = os.MkdirTemp("", "seaweedtest-"); shared.err == nil {
			shared.srv, shared.err = start(shared.dir)
		}
	}
	if errors.Is(shared.err, errUnavailable) {
		if os.Getenv("CI") != "" {
			t.Fatalf("SeaweedFS is required under CI: %v", shared.err)
		}
		bar := strings.Repeat("#", 78)
		t.Skipf("\n%s\n## SKIPPED: no SeaweedFS for the S3 tests: %v\n## Run scripts/seaweedfs.sh install (go build, about 8 min once).\n%s", bar, shared.err, bar)
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.srv
}

var errUnavailable = errors.New("SeaweedFS unavailable")

func start(dir string) (*Server, error) {
	script, err := testutil.Script("seaweedfs.sh")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnavailable, err)
	}
	// Outside CI, a missing binary skips (building it takes minutes on a
	// shared machine: run scripts/seaweedfs.sh install); under CI it is built.
	cmd := "installed"
	if os.Getenv("CI") != "" {
		cmd = "install"
	}
	if out, err := exec.Command(script, cmd).CombinedOutput(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == exitUnavailable {
			return nil, fmt.Errorf("%w: %s", errUnavailable, lastLines(out))
		}
		return nil, fmt.Errorf("seaweedfs install: %v: %s", err, lastLines(out))
	}
	// Another process may take one of the ports between the check and the
	// start: try again on others.
	for attempt := 1; ; attempt++ {
		port, err := freeBase()
		if err != nil {
			return nil, err
		}
		var stderr bytes.Buffer
		cmd := exec.Command(script, "start", dir, fmt.Sprint(port))
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err == nil {
			// S3 listening is not S3 ready: the filer behind it may still
			// fail (a port of the master or volume server taken meanwhile).
			// A first bucket proves it; else start again on other ports.
			s := &Server{Endpoint: strings.TrimSpace(string(out)), script: script, dir: dir}
			if _, err = s.NewBucket(); err == nil {
				return s, nil
			}
			stderr.WriteString(err.Error())
		}
		_ = exec.Command(script, "stop", dir).Run()
		if attempt == 3 {
			return nil, fmt.Errorf("seaweedfs start: %v: %s", err, lastLines(stderr.Bytes()))
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
	if out, err := exec.Command(s.script, "bucket", s.Endpoint, name).CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "weed.log"))
		return "", fmt.Errorf("seaweedfs bucket: %v: %s\nweed.log (last lines):\n%s", err, lastLines(out), lastLines(log))
	}
	return name, nil
}

// Params returns distribution's s3 driver parameters for bucket on s.
func (s *Server) Params(bucket string) map[string]any {
	return map[string]any{
		"region": "us-east-1", "bucket": bucket, "regionendpoint": s.Endpoint,
		"forcepathstyle": true, "secure": false, "accesskey": "notarize", "secretkey": "notarize-test-only",
	}
}

// Stop stops the server.
func (s *Server) Stop() {
	_ = exec.Command(s.script, "stop", s.dir).Run()
}

// freeBase finds a port p with p+1..p+3 and the gRPC ports of all four
// (+10000) free (a race with other processes is possible, and fails loudly).
func freeBase() (int, error) {
	for range 50 {
		b := make([]byte, 2)
		_, _ = rand.Read(b)
		p := 20000 + int(b[0])<<8%20000 + int(b[1])
		p -= p % 4
		ok := true
		for _, q := range []int{p, p + 1, p + 2, p + 3, p + 10000, p + 10001, p + 10002, p + 10003} {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", q))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return p, nil
		}
		time.Sleep(time.Millisecond)
	}
	return 0, errors.New("seaweedtest: no free ports")
}

func lastLines(b []byte) string {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
