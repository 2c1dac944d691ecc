package plugin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
)

// thief holds a copy of a test key's private key and writes to the
// harness's ledger directly, with the timestamps it likes.
type thief struct {
	t      *testing.T
	signer signature.Signer
	keyID  string
	client *ledgerclient.Client
}

func newThief(t *testing.T, h *harness, key string) *thief {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "keys", key+".key"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadSigner(b, []byte(testPassword))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := s.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	id, err := notarize.KeyID(pub)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: h.ledger.URL, Home: t.TempDir(), VerifierKey: h.ledger.VerifierKey})
	if err != nil {
		t.Fatal(err)
	}
	return &thief{t: t, signer: s, keyID: id, client: c}
}

// state records st with the given kind and signed timestamp.
func (th *thief) state(d notarize.Digest, st notarize.Status, kind string, at time.Time) uint64 {
	th.t.Helper()
	e, err := notarize.Sign(th.t.Context(), th.signer, notarize.NewStatement(d, "x", notarize.Predicate{Status: st, Kind: kind, Name: "alice", Timestamp: at.UTC()}))
	if err != nil {
		th.t.Fatal(err)
	}
	res, err := th.client.Submit(th.t.Context(), e)
	if err != nil {
		th.t.Fatal(err)
	}
	return res.Index
}

// writeFile writes content to a new file and returns its file: reference
// and digest.
func writeFile(t *testing.T, name, content string) (string, notarize.Digest) {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return "file:" + p, notarize.DigestOf([]byte(content))
}

// TestKeyRevokeStopsThief: alice's key is stolen. Before the revocation
// she trusted "approved" and untrusted "vetoed". She revokes her key
// (confirmation required: without a terminal, --yes). Her thief then signs
// with it: "trusted", backdated a year, on a new file; "trusted" over
// "vetoed", dated after her untrust; and "trusted" about the key itself
// (an un-revoke). verify --signer alice: approved stays TRUSTED, the new
// file is UNKNOWN, vetoed stays UNTRUSTED, and the output names the
// revocation; -o json lists it.
func TestKeyRevokeStopsThief(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	approved, _ := writeFile(t, "approved", "approved before the theft")
	vetoed, vetoedD := writeFile(t, "vetoed", "vetoed before the theft")
	stolen, stolenD := writeFile(t, "stolen", "the thief's build")
	h.mustRun(0, "sign", "--key", "alice", approved)
	h.mustRun(0, "untrust", "--key", "alice", vetoed)

	out, errOut, code := h.run("key", "revoke", "alice")
	if code != ExitUsage || !strings.Contains(errOut, "--yes") {
		t.Fatalf("revoke without a terminal or --yes: exit %d\n%s%s", code, out, errOut)
	}
	h.mustRun(0, "verify", "--signer", "alice", approved) // nothing was recorded
	out = h.mustRun(0, "key", "revoke", "--yes", "--reason", "laptop stolen", "alice")
	if !strings.Contains(out, "Revoked key alice") || !strings.Contains(out, "laptop stolen") {
		t.Fatalf("revoke output:\n%s", out)
	}
	if again := h.mustRun(0, "key", "revoke", "--yes", "alice"); !strings.Contains(again, "Already revoked") {
		t.Fatalf("second revoke:\n%s", again)
	}

	th := newThief(t, h, "alice")
	year := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	th.state(stolenD, notarize.StatusTrusted, notarize.KindFile, year)
	th.state(vetoedD, notarize.StatusTrusted, notarize.KindFile, time.Now())
	kd, err := notarize.KeyRevocationDigest(th.keyID)
	if err != nil {
		t.Fatal(err)
	}
	th.state(kd, notarize.StatusTrusted, notarize.KindFile, time.Now())

	h.mustRun(0, "verify", "--signer", "alice", approved)
	out = h.mustRun(2, "verify", "--signer", "alice", stolen)
	if !strings.Contains(out, "revoked at log index") || !strings.Contains(out, "REVOKED:") {
		t.Fatalf("verify of the thief's file does not name the revocation:\n%s", out)
	}
	h.mustRun(1, "verify", "--signer", "alice", vetoed)

	if out := h.mustRun(0, "inspect", "--signer", "alice", stolen); !strings.Contains(out, "key revoked at") {
		t.Fatalf("inspect does not mark the thief's statement:\n%s", out)
	}
	insp := checkJSONOutput(t, compileSchema(t), "inspect", h.mustRun(0, "inspect", "-o", "json", "--signer", "alice", stolen), 0)
	if sts, _ := insp["statements"].([]any); len(sts) != 1 || sts[0].(map[string]any)["keyRevokedAt"] == nil {
		t.Fatalf("inspect -o json does not mark the thief's statement: %v", insp)
	}
	if out := h.mustRun(0, "inspect", "--signer", "alice", approved); strings.Contains(out, "key revoked at") {
		t.Fatalf("inspect marks a statement made before the revocation:\n%s", out)
	}
	ls := checkJSONOutput(t, compileSchema(t), "ls", h.mustRun(0, "ls", "-o", "json", "--signer", "alice"), 0)
	marked := 0
	for _, st := range ls["signers"].([]any)[0].(map[string]any)["statements"].([]any) {
		m := st.(map[string]any)
		if m["keyRevokedAt"] != nil {
			marked++
			if m["digest"] == string(notarize.DigestOf([]byte("approved before the theft"))) {
				t.Fatalf("ls marks the approved image: %v", m)
			}
		}
	}
	if marked != 3 { // stolen, vetoed and the un-revoke
		t.Fatalf("ls marks %d statements, want 3: %v", marked, ls)
	}
	var v struct {
		Status  string             `json:"status"`
		Revoked []revokedKeyOutput `json:"revoked"`
	}
	if err := json.Unmarshal([]byte(h.mustRun(2, "verify", "-o", "json", "--signer", "alice", stolen)), &v); err != nil {
		t.Fatal(err)
	}
	if v.Status != "UNKNOWN" || len(v.Revoked) != 1 || v.Revoked[0].KeyID != th.keyID || v.Revoked[0].RevokerKeyID != th.keyID {
		t.Fatalf("verify -o json = %+v", v)
	}
}

// TestKeyRevokeByRevoker: bob revokes alice's key with --revoker. It
// counts for verify only where bob is designated (--revoker bob); a
// revocation of alice's key by a key verify does not designate (the
// thief's own) never counts.
func TestKeyRevokeByRevoker(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice", "bob")
	later, laterD := writeFile(t, "later", "signed after the revocation")
	out := h.mustRun(0, "key", "revoke", "--yes", "--revoker", "bob", "alice")
	if !strings.Contains(out, "signed by bob") {
		t.Fatalf("revoke output:\n%s", out)
	}
	th := newThief(t, h, "alice")
	th.state(laterD, notarize.StatusTrusted, notarize.KindFile, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))

	h.mustRun(0, "verify", "--signer", "alice", later)                     // bob not designated: his revocation does not count
	h.mustRun(2, "verify", "--signer", "alice", "--revoker", "bob", later) // designated: it does
	if _, errOut, code := h.run("verify", "--signer", "alice", "--revoker", "carol", later); code != ExitUsage {
		t.Fatalf("--revoker naming no key: exit %d, want %d\n%s", code, ExitUsage, errOut)
	}

	// The key "alice" names a public key only: revoking it needs a revoker.
	h2 := newHarness(t, "bob")
	pub := filepath.Join(h2.home, "keys", "alice.pub")
	if b, err := os.ReadFile(filepath.Join("testdata", "keys", "alice.pub")); err != nil || os.WriteFile(pub, b, 0o600) != nil {
		t.Fatal("copy alice.pub:", err)
	}
	if _, errOut, code := h2.run("key", "revoke", "--yes", "alice"); code != ExitUsage || !strings.Contains(errOut, "--revoker") {
		t.Fatalf("revoke of a public-only key without --revoker: exit %d\n%s", code, errOut)
	}
}

// TestVerifyFrontHidesRevocation: a front before the ledger that drops
// alice's revocation from the lookup of her revocation digest makes verify
// exit 4, never TRUSTED on the thief's statement.
func TestVerifyFrontHidesRevocation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	later, laterD := writeFile(t, "later", "signed after the revocation")
	h.mustRun(0, "key", "revoke", "--yes", "alice")
	th := newThief(t, h, "alice")
	th.state(laterD, notarize.StatusTrusted, notarize.KindFile, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	h.mustRun(2, "verify", "--signer", "alice", later)

	kd, _ := notarize.KeyRevocationDigest(th.keyID)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, h.ledger.URL+r.URL.RequestURI(), r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK && strings.HasPrefix(r.URL.Path, api.PathDigests+string(kd)) {
			var lr api.LookupResponse
			if json.Unmarshal(body, &lr) == nil {
				lr.Entries = []api.LookupEntry{}
				body, _ = json.Marshal(&lr)
			}
		}
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(body)
	}))
	t.Cleanup(front.Close)
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "verify", "--signer", "alice", later)
	if code != ExitCouldNotVerify {
		t.Fatalf("revocation hidden: exit %d, want %d\n%s%s", code, ExitCouldNotVerify, out, errOut)
	}
	h.mustRun(2, "verify", "--signer", "alice", later) // the honest ledger still answers
}

// TestAuditHonoursRevocation: audit judges as verify does: after alice's
// key is revoked, her thief's backdated "trusted" on an image does not
// make it TRUSTED in the audit.
func TestAuditHonoursRevocation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	app := h.reg.host + "/app:v1"
	var v verifyOutput
	if err := json.Unmarshal([]byte(h.mustRun(2, "verify", "-o", "json", app)), &v); err != nil {
		t.Fatal(err)
	}
	h.mustRun(0, "key", "revoke", "--yes", "alice")
	th := newThief(t, h, "alice")
	th.state(notarize.Digest(v.Digest), notarize.StatusTrusted, notarize.KindImage, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))

	out, errOut, _ := h.run("audit", "-o", "json", "--all-tags", h.reg.host+"/app")
	var a struct {
		Subjects []struct {
			Digest, Verdict, Reason string
		} `json:"subjects"`
	}
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("%v\n%s%s", err, out, errOut)
	}
	if len(a.Subjects) != 1 || a.Subjects[0].Verdict != "UNKNOWN" || !strings.Contains(a.Subjects[0].Reason, "revoked at log index") {
		t.Fatalf("audit after the revocation: %+v", a.Subjects)
	}
}

// TestRotateAfterRevocation: alice's key is stolen and revoked; rotating
// alice to bob re-states what alice said before the revocation and never
// what her thief signed after it (REVOKED), which bob would otherwise
// vouch for; a revoked NEW is refused.
func TestRotateAfterRevocation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice", "bob")
	approved, _ := writeFile(t, "approved", "approved before the theft")
	stolen, stolenD := writeFile(t, "stolen", "the thief's build")
	h.mustRun(0, "sign", "--key", "alice", approved)
	h.mustRun(0, "key", "revoke", "--yes", "alice")
	th := newThief(t, h, "alice")
	th.state(stolenD, notarize.StatusTrusted, notarize.KindFile, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))

	schema := compileSchema(t)
	o := checkJSONOutput(t, schema, "keyRotate", h.mustRun(0, "key", "rotate", "-o", "json", "alice", "bob"), 0)
	actions := map[string]string{}
	for _, d := range o["digests"].([]any) {
		m := d.(map[string]any)
		actions[m["digest"].(string)] = m["action"].(string)
	}
	if actions[string(stolenD)] != "REVOKED" {
		t.Fatalf("the thief's statement: %v", actions)
	}
	h.mustRun(0, "verify", "--signer", "bob", approved)
	h.mustRun(2, "verify", "--signer", "bob", stolen)

	h.mustRun(0, "key", "revoke", "--yes", "bob")
	if _, errOut, code := h.run("key", "rotate", "alice", "bob"); code == 0 || !strings.Contains(errOut, "revoked") {
		t.Fatalf("rotate to a revoked NEW: exit %d\n%s", code, errOut)
	}
}

// TestAuditAndInspectHonourRevoker: bob, a revoker, revokes alice's key
// and her thief trusts an image afterwards. audit, inspect and ls count bob's
// revocation only when told to (--revoker bob, as verify): then audit does
// not say TRUSTED and inspect marks the thief's statement; without it,
// the thief's statement stands, as for verify.
func TestAuditAndInspectHonourRevoker(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice", "bob")
	app := h.reg.host + "/app:v1"
	var v verifyOutput
	if err := json.Unmarshal([]byte(h.mustRun(2, "verify", "-o", "json", "--signer", "alice", app)), &v); err != nil {
		t.Fatal(err)
	}
	h.mustRun(0, "key", "revoke", "--yes", "--revoker", "bob", "alice")
	th := newThief(t, h, "alice")
	th.state(notarize.Digest(v.Digest), notarize.StatusTrusted, notarize.KindImage, time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))

	audit := func(args ...string) string {
		t.Helper()
		out, errOut, _ := h.run(append([]string{"audit", "-o", "json", "--all-tags", "--signer", "alice"}, append(args, h.reg.host+"/app")...)...)
		var a struct {
			Subjects []struct{ Verdict, Reason string } `json:"subjects"`
		}
		if err := json.Unmarshal([]byte(out), &a); err != nil || len(a.Subjects) != 1 {
			t.Fatalf("audit %v: %v\n%s%s", args, err, out, errOut)
		}
		return a.Subjects[0].Verdict
	}
	if got := audit(); got != "TRUSTED" {
		t.Fatalf("audit without --revoker: %s (bob is designated by nobody: the thief's statement stands)", got)
	}
	if got := audit("--revoker", "bob"); got == "TRUSTED" {
		t.Fatal("audit --revoker bob counted the thief's statement after bob's revocation of alice's key")
	}

	inspect := func(args ...string) []statementOutput {
		t.Helper()
		var out inspectOutput
		if err := json.Unmarshal([]byte(h.mustRun(0, append([]string{"inspect", "-o", "json", "--signer", "alice"}, append(args, app)...)...)), &out); err != nil {
			t.Fatal(err)
		}
		return out.Statements
	}
	if st := inspect(); len(st) != 1 || st[0].KeyRevokedAt != nil {
		t.Fatalf("inspect without --revoker: %+v", st)
	}
	if st := inspect("--revoker", "bob"); len(st) != 1 || st[0].KeyRevokedAt == nil {
		t.Fatalf("inspect --revoker bob did not mark the thief's statement: %+v", st)
	}
	if _, errOut, code := h.run("inspect", "--all", "--revoker", "bob", app); code != ExitUsage {
		t.Fatalf("inspect --all --revoker: exit %d, want %d\n%s", code, ExitUsage, errOut)
	}

	ls := func(args ...string) lsOutput {
		t.Helper()
		var out lsOutput
		if err := json.Unmarshal([]byte(h.mustRun(0, append([]string{"ls", "-o", "json", "--signer", "alice"}, args...)...)), &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if o := ls(); len(o.Signers) != 1 || len(o.Signers[0].Statements) != 1 || o.Signers[0].Statements[0].KeyRevokedAt != nil || o.Team.Trusted != 1 {
		t.Fatalf("ls without --revoker: %+v", o)
	}
	if o := ls("--revoker", "bob"); len(o.Signers) != 1 || len(o.Signers[0].Statements) != 1 || o.Signers[0].Statements[0].KeyRevokedAt == nil || o.Team.Trusted != 0 {
		t.Fatalf("ls --revoker bob counted the thief's statement: %+v", o)
	}
}

// TestRotateRevokedDuringTheRun: alice's key is stolen while she rotates it
// to bob. Between the rotation's first look at the revocations and its
// lookup of one digest — alice had untrusted it — alice's key is revoked
// and the thief trusts that digest with a later timestamp. Rotate must not
// carry the thief's statement over to bob: the digest's answer comes from
// a larger log than the revocations rotate holds, so it asks for them
// again, and the thief's statement, after the revocation, does not count.
func TestRotateRevokedDuringTheRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice", "bob")
	vetoed, vetoedD := writeFile(t, "vetoed", "alice untrusted this")
	h.mustRun(0, "untrust", "--key", "alice", vetoed)
	th := newThief(t, h, "alice")
	kd, err := notarize.KeyRevocationDigest(th.keyID)
	if err != nil {
		t.Fatal(err)
	}
	var landed atomic.Bool
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, api.PathDigests+string(vetoedD)) && strings.HasSuffix(r.URL.Path, api.PathCurrentSuffix) && landed.CompareAndSwap(false, true) {
			// The theft lands now, before this lookup is answered.
			th.state(kd, notarize.StatusUntrusted, notarize.KindKey, time.Now())
			th.state(vetoedD, notarize.StatusTrusted, notarize.KindFile, time.Now().Add(time.Minute))
		}
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, h.ledger.URL+r.URL.RequestURI(), r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(front.Close)

	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "key", "rotate", "-o", "json", "alice", "bob")
	if !landed.Load() {
		t.Fatalf("the front never saw the digest's current lookup (exit %d)\n%s%s", code, out, errOut)
	}
	var o struct {
		Digests []struct{ Digest, Action, Status string } `json:"digests"`
	}
	if err := json.Unmarshal([]byte(out), &o); err != nil {
		t.Fatalf("%v\n%s%s", err, out, errOut)
	}
	if len(o.Digests) != 1 || o.Digests[0].Digest != string(vetoedD) || o.Digests[0].Status != "UNTRUSTED" {
		t.Fatalf("rotate carried over something else than alice's untrust from before the revocation: %+v", o.Digests)
	}
	if _, _, code := h.run("verify", "--signer", "bob", vetoed); code != VerdictExitCode(notarize.Untrusted) {
		t.Fatalf("verify --signer bob of the digest alice untrusted and her thief trusted: exit %d, want %d", code, VerdictExitCode(notarize.Untrusted))
	}
}
