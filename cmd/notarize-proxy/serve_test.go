package main

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/internal/testutil"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"golang.org/x/crypto/bcrypt"

	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// countingUpstream is a real registry that counts the requests it serves.
type countingUpstream struct {
	mu sync.Mutex
	n  int
	h  http.Handler
}

func (c *countingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	c.h.ServeHTTP(w, r)
}

func (c *countingUpstream) count() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

// stack is a ledger, an upstream and a policy directory for notarize-proxy.
type stack struct {
	ledger *ledgertest.Server
	up     *countingUpstream
	upURL  string
	dir    string
}

func newStack(t *testing.T, policy string) *stack {
	t.Helper()
	s := &stack{ledger: ledgertest.Start(t), dir: t.TempDir(),
		up: &countingUpstream{h: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}}
	hs := httptest.NewServer(s.up)
	t.Cleanup(hs.Close)
	s.upURL = hs.URL
	pub, err := notarizetest.NewSigner(t).PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	pemKey, _ := cryptoutils.MarshalPublicKeyToPEM(pub)
	writeFile(t, filepath.Join(s.dir, "release.pub"), string(pemKey))
	writeFile(t, filepath.Join(s.dir, "policy.yaml"), policy)
	h, _ := bcrypt.GenerateFromPassword([]byte("alice-pw"), bcrypt.MinCost)
	h2, _ := bcrypt.GenerateFromPassword([]byte("bob-pw"), bcrypt.MinCost)
	writeFile(t, filepath.Join(s.dir, "htpasswd"), "alice:"+string(h)+"\nbob:"+string(h2)+"\n")
	return s
}

func (s *stack) args(extra ...string) []string {
	return append([]string{"--addr", "127.0.0.1:0", "--data", filepath.Join(s.dir, "data"),
		"--upstream", "local=" + s.upURL, "--default-upstream", "local",
		"--policy", filepath.Join(s.dir, "policy.yaml"), "--ledger", s.ledger.URL, "--ledger-key", s.ledger.VerifierKey}, extra...)
}

// start runs notarize-proxy until the test ends and returns its base URL.
func (s *stack) start(t *testing.T, args []string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var logs testutil.SyncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, io.Discard, &logs) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(logs.String(), "\n") {
			var m struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "notarize-proxy listening" {
				return "http://" + m.Addr
			}
		}
		select {
		case code := <-done:
			t.Fatalf("notarize-proxy exited %d:\n%s", code, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("notarize-proxy did not start:\n%s", logs.String())
	return ""
}

func get(t *testing.T, url, user, pw string) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if user != "" {
		req.SetBasicAuth(user, pw)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

const accessPolicy = `signers:
  release: {keys: [release.pub]}
rules:
  - {match: "**", mode: off}
access:
  - {match: "local/team/**", users: [alice]}
`

// TestServeWithAuth runs the whole command with --auth htpasswd:FILE and
// access rules: /v2/ challenges, alice is let in, bob is refused a
// repository of alice's without any upstream request, /healthz stays open.
func TestServeWithAuth(t *testing.T) {
	s := newStack(t, accessPolicy)
	base := s.start(t, s.args("--auth", "htpasswd:"+filepath.Join(s.dir, "htpasswd")))
	if st, hdr := get(t, base+"/v2/", "", ""); st != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic ") {
		t.Fatalf("/v2/ without credentials: %d %q", st, hdr.Get("WWW-Authenticate"))
	}
	if st, _ := get(t, base+"/v2/", "alice", "wrong"); st != http.StatusUnauthorized {
		t.Fatalf("bad password: %d", st)
	}
	if st, _ := get(t, base+"/v2/", "alice", "alice-pw"); st != http.StatusOK {
		t.Fatalf("alice /v2/: %d", st)
	}
	before := s.up.count()
	for _, p := range []string{"/v2/team/app/manifests/v1", "/v2/team/app/tags/list"} {
		if st, _ := get(t, base+p, "bob", "bob-pw"); st != http.StatusForbidden {
			t.Fatalf("bob %s: %d", p, st)
		}
		if st, _ := get(t, base+p, "", ""); st != http.StatusUnauthorized {
			t.Fatalf("anonymous %s: %d", p, st)
		}
	}
	if n := s.up.count() - before; n != 0 {
		t.Fatalf("%d upstream requests for refused clients", n)
	}
	// alice's request goes upstream (the repository does not exist there).
	if st, _ := get(t, base+"/v2/team/app/manifests/v1", "alice", "alice-pw"); st != http.StatusNotFound || s.up.count() == before {
		t.Fatalf("alice: %d after %d upstream requests", st, s.up.count()-before)
	}
	// /healthz needs no login; it is 200 once the replica has verified the
	// ledger's state, which the process does in the background after start.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := get(t, base+"/healthz", "", "")
		if st == http.StatusOK {
			break
		}
		if st != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("/healthz: %d", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServeRefusesAccessRulesWithoutAuth: access rules name users; a proxy
// that authenticates nobody would deny everyone, so it does not start.
func TestServeRefusesAccessRulesWithoutAuth(t *testing.T) {
	s := newStack(t, accessPolicy)
	var logs testutil.SyncBuffer
	if code := run(t.Context(), s.args(), io.Discard, &logs); code != 1 || !strings.Contains(logs.String(), "access rules") {
		t.Fatalf("exit %d:\n%s", code, logs.String())
	}
}
