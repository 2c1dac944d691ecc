package proxy_test

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// Red team: the blob gate while another repository's download of the
// same blob is in flight. The victim's repository (evil/victim) is pulling
// a blob slowly; the thief's repository (evil/thief), whose allowed
// manifest names the same blob but whose upstream repository does not hold
// it, asks for it mid-download, plain and with a Range. It must not get the
// victim's download: a download is shared only within one upstream and
// repository (blobcache.FillFrom, red team 15), so its own upstream
// repository is asked, and says 404.
func TestRedTeamGateJoinedDownload(t *testing.T) {
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	blob, d := randomBlob(256 << 10)
	m := manifestWithLayers(t, d)
	half := make(chan struct{})
	release := make(chan struct{})
	var victimFetches, thiefAsks atomic.Int32
	ev.serve(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.Contains(r.URL.Path, "/manifests/"):
			serveManifest(w, m)
		case strings.HasPrefix(r.URL.Path, "/v2/victim/blobs/"):
			if victimFetches.Add(1) > 1 {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Length", "262144")
			_, _ = w.Write(blob[:1024])
			w.(http.Flusher).Flush()
			close(half)
			<-release
			_, _ = w.Write(blob[1024:])
		default:
			thiefAsks.Add(1)
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"no"}]}`)
		}
	})
	e.sign(e.release, notarize.DigestOf(m), notarize.StatusTrusted)
	e.sync()
	for _, repo := range []string{"evil/victim", "evil/thief"} {
		if code, _, body := e.do(http.MethodGet, manifestPath(repo, "v1"), nil); code != http.StatusOK {
			t.Fatalf("manifest at %s: %d %s", repo, code, body)
		}
	}
	done := make(chan int)
	go func() {
		code, _, _ := e.do(http.MethodGet, "/v2/evil/victim/blobs/"+string(d), nil)
		done <- code
	}()
	select {
	case <-half:
	case <-time.After(10 * time.Second):
		t.Fatal("the victim's download did not start")
	}
	for _, hdr := range []http.Header{nil, {"Range": {"bytes=0-9"}}} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			code, _, body := e.do(method, "/v2/evil/thief/blobs/"+string(d), hdr)
			if code != http.StatusNotFound {
				t.Errorf("%s %v of the blob at the thief's repository mid-download: %d (%d bytes), want 404", method, hdr, code, len(body))
			}
		}
	}
	// The thief's GETs never joined the victim's download.
	if _, _, mb := e.do(http.MethodGet, "/metrics", nil); strings.Contains(string(mb), `notarize_proxy_cache_requests_total{cache="blob",result="joined"}`) {
		t.Error("the thief's requests joined the victim's download in flight")
	}
	close(release)
	if code := <-done; code != http.StatusOK {
		t.Fatalf("the victim's download: %d", code)
	}
	if thiefAsks.Load() == 0 {
		t.Fatal("the thief's upstream repository was never asked")
	}
	// Once cached, still not for the thief.
	e.waitCachedBlobs(1)
	e.wantBlobUnknown(http.MethodGet, "evil/thief", d)
}
