package proxy_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/internal/testutil"
	"github.com/notarize/docker-notarize/notarize/notarizetest"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy"
	"github.com/notarize/docker-notarize/proxy/replica"
	"github.com/notarize/docker-notarize/proxy/upstream"
)

// testPolicy: audit and off areas, everything else enforced for release.
const testPolicy = `
signers:
  release: {keys: [release.pub]}
  ops: {keys: [ops.pub]}
rules:
  - match: "local/audit/**"
    require: [release]
    mode: audit
  - match: "local/off/**"
    mode: off
  - match: "local/ops/**"
    require: [ops]
  - match: "**"
    require: [release]
    mode: enforce
`

// env is a whole chain on loopback: a real ledger, the proxy's replica of
// it, an in-process upstream registry ("local") and the proxy.
type env struct {
	t        *testing.T
	ledger   *ledgertest.Server
	lc       *ledgerclient.Client
	replica  *replica.Replica
	release  signature.SignerVerifier
	ops      signature.SignerVerifier
	upstream *httptest.Server // "local", also the default upstream
	upHost   string
	proxy    *httptest.Server
	srv      *proxy.Server
	host     string // proxy host:port
	logs     *testutil.SyncBuffer

	dir    string // the proxy's state: policy, keys, ledger client home, replica, data
	follow string // the ledger URL the replica follows
	ec     envConfig
	policy *notarize.Evaluator
	ups    []upstream.Config
}

type envOption func(*envConfig)

type envConfig struct {
	extra        []upstream.Config
	maxStaleness time.Duration
	policy       string
	now          func() time.Time
	ledger       *ledgertest.Server
	follow       string
	peer         *env
	witnesses    *ledgerclient.WitnessPolicy
	storage      configuration.Storage
}

func withUpstream(u upstream.Config) envOption {
	return func(c *envConfig) { c.extra = append(c.extra, u) }
}

func withMaxStaleness(d time.Duration) envOption {
	return func(c *envConfig) { c.maxStaleness = d }
}

// withLedger uses srv (e.g. one instance of a MySQL ledger) instead of
// starting a ledger of the env's own.
func withLedger(srv *ledgertest.Server) envOption {
	return func(c *envConfig) { c.ledger = srv }
}

// withFollow makes the replica follow the ledger at url (e.g. a proxy in
// front of it) instead of the ledger's own URL.
func withFollow(url string) envOption {
	return func(c *envConfig) { c.follow = url }
}

// withPeer makes the env another proxy of p's deployment: same signers,
// same upstream registry.
func withPeer(p *env) envOption {
	return func(c *envConfig) { c.peer = p }
}

// withWitnesses gives the proxy's ledger client and replica a witness policy.
func withWitnesses(p *ledgerclient.WitnessPolicy) envOption {
	return func(c *envConfig) { c.witnesses = p }
}

// withStorage gives the proxy a storage section (a shared blob store: fleet_test.go).
func withStorage(st configuration.Storage) envOption {
	return func(c *envConfig) { c.storage = st }
}

// withClock gives the replica a clock of the test's.
func withClock(now func() time.Time) envOption {
	return func(c *envConfig) { c.now = now }
}

// testClock is a clock the test moves.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *testClock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	var ec envConfig
	for _, o := range opts {
		o(&ec)
	}
	if ec.policy == "" {
		ec.policy = testPolicy
	}
	e := &env{t: t, logs: &testutil.SyncBuffer{}, ec: ec, ledger: ec.ledger}
	if e.ledger == nil {
		e.ledger = ledgertest.Start(t)
	}
	e.follow = cmp.Or(ec.follow, e.ledger.URL)
	var err error
	e.lc, err = ledgerclient.New(t.Context(), ledgerclient.Config{URL: e.ledger.URL, Home: t.TempDir(), VerifierKey: e.ledger.VerifierKey})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e.dir = dir
	if ec.peer != nil {
		e.release, e.ops = ec.peer.release, ec.peer.ops
	} else {
		e.release, e.ops = newSigner(t), newSigner(t)
	}
	writeKey(t, filepath.Join(dir, "release.pub"), e.release)
	writeKey(t, filepath.Join(dir, "ops.pub"), e.ops)
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(ec.policy), 0o600); err != nil {
		t.Fatal(err)
	}
	if e.policy, err = proxy.LoadPolicy(policyPath); err != nil {
		t.Fatal(err)
	}

	if ec.peer != nil {
		e.upstream, e.upHost = ec.peer.upstream, ec.peer.upHost
	} else {
		e.upstream = httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(true)))
		t.Cleanup(e.upstream.Close)
		e.upHost = strings.TrimPrefix(e.upstream.URL, "http://")
	}
	e.ups = append([]upstream.Config{{Name: "local", URL: e.upstream.URL, Keychain: anonymous()}}, ec.extra...)
	e.start()
	e.sync()
	return e
}

// start opens the proxy's ledger client and replica on e.dir and serves a
// new proxy on them, as the notarize-proxy process does on start. It does
// not sync the replica.
func (e *env) start() {
	t := e.t
	t.Helper()
	// The proxy's own ledger client, with its own state.
	plc, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: e.follow, Home: filepath.Join(e.dir, "proxy-home"), VerifierKey: e.ledger.VerifierKey,
		WitnessPolicy: e.ec.witnesses})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := replica.Open(replica.Config{
		Path: filepath.Join(e.dir, "replica.db"), Source: ledgerclient.NewFollower(plc, 0),
		PollInterval: 50 * time.Millisecond, MaxStaleness: e.ec.maxStaleness, Now: e.ec.now,
		Witnesses: e.ec.witnesses,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.replica = rep
	t.Cleanup(func() { _ = rep.Close() })
	e.srv, err = proxy.New(proxy.Config{
		DataDir: filepath.Join(e.dir, "data"), Upstreams: e.ups, DefaultUpstream: "local",
		Policy: e.policy, Trust: e.replica, ManifestTimeout: 3 * time.Second,
		Logger: slog.New(slog.NewJSONHandler(e.logs, nil)), Storage: e.ec.storage,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := e.srv
	t.Cleanup(func() { // after the HTTP server (cleanups run last first), before the data dir goes
		if err := srv.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	e.proxy = httptest.NewServer(e.srv.Handler())
	t.Cleanup(e.proxy.Close)
	e.host = strings.TrimPrefix(e.proxy.URL, "http://")
}

// restart stops the proxy and starts it again on the same state, as a
// process restart would: a new ledger client, the replica reopened from
// its file, a new proxy on a new address. It does not sync the replica.
// Not for an env whose replica runs (runReplica).
func (e *env) restart() {
	e.t.Helper()
	e.proxy.Close()
	if err := e.srv.Close(e.t.Context()); err != nil { // lets go of the data dir (the blob gate's file lock)
		e.t.Fatal(err)
	}
	if err := e.replica.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.start()
}

// runReplica keeps the replica following the ledger for the test's life.
func (e *env) runReplica() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.replica.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done })
}

func anonymous() authn.Keychain { return authn.NewMultiKeychain() }

func newSigner(t testing.TB) signature.SignerVerifier { return notarizetest.NewSigner(t) }

func writeKey(t testing.TB, path string, sv signature.SignerVerifier) {
	t.Helper()
	pub, err := sv.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// sign submits a statement about d by sv to the ledger and returns the receipt.
func (e *env) sign(sv signature.Signer, d notarize.Digest, s notarize.Status) *ledgerclient.SubmitResult {
	e.t.Helper()
	ent, err := notarize.Sign(e.t.Context(), sv, notarize.NewStatement(d, "test", notarize.Predicate{
		Status: s, Kind: notarize.KindImage, Name: "release", Timestamp: time.Now().UTC(),
	}))
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := e.lc.Submit(e.t.Context(), ent)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// sync brings the replica up to the ledger's latest checkpoint.
func (e *env) sync() {
	e.t.Helper()
	if _, err := e.replica.Sync(e.t.Context()); err != nil {
		e.t.Fatal(err)
	}
}

// push writes a random image to the upstream under repo:tag.
func (e *env) push(repo, tag string) v1.Image {
	e.t.Helper()
	img, err := random.Image(2048, 2)
	if err != nil {
		e.t.Fatal(err)
	}
	ref, err := name.ParseReference(e.upHost+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithContext(e.t.Context())); err != nil {
		e.t.Fatal(err)
	}
	return img
}

func (e *env) pushIndex(repo, tag string, n int64) v1.ImageIndex {
	e.t.Helper()
	idx, err := random.Index(1024, 1, n)
	if err != nil {
		e.t.Fatal(err)
	}
	ref, err := name.ParseReference(e.upHost+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx, remote.WithContext(e.t.Context())); err != nil {
		e.t.Fatal(err)
	}
	return idx
}

func digestOf(t testing.TB, h interface{ Digest() (v1.Hash, error) }) notarize.Digest {
	t.Helper()
	d, err := h.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return notarize.Digest(d.String())
}

// pull pulls ref (relative to the proxy, e.g. "local/app:v1") with
// go-containerregistry and reads every layer, which checks their digests.
func (e *env) pull(ref string) error {
	r, err := name.ParseReference(e.host+"/"+ref, name.Insecure)
	if err != nil {
		return err
	}
	img, err := remote.Image(r, remote.WithContext(e.t.Context()))
	if err != nil {
		return err
	}
	if _, err := img.RawConfigFile(); err != nil {
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
		_, err = io.Copy(io.Discard, rc)
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// get sends a request to the proxy and returns status, headers and body.
func (e *env) do(method, path string, hdr http.Header) (int, http.Header, []byte) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.proxy.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// ociErr decodes the first error of an OCI error body.
func ociErr(t testing.TB, b []byte) (code, msg string) {
	t.Helper()
	var body struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(b, &body); err != nil || len(body.Errors) == 0 {
		t.Fatalf("not an OCI error body: %q", b)
	}
	return body.Errors[0].Code, body.Errors[0].Message
}

// decisions returns the decision log lines.
func (e *env) decisions() []map[string]any {
	var out []map[string]any
	for _, line := range bytes.Split(e.logs.Bytes(), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && m["msg"] == "decision" {
			out = append(out, m)
		}
	}
	return out
}

// recorder is an upstream handler that records every request.
type recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
	h    http.Handler
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Clone(context.Background()))
	r.mu.Unlock()
	r.h.ServeHTTP(w, req)
}

func (r *recorder) count(pathHas string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, q := range r.reqs {
		if strings.Contains(q.URL.Path, pathHas) {
			n++
		}
	}
	return n
}

func (r *recorder) all() []*http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*http.Request(nil), r.reqs...)
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func manifestPath(repo, ref string) string { return fmt.Sprintf("/v2/%s/manifests/%s", repo, ref) }
