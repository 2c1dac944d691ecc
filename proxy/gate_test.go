package proxy_test

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/upstream"
)

// recordedRegistry is a real in-process registry that records every
// request it gets, as upstream "rec".
type recordedRegistry struct {
	rec  *recorder
	srv  *httptest.Server
	host string
}

func newRecordedRegistry(t *testing.T) *recordedRegistry {
	t.Helper()
	r := &recordedRegistry{rec: &recorder{h: registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(true))}}
	r.srv = httptest.NewServer(r.rec)
	t.Cleanup(r.srv.Close)
	r.host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

func (r *recordedRegistry) config() upstream.Config {
	return upstream.Config{Name: "rec", URL: r.srv.URL, Keychain: anonymous()}
}

// write puts img at host/repo:tag.
func write(t *testing.T, host, repo, tag string, img v1.Image) {
	t.Helper()
	ref, err := name.ParseReference(host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
}

func randomImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// blobsOf returns the config and layer digests of img.
func blobsOf(t *testing.T, img v1.Image) []notarize.Digest {
	t.Helper()
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	out := []notarize.Digest{notarize.Digest(cfg.String())}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		out = append(out, digestOf(t, l))
	}
	return out
}

// wantBlobUnknown asserts that method on the blob answers 404 BLOB_UNKNOWN.
func (e *env) wantBlobUnknown(method, repo string, d notarize.Digest) {
	e.t.Helper()
	code, _, body := e.do(method, "/v2/"+repo+"/blobs/"+string(d), nil)
	if code != http.StatusNotFound {
		e.t.Fatalf("%s blob %s of %s: %d %s, want 404", method, d, repo, code, body)
	}
	if method == http.MethodGet {
		if c, _ := ociErr(e.t, body); c != "BLOB_UNKNOWN" {
			e.t.Fatalf("%s blob %s of %s: %s, want BLOB_UNKNOWN", method, d, repo, body)
		}
	}
}

// manifestWithLayers returns an OCI image manifest whose layers are ds.
func manifestWithLayers(t testing.TB, ds ...notarize.Digest) []byte {
	t.Helper()
	var layers []string
	for _, d := range ds {
		layers = append(layers, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":1}`, d))
	}
	return fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":2},"layers":[%s]}`,
		notarize.DigestOf([]byte("{}")), strings.Join(layers, ","))
}

// admit opens the blob gate for ds at evil/REPO the way a client does: the
// evil upstream serves a manifest listing them, release signs it and it is
// pulled through the proxy. It leaves ev serving that manifest.
func admit(t *testing.T, e *env, ev *evil, repo string, ds ...notarize.Digest) {
	t.Helper()
	m := manifestWithLayers(t, ds...)
	ev.serve(func(w http.ResponseWriter, r *http.Request) { serveManifest(w, m) })
	e.sign(e.release, notarize.DigestOf(m), notarize.StatusTrusted)
	e.sync()
	// On a connection of its own: a kept-alive one would let the next
	// request (the blob tests') be retried by the client when the proxy
	// aborts it before its first byte, and count as a second upstream fetch.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, e.proxy.URL+manifestPath("evil/"+repo, "admit"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK {
		t.Fatalf("admitting manifest: %d %s", resp.StatusCode, body)
	}
}

// TestRefusedManifestUnderAnotherRepository: the 403 names the digest of a
// refused manifest; asking for that digest under a repository whose rule
// is audit or off must not serve the bytes fetched for the refused one.
// They are served there only once that repository's upstream serves them.
func TestRefusedManifestUnderAnotherRepository(t *testing.T) {
	e := newEnv(t)
	img := e.push("secret/app", "v1")
	d := digestOf(t, img)
	code, _, body := e.do(http.MethodGet, manifestPath("local/secret/app", "v1"), nil)
	if _, msg := ociErr(t, body); code != http.StatusForbidden || !strings.Contains(msg, string(d)) {
		t.Fatalf("unsigned manifest: %d %s", code, body)
	}
	for _, repo := range []string{"local/audit/x", "local/off/x"} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			code, _, body := e.do(method, manifestPath(repo, string(d)), nil)
			if code == http.StatusOK || bytes.Contains(body, []byte(`"layers"`)) {
				t.Fatalf("%s %s@%s: %d: the refused manifest was served under another repository", method, repo, d, code)
			}
			if code != http.StatusNotFound {
				t.Fatalf("%s %s@%s: %d %s, want 404 (the upstream has no such manifest there)", method, repo, d, code, body)
			}
		}
		e.wantBlobUnknown(http.MethodGet, repo, blobsOf(t, img)[1])
	}
	// Where the upstream does serve it, the audit rule applies.
	write(t, e.upHost, "audit/y", "v1", img)
	code, hdr, body := e.do(http.MethodGet, manifestPath("local/audit/y", string(d)), nil)
	if code != http.StatusOK || hdr.Get("Docker-Content-Digest") != string(d) || notarize.DigestOf(body) != d {
		t.Fatalf("audit repository whose upstream has it: %d %s", code, body)
	}
}

// TestUnsignedBlobsRefused: every blob of an unsigned private image, asked
// for by digest, is BLOB_UNKNOWN, and the upstream is never asked.
func TestUnsignedBlobsRefused(t *testing.T) {
	rr := newRecordedRegistry(t)
	e := newEnv(t, withUpstream(rr.config()))
	img := randomImage(t)
	write(t, rr.host, "priv/app", "v1", img)
	if code, _, body := e.do(http.MethodGet, manifestPath("rec/priv/app", "v1"), nil); code != http.StatusForbidden {
		t.Fatalf("unsigned manifest: %d %s", code, body)
	}
	pushed := rr.rec.count("/blobs/")
	for _, d := range blobsOf(t, img) {
		e.wantBlobUnknown(http.MethodGet, "rec/priv/app", d)
		e.wantBlobUnknown(http.MethodHead, "rec/priv/app", d)
		code, _, _ := e.do(http.MethodGet, "/v2/rec/priv/app/blobs/"+string(d), http.Header{"Range": {"bytes=0-9"}})
		if code != http.StatusNotFound {
			t.Fatalf("range of an unsigned blob: %d", code)
		}
	}
	if n := rr.rec.count("/blobs/") - pushed; n != 0 {
		t.Fatalf("the upstream was asked for a blob %d times", n)
	}
}

// TestSignedBlobsServedAcrossRestart: the blobs of a signed image are
// served once its manifest was, and still after a restart of the proxy
// (the gate is on disk), without asking for the manifest again.
func TestSignedBlobsServedAcrossRestart(t *testing.T) {
	e := newEnv(t)
	img := e.push("app/signed", "v1")
	e.sign(e.release, digestOf(t, img), notarize.StatusTrusted)
	e.sync()
	if err := e.pull("local/app/signed:v1"); err != nil {
		t.Fatal(err)
	}
	e.restart()
	e.sync()
	for _, d := range blobsOf(t, img) {
		code, hdr, body := e.do(http.MethodGet, "/v2/local/app/signed/blobs/"+string(d), nil)
		if code != http.StatusOK || notarize.DigestOf(body) != d || hdr.Get("Docker-Content-Digest") != string(d) {
			t.Fatalf("blob %s after restart: %d", d, code)
		}
	}
}

// TestBlobsGatedPerRepository: a blob allowed in one repository is not
// served for another, on the same upstream or another, even from the
// shared cache, until a manifest allowed there references it.
func TestBlobsGatedPerRepository(t *testing.T) {
	rr := newRecordedRegistry(t)
	e := newEnv(t, withUpstream(rr.config()))
	img := randomImage(t)
	write(t, rr.host, "a/app", "v1", img)
	write(t, rr.host, "b/app", "v1", img)
	write(t, e.upHost, "a/app", "v1", img)
	e.sign(e.release, digestOf(t, img), notarize.StatusTrusted)
	e.sync()
	pushed := rr.rec.count("/v2/b/app/blobs/")
	if err := e.pull("rec/a/app:v1"); err != nil {
		t.Fatal(err)
	}
	blobs := blobsOf(t, img)
	for _, repo := range []string{"rec/b/app", "local/a/app", "rec/a/app2"} {
		e.wantBlobUnknown(http.MethodGet, repo, blobs[1])
		e.wantBlobUnknown(http.MethodHead, repo, blobs[1])
	}
	if n := rr.rec.count("/v2/b/app/blobs/") - pushed; n != 0 {
		t.Fatalf("the upstream was asked for b's blobs %d times", n)
	}
	// Once b's own manifest is allowed, its blobs are served (from the cache).
	if err := e.pull("rec/b/app:v1"); err != nil {
		t.Fatal(err)
	}
}

// TestIndexThenChildrenThenBlobs: a containerd-style pull (the index, then
// each platform's manifest by digest, then its blobs) works through the
// gate; a child's blobs are refused until the child manifest is served.
func TestIndexThenChildrenThenBlobs(t *testing.T) {
	e := newEnv(t)
	idx := e.pushIndex("multi", "v1", 2)
	e.signIndex(digestOf(t, idx))
	e.sync()
	accept := http.Header{"Accept": {"application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json"}}
	if code, _, body := e.do(http.MethodGet, manifestPath("local/multi", "v1"), accept); code != http.StatusOK {
		t.Fatalf("index: %d %s", code, body)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var all []notarize.Digest
	for i, desc := range im.Manifests {
		child, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		blobs := blobsOf(t, child)
		all = append(all, blobs...)
		e.wantBlobUnknown(http.MethodGet, "local/multi", blobs[1])
		if code, _, body := e.do(http.MethodGet, manifestPath("local/multi", desc.Digest.String()), accept); code != http.StatusOK {
			t.Fatalf("child %d: %d %s", i, code, body)
		}
		for _, d := range blobs {
			if code, _, body := e.do(http.MethodGet, "/v2/local/multi/blobs/"+string(d), nil); code != http.StatusOK || notarize.DigestOf(body) != d {
				t.Fatalf("child %d blob %s: %d", i, d, code)
			}
		}
	}
	// After a restart the proxy knows no index until one is pulled again;
	// the gate remembers which index vouched for each child.
	e.restart()
	e.sync()
	for _, d := range all {
		if code, _, _ := e.do(http.MethodGet, "/v2/local/multi/blobs/"+string(d), nil); code != http.StatusOK {
			t.Fatalf("blob %s of a child after restart: %d", d, code)
		}
	}
}

// TestBlobsStopWithTheirManifest: once the manifest that let a blob
// through is refused (untrusted, or its rule made stricter), the blob is
// refused too, also from the cache.
func TestBlobsStopWithTheirManifest(t *testing.T) {
	e := newEnv(t)
	img := e.push("rev/app", "v1")
	d := digestOf(t, img)
	e.sign(e.release, d, notarize.StatusTrusted)
	e.sync()
	if err := e.pull("local/rev/app:v1"); err != nil {
		t.Fatal(err)
	}
	layer := blobsOf(t, img)[1]
	if code, _, _ := e.do(http.MethodGet, "/v2/local/rev/app/blobs/"+string(layer), nil); code != http.StatusOK {
		t.Fatalf("blob of a trusted image: %d", code)
	}
	e.sign(e.release, d, notarize.StatusUntrusted)
	e.sync()
	e.wantBlobUnknown(http.MethodGet, "local/rev/app", layer)
	e.wantBlobUnknown(http.MethodHead, "local/rev/app", layer)

	// An unsigned image served under audit, then the rule enforced.
	img = e.push("audit/later", "v1")
	if err := e.pull("local/audit/later:v1"); err != nil {
		t.Fatal(err)
	}
	layer = blobsOf(t, img)[1]
	if code, _, _ := e.do(http.MethodGet, "/v2/local/audit/later/blobs/"+string(layer), nil); code != http.StatusOK {
		t.Fatalf("blob under audit: %d", code)
	}
	pol, err := notarize.ParsePolicy([]byte("rules:\n  - {match: \"**\", mode: enforce, require: [release]}\nsigners:\n  release: {keys: [release.pub]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := e.release.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	ev, err := pol.Evaluator(map[string][]crypto.PublicKey{"release": {pub}})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.SetPolicy(ev)
	e.wantBlobUnknown(http.MethodGet, "local/audit/later", layer)
}

// signIndex has release sign d as trusted, saying it is an image index
// (whose trust then covers the manifests it lists).
func (e *env) signIndex(d notarize.Digest) {
	e.t.Helper()
	ent, err := notarize.Sign(e.t.Context(), e.release, notarize.NewStatement(d, "test", notarize.Predicate{
		Status: notarize.StatusTrusted, Kind: notarize.KindIndex, MediaType: "application/vnd.oci.image.index.v1+json",
		Name: "release", Timestamp: time.Now().UTC(),
	}))
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.lc.Submit(e.t.Context(), ent); err != nil {
		e.t.Fatal(err)
	}
}

// TestReferrersFiltered: a referrers list names only the manifests the
// policy allows for the repository.
func TestReferrersFiltered(t *testing.T) {
	e := newEnv(t)
	img := e.push("refd/app", "v1")
	desc, err := partial.Descriptor(img)
	if err != nil {
		t.Fatal(err)
	}
	var refs []notarize.Digest
	for range 2 {
		sig, ok := mutate.Subject(randomImage(t), *desc).(v1.Image)
		if !ok {
			t.Fatal("mutate.Subject did not return an image")
		}
		d := digestOf(t, sig)
		ref, err := name.ParseReference(e.upHost+"/refd/app@"+string(d), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, sig, remote.WithContext(t.Context())); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, d)
	}
	e.sign(e.release, refs[0], notarize.StatusTrusted)
	e.sync()
	path := "/v2/local/refd/app/referrers/" + string(digestOf(t, img))
	code, hdr, body := e.do(http.MethodGet, path, nil)
	if code != http.StatusOK || !strings.Contains(hdr.Get("Content-Type"), "image.index") {
		t.Fatalf("referrers: %d %s %s", code, hdr.Get("Content-Type"), body)
	}
	if !bytes.Contains(body, []byte(refs[0])) {
		t.Fatalf("the signed referrer is not listed: %s", body)
	}
	if bytes.Contains(body, []byte(refs[1])) {
		t.Fatalf("an unsigned referrer is listed: %s", body)
	}
}

// TestManifestAndTagRedirectsRefused: an upstream that redirects a
// manifest, tags or referrers request to another host is not followed:
// what comes back is not checked against a digest.
func TestManifestAndTagRedirectsRefused(t *testing.T) {
	m := manifestBytes(t)
	canary := &recorder{h: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.Contains(r.URL.Path, "/manifests/"):
			serveManifest(w, m)
		default:
			_, _ = io.WriteString(w, `{"name":"app","tags":["secret"],"manifests":[]}`)
		}
	})}
	cs := httptest.NewServer(canary)
	defer cs.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(cs.URL, "http://"))
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	e.sign(e.release, notarize.DigestOf(m), notarize.StatusTrusted)
	e.sync()
	ev.serve(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/manifests/same-host") { // same host: followed
			http.Redirect(w, r, "/v2/app/manifests/v1", http.StatusTemporaryRedirect)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/manifests/v1") {
			serveManifest(w, m)
			return
		}
		http.Redirect(w, r, "http://localhost:"+port+r.URL.Path, http.StatusTemporaryRedirect)
	})
	for _, path := range []string{
		manifestPath("evil/app", "v2"),
		manifestPath("evil/app", string(notarize.DigestOf(m))),
		"/v2/evil/app/tags/list",
		"/v2/evil/app/referrers/" + string(notarize.DigestOf(m)),
	} {
		code, _, body := e.do(http.MethodGet, path, nil)
		if code == http.StatusOK {
			t.Errorf("%s: served through a redirect to another host: %s", path, body)
		} else if c, msg := ociErr(t, body); code != http.StatusBadGateway || c != "UNAVAILABLE" || !strings.Contains(msg, "redirect refused") {
			t.Errorf("%s: %d %s %s", path, code, c, msg)
		}
	}
	if n := len(canary.all()); n != 0 {
		t.Fatalf("the redirect target received %d requests", n)
	}
	if code, _, body := e.do(http.MethodGet, manifestPath("evil/app", "same-host"), nil); code != http.StatusOK || !bytes.Equal(body, m) {
		t.Fatalf("same-host redirect: %d %s", code, body)
	}
}

// mapResolver resolves the names it holds, and no other.
type mapResolver map[string]string

func (m mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := m[host]; ok {
		return []netip.Addr{netip.MustParseAddr(a)}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// TestBlobRedirectToPrivateAddressRefused: an upstream by name (not itself
// a loopback or private address) that redirects a blob to loopback,
// link-local (cloud metadata) or private addresses, by IP or by a name
// that resolves there, is refused before any connection is made there;
// an upstream marked PrivateNetwork may.
func TestBlobRedirectToPrivateAddressRefused(t *testing.T) {
	blob, blobD := randomBlob(1000)
	canary := &recorder{h: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(blob) })}
	cs := httptest.NewServer(canary)
	defer cs.Close()
	_, cport, _ := net.SplitHostPort(strings.TrimPrefix(cs.URL, "http://"))
	m := manifestWithLayers(t, blobD)
	var target atomic.Pointer[string]
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.Contains(r.URL.Path, "/manifests/"):
			serveManifest(w, m)
		case strings.Contains(r.URL.Path, "/blobs/"):
			http.Redirect(w, r, *target.Load(), http.StatusTemporaryRedirect)
		}
	}))
	defer reg.Close()
	_, rport, _ := net.SplitHostPort(strings.TrimPrefix(reg.URL, "http://"))
	res := mapResolver{"registry.test": "127.0.0.1", "cdn.test": "127.0.0.1", "meta.test": "169.254.169.254", "ten.test": "10.0.0.1"}
	e := newEnv(t,
		withUpstream(upstream.Config{Name: "far", URL: "http://registry.test:" + rport, Insecure: true, Resolver: res, Keychain: anonymous()}),
		withUpstream(upstream.Config{Name: "lan", URL: "http://registry.test:" + rport, Insecure: true, Resolver: res, Keychain: anonymous(), PrivateNetwork: true}))
	e.sign(e.release, notarize.DigestOf(m), notarize.StatusTrusted)
	e.sync()
	for _, up := range []string{"far", "lan"} {
		if code, _, body := e.do(http.MethodGet, manifestPath(up+"/app", "v1"), nil); code != http.StatusOK {
			t.Fatalf("%s manifest: %d %s", up, code, body)
		}
	}
	for _, to := range []string{
		"http://127.0.0.1:" + cport + "/b",
		"http://localhost:" + cport + "/b",
		"http://[::1]:" + cport + "/b",
		"http://cdn.test:" + cport + "/b", // a name resolving to loopback: caught at dial time
		"http://169.254.169.254/latest/meta-data/",
		"http://meta.test/latest/meta-data/",
		"http://10.0.0.1/b",
		"http://ten.test/b",
		"file:///etc/passwd",
	} {
		target.Store(&to)
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			code, _, body := e.do(method, "/v2/far/app/blobs/"+string(blobD), nil)
			if code == http.StatusOK {
				t.Fatalf("%s blob redirected to %s: served", method, to)
			}
			if method == http.MethodGet {
				if c, _ := ociErr(t, body); code != http.StatusBadGateway || c != "UNAVAILABLE" {
					t.Fatalf("%s blob redirected to %s: %d %s", method, to, code, body)
				}
			}
		}
	}
	if n := len(canary.all()); n != 0 {
		t.Fatalf("a private address received %d requests", n)
	}
	// The same redirect from an upstream on a private network is followed.
	cdn := "http://cdn.test:" + cport + "/b"
	target.Store(&cdn)
	code, _, body := e.do(http.MethodGet, "/v2/lan/app/blobs/"+string(blobD), nil)
	if code != http.StatusOK || !bytes.Equal(body, blob) {
		t.Fatalf("private-network upstream's redirect: %d %s", code, body)
	}
}

// waitCachedBlobs waits until the proxy's blob cache holds n blobs (a blob
// is committed just after its last byte was sent).
func (e *env) waitCachedBlobs(n int) {
	e.t.Helper()
	want := fmt.Sprintf("\nnotarize_proxy_blob_cache_blobs %d\n", n)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, _, b := e.do(http.MethodGet, "/metrics", nil); bytes.Contains(b, []byte(want)) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("the blob cache does not hold %d blobs", n)
		}
	}
}

// TestCachedBlobNeedsItsOwnUpstream: a manifest in one repository that
// names blobs cached for another (a registry that does not check the
// references of a pushed manifest lets anyone write one) does not get them
// from the shared cache: the repository's own upstream must answer for
// them first, and here it has none.
func TestCachedBlobNeedsItsOwnUpstream(t *testing.T) {
	e, ev, blobs := blobsNamedElsewhere(t)
	if code, _, body := e.do(http.MethodGet, manifestPath("evil/thief", "v1"), nil); code != http.StatusOK {
		t.Fatalf("the naming manifest: %d %s", code, body)
	}
	for _, d := range blobs {
		e.wantBlobUnknown(http.MethodGet, "evil/thief", d)
		e.wantBlobUnknown(http.MethodHead, "evil/thief", d)
	}
	if n := ev.rec.count("/blobs/"); n == 0 {
		t.Fatal("the repository's upstream was not asked")
	}
	// The repository the blobs were fetched for still gets them.
	for _, d := range blobs {
		if code, _, body := e.do(http.MethodGet, "/v2/local/priv/app/blobs/"+string(d), nil); code != http.StatusOK || notarize.DigestOf(body) != d {
			t.Fatalf("blob %s for its own repository: %d", d, code)
		}
	}
}

// blobsNamedElsewhere sets up the stolen-cache case: the blobs of a signed
// image at local/priv/app are pulled and cached; the "evil" upstream serves,
// for any repository, a signed manifest naming those blobs, and has none of
// them. It returns the env, the evil upstream and the blobs.
func blobsNamedElsewhere(t *testing.T) (*env, *evil, []notarize.Digest) {
	t.Helper()
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	img := e.push("priv/app", "v1")
	e.sign(e.release, digestOf(t, img), notarize.StatusTrusted)
	e.sync()
	if err := e.pull("local/priv/app:v1"); err != nil {
		t.Fatal(err)
	}
	blobs := blobsOf(t, img)
	e.waitCachedBlobs(len(blobs))

	m := manifestWithLayers(t, blobs...)
	ev.serve(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/manifests/") {
			serveManifest(w, m)
			return
		}
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"no such blob here"}]}`)
	})
	e.sign(e.release, notarize.DigestOf(m), notarize.StatusTrusted)
	e.sync()
	return e, ev, blobs
}
