package proxy_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/notarize"
)

// Red team 6: media-type confusion through a lying upstream that answers
// every path with whatever object has the asked digest, manifest or blob.
//
//   - a trusted manifest's own digest asked for as a blob: the gate knows
//     only what the manifest references (its config and layers), so the
//     manifest's bytes are not served through /blobs/ and the upstream is
//     not asked;
//   - a blob (a JSON config, "{}") asked for as a manifest, even with a
//     trusted statement about its digest: the bytes are classified before
//     anything is served, and a config is no manifest (502
//     MANIFEST_INVALID), whatever Content-Type the upstream gives it.
func TestRedteam6ManifestBlobConfusion(t *testing.T) {
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	good := manifestBytes(t) // its config is "{}"
	goodD := notarize.DigestOf(good)
	config := []byte("{}")
	configD := notarize.DigestOf(config)
	e.sign(e.release, goodD, notarize.StatusTrusted)
	e.sign(e.release, configD, notarize.StatusTrusted) // a signer who signed the wrong digest
	e.sync()
	objects := map[string][]byte{string(goodD): good, string(configD): config}
	ev.serve(func(w http.ResponseWriter, r *http.Request) {
		i := strings.LastIndex(r.URL.Path, "/")
		b, ok := objects[r.URL.Path[i+1:]]
		if !ok {
			http.NotFound(w, r)
			return
		}
		ct := "application/octet-stream"
		if strings.Contains(r.URL.Path, "/manifests/") {
			ct = "application/vnd.oci.image.manifest.v1+json" // the upstream's word, for any bytes
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Header().Set("Docker-Content-Digest", r.URL.Path[i+1:])
		_, _ = w.Write(b)
	})

	code, _, body := e.do(http.MethodGet, manifestPath("evil/app", string(goodD)), nil)
	if code != http.StatusOK || string(body) != string(good) {
		t.Fatalf("the trusted manifest: %d %s", code, body)
	}
	before := ev.rec.count("/blobs/")
	for _, method := range []string{http.MethodHead, http.MethodGet} {
		code, _, body = e.do(method, "/v2/evil/app/blobs/"+string(goodD), nil)
		if code == http.StatusOK {
			t.Errorf("BYPASS: %s of the manifest's own digest as a blob answered 200 (%d bytes)", method, len(body))
		} else if code != http.StatusNotFound {
			t.Errorf("%s of the manifest's own digest as a blob: %d, want 404 BLOB_UNKNOWN", method, code)
		}
	}
	if n := ev.rec.count("/blobs/") - before; n != 0 {
		t.Errorf("the manifest's digest asked for as a blob reached the upstream %d times", n)
	}
	// Its config is referenced: served as a blob.
	if code, _, body = e.do(http.MethodGet, "/v2/evil/app/blobs/"+string(configD), nil); code != http.StatusOK || string(body) != "{}" {
		t.Errorf("the trusted manifest's config: %d %s", code, body)
	}
	for _, method := range []string{http.MethodHead, http.MethodGet} {
		code, _, body = e.do(method, manifestPath("evil/app", string(configD)), nil)
		if code == http.StatusOK {
			t.Errorf("BYPASS: %s of a config blob as a manifest answered 200: %q", method, body)
		}
		if method == http.MethodGet {
			if c, _ := ociErr(t, body); code != http.StatusBadGateway || c != "MANIFEST_INVALID" {
				t.Errorf("a config blob as a manifest: %d %s, want 502 MANIFEST_INVALID", code, body)
			}
		}
	}
}
