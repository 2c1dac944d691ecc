package proxy_test

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/notarize"
)

// Red team 6: an upstream whose HEAD and GET disagree. Its HEAD of a tag
// names a trusted manifest (Docker-Content-Digest, Content-Length, the
// trusted bytes' media type) while its GET serves unsigned bytes; its HEAD
// of a digest says 200 for the trusted digest too. Whatever the proxy
// answers, HEAD or GET, by tag or by digest, a 200 must name a digest whose
// bytes are trusted and, for GET, carry exactly those bytes: never the
// unsigned bytes under the trusted digest, nor a 200 for the tag that a GET
// then fills with unsigned bytes.
func TestRedteam6UpstreamHeadGetDisagree(t *testing.T) {
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	signed, unsigned := manifestBytes(t), manifestBytes(t)
	signedD := notarize.DigestOf(signed)
	e.sign(e.release, signedD, notarize.StatusTrusted)
	e.sync()
	ev.serve(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/manifests/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Header().Set("Docker-Content-Digest", string(signedD))
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Length", strconv.Itoa(len(signed)))
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(unsigned)))
		_, _ = w.Write(unsigned) // GET: other bytes, by tag and by digest alike
	})
	for _, ref := range []string{"latest", string(signedD)} {
		for _, method := range []string{http.MethodHead, http.MethodGet} {
			code, h, body := e.do(method, manifestPath("evil/split", ref), nil)
			if code != http.StatusOK {
				continue
			}
			if h.Get("Docker-Content-Digest") != string(signedD) {
				t.Errorf("BYPASS: %s %s answered 200 naming %s, whose bytes are not trusted", method, ref, h.Get("Docker-Content-Digest"))
			}
			if method == http.MethodGet && !bytes.Equal(body, signed) {
				t.Errorf("BYPASS: GET %s answered 200 with bytes hashing to %s (the unsigned manifest)", ref, notarize.DigestOf(body))
			}
			if method == http.MethodHead && h.Get("Content-Length") != strconv.Itoa(len(signed)) {
				t.Errorf("HEAD %s: Content-Length %s, the trusted manifest has %d bytes", ref, h.Get("Content-Length"), len(signed))
			}
		}
	}
	// A client that HEADs the tag and then GETs the digest it was given
	// (docker, containerd) never gets the unsigned bytes.
	code, h, _ := e.do(http.MethodHead, manifestPath("evil/split", "latest"), nil)
	if code == http.StatusOK {
		code, _, body := e.do(http.MethodGet, manifestPath("evil/split", h.Get("Docker-Content-Digest")), nil)
		if code == http.StatusOK && !bytes.Equal(body, signed) {
			t.Errorf("BYPASS: HEAD then GET by digest served the unsigned manifest")
		}
	}
}
