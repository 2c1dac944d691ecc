package proxy_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/blobcache"
)

// TestRedteam2FleetStolenBlobEveryWay: the stolen-cache case across the
// fleet (issue 15), beyond a plain GET: blobs one proxy put in the shared
// store, named by a signed manifest at another upstream's repository whose
// upstream has none of them, are refused there by the second proxy for a
// HEAD, a Range GET, a GET with If-None-Match, and again after those
// refusals (a refusal is never remembered as the upstream having the
// blob), streamed or redirected; nothing of the blob is sent, and no
// redirect to the bucket is given.
func TestRedteam2FleetStolenBlobEveryWay(t *testing.T) {
	for _, redirect := range []bool{false, true} {
		t.Run(map[bool]string{false: "stream", true: "redirect"}[redirect], func(t *testing.T) {
			ev := newEvil(t)
			f := newFleet(t, redirect, withUpstream(ev.config()))
			blobs := f.pushSigned(t, "priv/app", 256<<10, 1)
			if err := f.a.pull("fleet/priv/app:v1"); err != nil {
				t.Fatal(err)
			}
			f.waitShared(t, blobs)
			m := manifestWithLayers(t, blobs...)
			ev.serve(func(w http.ResponseWriter, r *http.Request) {
				if strings.Contains(r.URL.Path, "/manifests/") {
					serveManifest(w, m)
					return
				}
				w.WriteHeader(http.StatusNotFound)
				_, _ = io.WriteString(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"no such blob here"}]}`)
			})
			f.a.sign(f.a.release, notarize.DigestOf(m), notarize.StatusTrusted)
			f.b.sync()
			if code, _, body := f.b.do(http.MethodGet, manifestPath("evil/thief", "v1"), nil); code != http.StatusOK {
				t.Fatalf("the naming manifest: %d %s", code, body)
			}
			for _, d := range blobs {
				path := "/v2/evil/thief/blobs/" + string(d)
				for round := range 2 {
					for _, req := range []struct {
						method string
						hdr    http.Header
					}{
						{http.MethodHead, nil},
						{http.MethodGet, http.Header{"Range": {"bytes=0-99"}}},
						{http.MethodGet, http.Header{"Range": {"bytes=-1"}}},
						{http.MethodGet, http.Header{"If-None-Match": {`"` + string(d) + `"`}}},
						{http.MethodGet, nil},
					} {
						code, h, body := f.b.do(req.method, path, req.hdr)
						if code != http.StatusNotFound {
							t.Fatalf("BYPASS: round %d: %s %v of a blob the thief's upstream does not have: HTTP %d, Location %q, %d bytes",
								round, req.method, req.hdr, code, h.Get("Location"), len(body))
						}
						if h.Get("Location") != "" || bytes.Contains(body, []byte(blobcache.BlobPath(d))) {
							t.Fatalf("BYPASS: round %d: %s %v: the answer points at the shared copy", round, req.method, req.hdr)
						}
					}
				}
			}
			// The owner's repository still gets them from the second proxy.
			if err := f.b.pull("fleet/priv/app:v1"); err != nil {
				t.Fatal(err)
			}
		})
	}
}
