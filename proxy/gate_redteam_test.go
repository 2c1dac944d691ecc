package proxy_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/notarize"
)

// Red team: the blob gate under Range requests, HEAD before GET, and
// spellings of the repository.

// TestRedTeamGateRangeAndSpellings: blobs cached for local/priv/app, named
// by an allowed manifest at evil/thief whose upstream does not have them.
// Neither a Range request, nor a HEAD first, nor another spelling of the
// thief's repository, nor the victim's repository name under the thief's
// upstream gets a byte of them.
func TestRedTeamGateRangeAndSpellings(t *testing.T) {
	e, _, blobs := blobsNamedElsewhere(t)
	for _, repo := range []string{"evil/thief", "evil/priv/app"} {
		if code, _, body := e.do(http.MethodGet, manifestPath(repo, "v1"), nil); code != http.StatusOK {
			t.Fatalf("the naming manifest at %s: %d %s", repo, code, body)
		}
	}
	for _, d := range blobs {
		for _, p := range []string{
			"/v2/evil/thief/blobs/" + string(d),
			"/v2/thief/blobs/" + string(d) + "?ns=evil",
			"/v2/evil/thief/blobs/" + string(d) + "?ns=evil",
			"/v2/evil/priv/app/blobs/" + string(d), // the victim's repository name, the thief's upstream
			"/v2/priv/app/blobs/" + string(d) + "?ns=evil",
		} {
			for _, hdr := range []http.Header{
				{"Range": {"bytes=0-"}},
				{"Range": {"bytes=0-0"}},
				{"Range": {"bytes=-1"}},
				{"Range": {"bytes=0-0,1-1"}},
				{"If-Range": {`"` + string(d) + `"`}, "Range": {"bytes=0-3"}},
			} {
				for _, method := range []string{http.MethodHead, http.MethodGet} {
					code, _, body := e.do(method, p, hdr)
					if code != http.StatusNotFound {
						t.Errorf("%s %s %v: HTTP %d (%d bytes), want 404", method, p, hdr, code, len(body))
					}
				}
			}
		}
	}
	// The victim's own repository still gets a range.
	code, _, body := e.do(http.MethodGet, "/v2/local/priv/app/blobs/"+string(blobs[1]), http.Header{"Range": {"bytes=0-0"}})
	if code != http.StatusPartialContent || len(body) != 1 {
		t.Fatalf("a range of the victim's own blob: %d, %d bytes", code, len(body))
	}
}

// TestRedTeamGateUnknownDigestSpellings: a blob no allowed manifest names
// is BLOB_UNKNOWN under every digest spelling, without an upstream request.
func TestRedTeamGateUnknownDigestSpellings(t *testing.T) {
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	ev.serve(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "secret") })
	d := string(notarize.DigestOf([]byte("secret")))
	for _, s := range []string{
		d,
		strings.ToUpper(d),
		"SHA256:" + d[len("sha256:"):],
		"sha256:" + strings.ToUpper(d[len("sha256:"):]),
		"sha512:" + strings.Repeat("a", 128),
		d + "%00",
		"sha256+b64u:" + d[len("sha256:"):],
	} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			code, _, _ := e.do(method, "/v2/evil/x/blobs/"+s, nil)
			if code == http.StatusOK || code == http.StatusPartialContent {
				t.Errorf("%s blob %s: HTTP %d", method, s, code)
			}
		}
	}
	if n := ev.rec.count("/blobs/"); n != 0 {
		t.Fatalf("%d upstream blob requests for blobs no manifest named", n)
	}
}
