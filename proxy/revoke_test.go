package proxy_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// revokerPolicy: release's keys may also be revoked by the security key
// (inline PEM, SECURITY below); ops names no revoker.
const revokerPolicy = `
signers:
  release:
    keys: [release.pub]
    revokers:
      - |
SECURITY
  ops: {keys: [ops.pub]}
rules:
  - match: "local/ops/**"
    require: [ops]
  - match: "**"
    require: [release]
`

// newRevokerEnv starts an env whose policy designates security as the
// revoker of release's keys.
func newRevokerEnv(t *testing.T, security signature.SignerVerifier) *env {
	t.Helper()
	pub, err := security.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	indented := "        " + strings.ReplaceAll(strings.TrimSpace(string(pemBytes)), "\n", "\n        ")
	pol := strings.Replace(revokerPolicy, "SECURITY", indented, 1)
	return newEnv(t, func(c *envConfig) { c.policy = pol })
}

// revoke submits the revocation of key keyID signed by sv.
func (e *env) revoke(sv signature.Signer, keyID string) uint64 {
	e.t.Helper()
	st, err := notarize.NewKeyRevocation(keyID, "release", "security", "stolen", time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	ent, err := notarize.Sign(e.t.Context(), sv, st)
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := e.lc.Submit(e.t.Context(), ent)
	if err != nil {
		e.t.Fatal(err)
	}
	return res.Index
}

// signAt is sign with a signed timestamp of the test's choosing (a thief's clock).
func (e *env) signAt(sv signature.Signer, d notarize.Digest, s notarize.Status, at time.Time) {
	e.t.Helper()
	ent, err := notarize.Sign(e.t.Context(), sv, notarize.NewStatement(d, "test", notarize.Predicate{
		Status: s, Kind: notarize.KindImage, Name: "release", Timestamp: at.UTC(),
	}))
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.lc.Submit(e.t.Context(), ent); err != nil {
		e.t.Fatal(err)
	}
}

// refused asserts that ref's manifest is refused 403 with a message
// holding want.
func (e *env) refused(repo, tag, want string) {
	e.t.Helper()
	code, _, body := e.do(http.MethodGet, manifestPath(repo, tag), nil)
	if code != http.StatusForbidden {
		e.t.Fatalf("%s:%s: %d, want 403 (%s)", repo, tag, code, body)
	}
	if _, msg := ociErr(e.t, body); !strings.Contains(msg, want) {
		e.t.Fatalf("%s:%s refused for another reason: %s, want %q", repo, tag, msg, want)
	}
}

// TestProxyKeyRevocation: with the replica following a real ledger, an
// image signed by release is served; release's key is revoked by itself;
// then its thief signs "trusted", backdated a year, on a new image, a
// "trusted" over an image release had untrusted before, and a "trusted"
// about the key itself (un-revoke). The proxy refuses both images within
// the replica's follow interval, and still serves the image approved
// before the revocation.
func TestProxyKeyRevocation(t *testing.T) {
	e := newEnv(t)
	e.runReplica()
	kid := notarizetest.KeyID(t, e.release)
	old := digestOf(t, e.push("app", "old"))
	vetoed := digestOf(t, e.push("app", "vetoed"))
	e.sign(e.release, old, notarize.StatusTrusted)
	e.signAt(e.release, vetoed, notarize.StatusUntrusted, time.Now().Add(-time.Hour))
	e.sync()
	if err := e.pull("local/app:old"); err != nil {
		t.Fatalf("approved image before the revocation: %v", err)
	}

	rev := e.revoke(e.release, kid)
	// The thief, after the revocation.
	stolen := digestOf(t, e.push("app", "stolen"))
	e.signAt(e.release, stolen, notarize.StatusTrusted, time.Now().Add(-365*24*time.Hour))
	e.signAt(e.release, vetoed, notarize.StatusTrusted, time.Now())
	kd, _ := notarize.KeyRevocationDigest(kid)
	e.signAt(e.release, kd, notarize.StatusTrusted, time.Now())

	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _, _ := e.do(http.MethodGet, manifestPath("local/app", "stolen"), nil)
		if code == http.StatusForbidden {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the thief's backdated statement still served 5 s after the revocation (%d)", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.sync()
	e.refused("local/app", "stolen", "revoked at log index "+strconv.FormatUint(rev, 10))
	e.refused("local/app", "vetoed", "is UNTRUSTED by release")
	if err := e.pull("local/app:old"); err != nil {
		t.Fatalf("image approved before the revocation: %v", err)
	}
}

// TestProxyRevocationWhoMayRevoke: a thief's revocation of release's key
// (a key the thief holds, outside the policy) and one by ops (a policy
// signer, but not release's revoker) change nothing; one by the policy's
// revoker for release does.
func TestProxyRevocationWhoMayRevoke(t *testing.T) {
	security, thief := newSigner(t), newSigner(t)
	e := newRevokerEnv(t, security)
	kid := notarizetest.KeyID(t, e.release)
	e.sign(e.release, digestOf(t, e.push("app", "v1")), notarize.StatusTrusted)

	e.revoke(thief, kid)
	e.revoke(e.ops, kid)
	later := digestOf(t, e.push("app", "v2"))
	e.sign(e.release, later, notarize.StatusTrusted)
	e.sync()
	for _, tag := range []string{"v1", "v2"} {
		if err := e.pull("local/app:" + tag); err != nil {
			t.Fatalf("%s after revocations by keys that may not revoke release: %v", tag, err)
		}
	}

	rev := e.revoke(security, kid)
	v3 := digestOf(t, e.push("app", "v3"))
	e.signAt(e.release, v3, notarize.StatusTrusted, time.Now().Add(-time.Hour))
	e.sync()
	e.refused("local/app", "v3", "revoked at log index "+strconv.FormatUint(rev, 10))
	for _, tag := range []string{"v1", "v2"} {
		if err := e.pull("local/app:" + tag); err != nil {
			t.Fatalf("%s, signed before the revoker's revocation: %v", tag, err)
		}
	}
}
