package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// rotateAsset is one file signed by alice for the rotation tests.
type rotateAsset struct {
	path   string
	digest notarize.Digest
	status notarize.Status
}

// rotateAssets signs n files with alice: every third is then untrusted,
// every third after the first unsupported, the rest stay trusted.
func rotateAssets(t *testing.T, h *harness, n int) []rotateAsset {
	t.Helper()
	dir := t.TempDir()
	var as []rotateAsset
	for i := range n {
		b := fmt.Appendf(nil, "rotate asset %d of %s", i, t.Name())
		p := filepath.Join(dir, fmt.Sprintf("asset%d.bin", i))
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		h.mustRun(0, "sign", "--key", "alice", "--attr", "build=42", "file:"+p)
		a := rotateAsset{path: p, digest: notarize.DigestOf(b), status: notarize.StatusTrusted}
		switch i % 3 {
		case 0:
			h.mustRun(0, "untrust", "--key", "alice", "file:"+p)
			a.status = notarize.StatusUntrusted
		case 1:
			if i > 1 {
				h.mustRun(0, "unsupport", "--key", "alice", "file:"+p)
				a.status = notarize.StatusUnsupported
			}
		}
		as = append(as, a)
	}
	return as
}

// verdicts runs verify with only signer accepted for each asset and returns
// the exit codes.
func verdicts(h *harness, signer string, as []rotateAsset) []int {
	h.t.Helper()
	codes := make([]int, len(as))
	for i, a := range as {
		_, _, codes[i] = h.run("verify", "--signer", signer, "file:"+a.path)
	}
	return codes
}

func decodeRotate(t *testing.T, out string) rotateOutput {
	t.Helper()
	var o rotateOutput
	if err := json.Unmarshal([]byte(out), &o); err != nil {
		t.Fatalf("key rotate -o json printed %q: %v", out, err)
	}
	return o
}

// logSize returns the ledger's verified tree size, through verify -o json.
func logSize(h *harness, a rotateAsset) uint64 {
	h.t.Helper()
	out, _, _ := h.run("verify", "--signer", "alice", "-o", "json", "file:"+a.path)
	var o verifyOutput
	if err := json.Unmarshal([]byte(out), &o); err != nil || o.CheckpointSize == nil {
		h.t.Fatalf("verify -o json: %q: %v", out, err)
	}
	return *o.CheckpointSize
}

// TestKeyRotate: after a rotation from alice to bob, a policy naming only bob
// gives every asset the verdict a policy naming only alice gave; each
// re-statement carries alice's subject, attributes and the rotated-from
// attribute; a second run re-states nothing and appends nothing.
func TestKeyRotate(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, nil, "alice", "bob")
	as := rotateAssets(t, h, 7)
	before := verdicts(h, "alice", as)
	for i, c := range verdicts(h, "bob", as) {
		if c != VerdictExitCode(notarize.Unknown) {
			t.Fatalf("asset %d: bob's verdict before rotation exits %d, want UNKNOWN", i, c)
		}
	}

	out, errOut, code := h.run("key", "rotate", "--dry-run", "-o", "json", "alice", "bob")
	o := decodeRotate(t, out)
	if code != 0 || !o.DryRun || o.Restated != len(as) || o.SchemaVersion != schemaVersion {
		t.Fatalf("dry run: exit %d %+v\n%s", code, o, errOut)
	}
	for _, d := range o.Digests {
		if d.Action != rotateWouldRestate || d.LogIndex != nil {
			t.Fatalf("dry run digest %+v", d)
		}
	}
	size := logSize(h, as[0])
	if verdicts(h, "bob", as)[0] != VerdictExitCode(notarize.Unknown) {
		t.Fatal("--dry-run signed something")
	}

	out, errOut, code = h.run("key", "rotate", "-o", "json", "alice", "bob")
	o = decodeRotate(t, out)
	if code != 0 || o.Restated != len(as) || o.Current != 0 || o.Failed != 0 || o.OldKeyID != newHarnessKeyID(t, "alice") || o.NewKeyID != newHarnessKeyID(t, "bob") {
		t.Fatalf("rotate: exit %d %+v\n%s", code, o, errOut)
	}
	byDigest := map[string]rotateDigest{}
	for _, d := range o.Digests {
		byDigest[d.Digest] = d
	}
	for _, a := range as {
		d := byDigest[string(a.digest)]
		if d.Action != rotateRestated || d.Status != outputStatus(a.status) || d.LogIndex == nil {
			t.Fatalf("asset %s: %+v, want RESTATED %s", a.digest, d, a.status)
		}
	}
	after := verdicts(h, "bob", as)
	for i := range as {
		if after[i] != before[i] {
			t.Fatalf("asset %d (%s): bob's verdict exits %d after rotation, alice's was %d", i, as[i].status, after[i], before[i])
		}
	}
	if got := logSize(h, as[0]); got != size+uint64(len(as)) {
		t.Fatalf("log grew from %d to %d, want %d re-statements", size, got, len(as))
	}

	// The re-statement keeps alice's subject and attributes, and says where it comes from.
	out = h.mustRun(0, "inspect", "-o", "json", "file:"+as[1].path)
	var ins inspectOutput
	if err := json.Unmarshal([]byte(out), &ins); err != nil {
		t.Fatal(err)
	}
	last := ins.Statements[len(ins.Statements)-1]
	if last.KeyID != o.NewKeyID || last.Attributes["build"] != "42" || !strings.HasPrefix(last.Attributes[AttrRotatedFrom], o.OldKeyID+"@") || last.Subject == "" || last.Status != "TRUSTED" {
		t.Fatalf("re-statement %+v", last)
	}

	// Idempotent: nothing more to do, nothing appended.
	out, errOut, code = h.run("key", "rotate", "alice", "bob")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("0 re-stated, %d already current, 0 kept", len(as))) {
		t.Fatalf("second rotate: exit %d\n%s\n%s", code, out, errOut)
	}
	if got := logSize(h, as[0]); got != size+uint64(len(as)) {
		t.Fatalf("second rotate appended: log size %d, want %d", got, size+uint64(len(as)))
	}
}

// TestKeyRotateResumes: a rotation interrupted after some submissions exits
// 130; run again, it re-states the rest, and every digest ends re-stated
// exactly once (the log grew by one entry per digest).
func TestKeyRotateResumes(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, nil, "alice", "bob")
	as := rotateAssets(t, h, 12)
	before := verdicts(h, "alice", as)
	size := logSize(h, as[0])

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	u, _ := url.Parse(h.ledger.URL)
	proxy := httputil.NewSingleHostReverseProxy(u)
	var submits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxy.ServeHTTP(w, r)
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries && submits.Add(1) == 4 {
			cancel()
		}
	}))
	t.Cleanup(srv.Close)
	_, errOut, code := h.runContext(ctx, map[string]string{EnvLedger: srv.URL}, "key", "rotate", "--jobs", "2", "alice", "bob")
	if code != ExitInterrupted || !strings.Contains(errOut, "run it again") {
		t.Fatalf("interrupted rotate: exit %d, want %d\n%s", code, ExitInterrupted, errOut)
	}
	done := logSize(h, as[0]) - size
	if done == 0 || done >= uint64(len(as)) {
		t.Fatalf("interrupted after %d of %d re-statements: the test wants a partial run", done, len(as))
	}

	out, errOut, code := h.run("key", "rotate", "-o", "json", "alice", "bob")
	o := decodeRotate(t, out)
	if code != 0 || o.Restated+o.Current != len(as) || uint64(o.Current) != done {
		t.Fatalf("resumed rotate: exit %d, %d re-stated + %d current, want %d in all, %d current\n%s", code, o.Restated, o.Current, len(as), done, errOut)
	}
	if got := logSize(h, as[0]); got != size+uint64(len(as)) {
		t.Fatalf("log grew by %d, want %d: a digest was re-stated twice", got-size, len(as))
	}
	after := verdicts(h, "bob", as)
	for i := range as {
		if after[i] != before[i] {
			t.Fatalf("asset %d: bob exits %d, alice did %d", i, after[i], before[i])
		}
	}
}

// TestKeyRotateStaleListing: a front whose key lookup lists alice's older
// "trusted" statement about an asset she has since untrusted (logged and
// signed, so the page verifies) cannot make bob trust it: the status carried
// over is alice's proven current one.
func TestKeyRotateStaleListing(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, nil, "alice", "bob")
	as := rotateAssets(t, h, 3) // as[0] is untrusted after being trusted
	ds := []notarize.Digest{as[0].digest, as[1].digest, as[2].digest}
	if ds[1] < ds[0] {
		ds[0], ds[1] = ds[1], ds[0]
	}
	if ds[2] < ds[1] {
		ds[1], ds[2] = ds[2], ds[1]
	}
	if ds[1] < ds[0] {
		ds[0], ds[1] = ds[1], ds[0]
	}
	front := &lsFront{t: t, ledger: h.ledger.URL, digests: ds, perPage: 10}
	stale := as[0].digest
	front.set(func(_ int, r *api.KeyDigestsResponse) {
		for i := range r.Entries {
			e, _ := notarize.ParseEntry(r.Entries[i].Entry)
			if v, err := e.VerifyLogged(); err == nil && v.Statement.Digest() == stale {
				hist := front.history(stale, r.KeyID)
				r.Entries[i] = hist.Entries[0] // the older "trusted" statement
				r.Checkpoint = hist.Checkpoint
			}
		}
	})
	srv := httptest.NewServer(front)
	t.Cleanup(srv.Close)
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: srv.URL}, "key", "rotate", "-o", "json", "alice", "bob")
	o := decodeRotate(t, out)
	if code != 0 || o.Restated != 3 {
		t.Fatalf("rotate through the front: exit %d %+v\n%s", code, o, errOut)
	}
	for _, d := range o.Digests {
		if d.Digest == string(stale) && d.Status != "UNTRUSTED" {
			t.Fatalf("the stale listing was carried over: %+v", d)
		}
	}
	if c := verdicts(h, "bob", as[:1])[0]; c != VerdictExitCode(notarize.Untrusted) {
		t.Fatalf("bob's verdict on the untrusted asset exits %d, want UNTRUSTED", c)
	}
}

// TestKeyRotateUsageErrors: the same key twice, a NEW that cannot sign (an
// imported public key), an unknown key and bad flags exit 125 before any
// network call (the ledger URL is unreachable).
func TestKeyRotateUsageErrors(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, nil, "alice", "bob")
	pub, err := os.ReadFile(filepath.Join("testdata", "keys", "bob.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.home, "keys", "carol.pub"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{EnvLedger: "http://127.0.0.1:1"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"alice", "alice"}, "same key"},
		{[]string{"alice", "carol"}, "cannot sign"},
		{[]string{"alice", "nobody"}, "nobody"},
		{[]string{"nobody", "bob"}, "nobody"},
		{[]string{"alice"}, ""},
		{[]string{"--jobs", "0", "alice", "bob"}, "--jobs"},
		{[]string{"-o", "yaml", "alice", "bob"}, "--output"},
	} {
		_, errOut, code := h.runWithEnv(env, append([]string{"key", "rotate"}, tc.args...)...)
		if code != ExitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("key rotate %v: exit %d, want %d with %q\n%s", tc.args, code, ExitUsage, tc.want, errOut)
		}
	}
}

// TestKeyRotateRateLimited: a ledger that refuses submissions for its rate
// limits (HTTP 429 RATE_LIMITED with Retry-After, as the ledger answers) is
// tried again after a wait: every digest ends re-stated, none failed.
func TestKeyRotateRateLimited(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, nil, "alice", "bob")
	as := rotateAssets(t, h, 4)
	u, _ := url.Parse(h.ledger.URL)
	proxy := httputil.NewSingleHostReverseProxy(u)
	var refused atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries && refused.Add(1) <= 3 {
			w.Header().Set("Content-Type", api.MediaTypeJSON)
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			_ = json.NewEncoder(w).Encode(api.ErrorResponse{Code: api.CodeRateLimited, Message: "key over its rate limit"})
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: srv.URL}, "key", "rotate", "-o", "json", "alice", "bob")
	o := decodeRotate(t, out)
	if code != 0 || o.Restated != len(as) || o.Failed != 0 || refused.Load() < 3 {
		t.Fatalf("rotate through a rate-limited ledger: exit %d %+v (%d refused)\n%s", code, o, refused.Load(), errOut)
	}
}

// TestKeyRotateReportsFailures: a digest the ledger keeps refusing is
// FAILED in the output and the summary, the others are re-stated, and the
// exit code is 1; run again, only it is left to do.
func TestKeyRotateReportsFailures(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, nil, "alice", "bob")
	as := rotateAssets(t, h, 3)
	u, _ := url.Parse(h.ledger.URL)
	proxy := httputil.NewSingleHostReverseProxy(u)
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == api.PathEntries && n.Add(1) == 1 {
			w.Header().Set("Content-Type", api.MediaTypeJSON)
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(api.ErrorResponse{Code: api.CodeBadRequest, Message: "refused"})
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: srv.URL}, "key", "rotate", "alice", "bob")
	if code != ExitError || !strings.Contains(out, "2 re-stated, 0 already current, 0 kept (NEW's newer statement differs), 1 failed") || !strings.Contains(out, "FAILED") || !strings.Contains(errOut, "could not re-state") {
		t.Fatalf("rotate with one refusal: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = h.run("key", "rotate", "alice", "bob")
	if code != 0 || !strings.Contains(out, "1 re-stated, 2 already current") {
		t.Fatalf("second rotate: exit %d\n%s\n%s", code, out, errOut)
	}
	_ = as
}

// TestKeyRotateKeepsNewerDecision: after a rotation, NEW untrusts an asset
// OLD still trusts; a second rotation keeps NEW's later revocation (KEPT)
// instead of re-stating OLD's older "trusted" over it.
func TestKeyRotateKeepsNewerDecision(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, nil, "alice", "bob")
	as := rotateAssets(t, h, 3) // as[1] and as[2] trusted
	h.mustRun(0, "key", "rotate", "alice", "bob")
	h.mustRun(0, "untrust", "--key", "bob", "file:"+as[1].path)

	out, errOut, code := h.run("key", "rotate", "-o", "json", "alice", "bob")
	o := decodeRotate(t, out)
	if code != 0 || o.Kept != 1 || o.Current != 2 || o.Restated != 0 {
		t.Fatalf("second rotate: exit %d %+v\n%s", code, o, errOut)
	}
	for _, d := range o.Digests {
		if d.Digest == string(as[1].digest) && d.Action != rotateKept {
			t.Fatalf("bob's later revocation: %+v, want KEPT", d)
		}
	}
	if c := verdicts(h, "bob", as[1:2])[0]; c != VerdictExitCode(notarize.Untrusted) {
		t.Fatalf("bob's revocation was overridden: verify exits %d", c)
	}
}
