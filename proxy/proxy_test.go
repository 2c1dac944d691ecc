package proxy_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/notarize/docker-notarize/notarize"
)

func TestPullThroughProxy(t *testing.T) {
	e := newEnv(t)
	signed := digestOf(t, e.push("app/signed", "v1"))
	unsigned := digestOf(t, e.push("app/unsigned", "v1"))
	untrusted := digestOf(t, e.push("app/untrusted", "v1"))
	e.sign(e.release, signed, notarize.StatusTrusted)
	e.sign(e.release, untrusted, notarize.StatusTrusted)
	e.sign(e.release, untrusted, notarize.StatusUntrusted)
	e.sign(e.ops, unsigned, notarize.StatusTrusted) // a signer the rule does not require
	e.sync()

	for _, tc := range []struct {
		name, ref string
		want      string // "" = pulls; else a substring of the DENIED message
	}{
		{"signed by prefix", "local/app/signed:v1", ""},
		{"signed by default upstream", "app/signed:v1", ""},
		{"signed by digest", "local/app/signed@" + string(signed), ""},
		{"unsigned", "local/app/unsigned:v1", string(unsigned) + " is UNKNOWN: no statement from release"},
		{"untrusted", "local/app/untrusted:v1", string(untrusted) + " is UNTRUSTED by release ("},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := e.pull(tc.ref)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("pull %s: %v", tc.ref, err)
				}
				return
			}
			var te *transport.Error
			if !errors.As(err, &te) || te.StatusCode != http.StatusForbidden {
				t.Fatalf("pull %s = %v, want 403", tc.ref, err)
			}
			if len(te.Errors) == 0 || te.Errors[0].Code != transport.DeniedErrorCode || !strings.Contains(te.Errors[0].Message, tc.want) {
				t.Fatalf("pull %s: %+v, want DENIED with %q", tc.ref, te.Errors, tc.want)
			}
		})
	}

	// containerd's ns routing, by the upstream's host and by its name.
	for _, ns := range []string{e.upHost, "local"} {
		code, hdr, body := e.do(http.MethodGet, manifestPath("app/signed", "v1")+"?ns="+ns, nil)
		if code != http.StatusOK || hdr.Get("Docker-Content-Digest") != string(signed) || notarize.DigestOf(body) != signed {
			t.Fatalf("ns=%s: %d %s", ns, code, hdr.Get("Docker-Content-Digest"))
		}
	}
	// One decision line per manifest request, with the fields operators need.
	var found bool
	for _, d := range e.decisions() {
		if d["digest"] == string(untrusted) {
			found = true
			for k, want := range map[string]any{"upstream": "local", "repo": "app/untrusted", "verdict": "UNTRUSTED", "mode": "enforce", "rule": "**", "signer": "release", "allowed": false} {
				if d[k] != want {
					t.Errorf("decision %s = %v, want %v (%v)", k, d[k], want, d)
				}
			}
		}
	}
	if !found {
		t.Fatal("no decision logged for the untrusted image")
	}
}

func TestMultiArch(t *testing.T) {
	e := newEnv(t)
	idx := e.pushIndex("multi", "v1", 2)
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	index := digestOf(t, idx)
	child0, child1 := notarize.Digest(im.Manifests[0].Digest.String()), notarize.Digest(im.Manifests[1].Digest.String())

	// A child asked for before its index was seen is judged alone.
	if code, _, _ := e.do(http.MethodGet, manifestPath("local/multi", string(child0)), nil); code != http.StatusForbidden {
		t.Fatalf("child before index: %d, want 403", code)
	}
	e.signKind(e.release, index, notarize.StatusTrusted, notarize.KindIndex, notarize.MediaTypeOCIIndex)
	e.sync()
	r, _ := name.ParseReference(e.host+"/local/multi:v1", name.Insecure)
	got, err := remote.Index(r, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("pull index: %v", err)
	}
	if d := digestOf(t, got); d != index {
		t.Fatalf("index digest %s, want %s", d, index)
	}
	for _, c := range []notarize.Digest{child0, child1} {
		if err := e.pull("local/multi@" + string(c)); err != nil {
			t.Fatalf("child %s of a trusted index: %v", c, err)
		}
	}
	var via bool
	for _, d := range e.decisions() {
		via = via || d["digest"] == string(child0) && d["via_index"] == string(index) && d["verdict"] == "TRUSTED"
	}
	if !via {
		t.Fatal("no decision logged as trusted through the index")
	}
	// A child's own UNTRUSTED wins over its trusted index.
	e.sign(e.release, child1, notarize.StatusUntrusted)
	e.sync()
	if code, _, body := e.do(http.MethodGet, manifestPath("local/multi", string(child1)), nil); code != http.StatusForbidden {
		t.Fatalf("untrusted child of a trusted index: %d %s", code, body)
	}
	// Untrusting the index stops its children.
	e.sign(e.release, index, notarize.StatusUntrusted)
	e.sync()
	code, _, body := e.do(http.MethodGet, manifestPath("local/multi", string(child0)), nil)
	if code != http.StatusForbidden {
		t.Fatalf("child of an untrusted index: %d %s", code, body)
	}
}

func TestRevocationWithinTwoSeconds(t *testing.T) {
	e := newEnv(t)
	e.runReplica()
	d := digestOf(t, e.push("rev", "v1"))
	e.sign(e.release, d, notarize.StatusTrusted)
	deadline := time.Now().Add(5 * time.Second)
	for e.pull("local/rev:v1") != nil {
		if time.Now().After(deadline) {
			t.Fatal("trusted image not served within 5 s of signing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.sign(e.release, d, notarize.StatusUntrusted)
	start := time.Now()
	for {
		code, _, body := e.do(http.MethodGet, manifestPath("local/rev", "v1"), nil)
		if code == http.StatusForbidden {
			if _, msg := ociErr(t, body); !strings.Contains(msg, "UNTRUSTED by release") {
				t.Fatalf("denied for another reason: %s", msg)
			}
			break
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("still served %v after the untrust receipt", time.Since(start))
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("untrust enforced %v after its receipt", time.Since(start).Round(time.Millisecond))
}

func TestAuditAndOffModes(t *testing.T) {
	e := newEnv(t)
	audit := digestOf(t, e.push("audit/app", "v1"))
	digestOf(t, e.push("off/app", "v1"))
	if err := e.pull("local/audit/app:v1"); err != nil {
		t.Fatalf("audit mode refused an unsigned image: %v", err)
	}
	if err := e.pull("local/off/app:v1"); err != nil {
		t.Fatalf("off mode refused an unsigned image: %v", err)
	}
	var logged bool
	for _, d := range e.decisions() {
		if d["digest"] == string(audit) {
			logged = d["mode"] == "audit" && d["verdict"] == "UNKNOWN" && d["allowed"] == true
		}
	}
	if !logged {
		t.Fatalf("audit decision not logged as UNKNOWN/audit/allowed: %v", e.decisions())
	}
	// The ops area requires ops, not release.
	ops := digestOf(t, e.push("ops/app", "v1"))
	e.sign(e.release, ops, notarize.StatusTrusted)
	e.sync()
	if err := e.pull("local/ops/app:v1"); err == nil {
		t.Fatal("release's statement accepted where the rule requires ops")
	}
	e.sign(e.ops, ops, notarize.StatusTrusted)
	e.sync()
	if err := e.pull("local/ops/app:v1"); err != nil {
		t.Fatal(err)
	}
}

func TestPushesRefused(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ method, path string }{
		{http.MethodPut, manifestPath("local/app", "v1")},
		{http.MethodDelete, manifestPath("local/app", "v1")},
		{http.MethodPost, "/v2/local/app/blobs/uploads/"},
		{http.MethodPost, "/v2/local/app/blobs/uploads/?mount=sha256:" + strings.Repeat("a", 64) + "&from=other"},
		{http.MethodPatch, "/v2/local/app/blobs/uploads/123"},
		{http.MethodPut, "/v2/local/app/blobs/uploads/123?digest=sha256:" + strings.Repeat("a", 64)},
		{http.MethodDelete, "/v2/local/app/blobs/sha256:" + strings.Repeat("a", 64)},
		{http.MethodGet, "/v2/_catalog"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			code, _, body := e.do(tc.method, tc.path, nil)
			if c, _ := ociErr(t, body); code != http.StatusMethodNotAllowed || c != "UNSUPPORTED" {
				t.Fatalf("%d %s, want 405 UNSUPPORTED", code, body)
			}
		})
	}
	img, _ := random.Image(100, 1)
	r, _ := name.ParseReference(e.host+"/local/pushed:v1", name.Insecure)
	if err := remote.Write(r, img, remote.WithContext(t.Context())); err == nil {
		t.Fatal("push through the proxy succeeded")
	}
}

func TestStaleTrustDataFailsClosed(t *testing.T) {
	clk := &testClock{now: time.Now()}
	e := newEnv(t, withMaxStaleness(time.Minute), withClock(clk.Now))
	d := digestOf(t, e.push("stale", "v1"))
	audit := digestOf(t, e.push("audit/stale", "v1"))
	e.sign(e.release, d, notarize.StatusTrusted)
	e.sign(e.release, audit, notarize.StatusTrusted)
	e.sync()
	if err := e.pull("local/stale:v1"); err != nil {
		t.Fatal(err)
	}
	e.ledger.Stop()
	clk.Add(30 * time.Second)
	if _, err := e.replica.Sync(t.Context()); err == nil {
		t.Fatal("sync with the ledger down succeeded")
	}
	if err := e.pull("local/stale:v1"); err != nil {
		t.Fatalf("within max staleness: %v", err)
	}
	clk.Add(31 * time.Second)
	if _, err := e.replica.Sync(t.Context()); err == nil {
		t.Fatal("sync with the ledger down succeeded")
	}
	code, _, body := e.do(http.MethodGet, manifestPath("local/stale", "v1"), nil)
	c, msg := ociErr(t, body)
	if code != http.StatusServiceUnavailable || c != "UNAVAILABLE" || !strings.Contains(msg, "stale") || !strings.Contains(msg, string(d)) {
		t.Fatalf("stale replica: %d %s %s", code, c, msg)
	}
	// An audit rule still serves, and logs the decision as unverifiable.
	if err := e.pull("local/audit/stale:v1"); err != nil {
		t.Fatalf("audit mode with stale data: %v", err)
	}
	if code, _, _ := e.do(http.MethodGet, "/healthz", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("healthz with stale data: %d", code)
	}
}

func TestMetricsAndStats(t *testing.T) {
	e := newEnv(t)
	d := digestOf(t, e.push("m", "v1"))
	e.sign(e.release, d, notarize.StatusTrusted)
	e.sync()
	for i := range 3 {
		if err := e.pull("local/m:v1"); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			// The first pull's blobs are committed to the cache just after
			// their last byte was sent: wait for them (config and two layers), so
			// that the next pulls hit.
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				_, _, m := e.do(http.MethodGet, "/metrics", nil)
				if strings.Contains(string(m), "\nnotarize_proxy_blob_cache_blobs 3\n") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the first pull's three blobs were not cached within 5s")
				}
			}
		}
	}
	e.do(http.MethodGet, manifestPath("local/nope", "v1"), nil)
	_, _, metrics := e.do(http.MethodGet, "/metrics", nil)
	for _, want := range []string{
		`notarize_proxy_decisions_total{mode="enforce",upstream="local",verdict="TRUSTED"} 3`,
		`notarize_proxy_replica_size 1`,
		`notarize_proxy_cache_requests_total{cache="blob",result="hit"}`,
		`notarize_proxy_request_duration_seconds_bucket{code="200",method="GET",route="manifests"`,
		`notarize_proxy_replica_age_seconds`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	code, _, body := e.do(http.MethodGet, "/notarize/v1/stats?digest="+string(d), nil)
	if code != http.StatusOK || !strings.Contains(string(body), `"allowed": 3`) || !strings.Contains(string(body), `"local/m"`) {
		t.Fatalf("stats: %d %s", code, body)
	}
}

func TestTagsAndReferrers(t *testing.T) {
	e := newEnv(t)
	e.push("tags", "v1")
	e.push("tags", "v2")
	code, _, body := e.do(http.MethodGet, "/v2/local/tags/tags/list", nil)
	if code != http.StatusOK || !strings.Contains(string(body), `"v1"`) || !strings.Contains(string(body), `"v2"`) {
		t.Fatalf("tags list: %d %s", code, body)
	}
	d := digestOf(t, e.push("refs", "v1"))
	code, hdr, body := e.do(http.MethodGet, "/v2/local/refs/referrers/"+string(d), nil)
	if code != http.StatusOK || !strings.Contains(hdr.Get("Content-Type"), "image.index") || !strings.Contains(string(body), `"manifests"`) {
		t.Fatalf("referrers: %d %s %s", code, hdr.Get("Content-Type"), body)
	}
}

// TestSignThenPullAtOnce: a pull right after `sign` (as a CI job that signs
// and deploys does) is served although the replica has not polled since:
// before refusing, the proxy makes its replica catch up with the ledger.
func TestSignThenPullAtOnce(t *testing.T) {
	e := newEnv(t) // the replica does not run: it syncs only when asked
	d := digestOf(t, e.push("fresh", "v1"))
	e.push("never", "v1")
	e.sign(e.release, d, notarize.StatusTrusted) // no e.sync()
	if err := e.pull("local/fresh:v1"); err != nil {
		t.Fatalf("pull right after sign: %v", err)
	}
	if err := e.pull("local/never:v1"); err == nil {
		t.Fatal("an unsigned image was served")
	}
	// A revocation is not looked for on an allowed pull (that would send
	// every pull to the ledger): it applies at the replica's next poll,
	// TestRevocationWithinTwoSeconds.
}
