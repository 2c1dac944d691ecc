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

// TestRedteam4FleetHeadSharedStaysInItsRepository: the HEAD answered from
// the fleet's shared store (341b0de) rests on "this repository's upstream
// already answered for the blob". Across repositories of ONE upstream
// (a registry with per-repository access, where the blob store is not
// global): the owner's repository pulled the blobs through proxy A (they
// are in the shared store) and HEADed them through proxy B (B's gate
// records that the owner's upstream repository has them); a thief's
// repository on the same upstream, named by a signed manifest listing the
// same blobs but whose upstream repository does not have them, must learn
// nothing from B: no HEAD, no size, no redirect, no bytes, before and after
// the owner's HEADs, streamed and redirected.
func TestRedteam4FleetHeadSharedStaysInItsRepository(t *testing.T) {
	for _, redirect := range []bool{false, true} {
		t.Run(map[bool]string{false: "stream", true: "redirect"}[redirect], func(t *testing.T) {
			ev := newEvil(t)
			f := newFleet(t, redirect, withUpstream(ev.config()))
			blobs := f.pushSigned(t, "priv/app", 200<<10, 1)
			m := manifestWithLayers(t, blobs...)
			ev.serve(func(w http.ResponseWriter, r *http.Request) {
				switch {
				case strings.Contains(r.URL.Path, "/manifests/"):
					serveManifest(w, m)
				case strings.HasPrefix(r.URL.Path, "/v2/owner/blobs/"):
					// The owner's repository has the blobs (the fleet upstream's copy).
					req, err := http.NewRequestWithContext(r.Context(), r.Method, f.upURL+"/v2/priv/app/blobs/"+strings.TrimPrefix(r.URL.Path, "/v2/owner/blobs/"), nil)
					if err != nil {
						w.WriteHeader(http.StatusInternalServerError)
						return
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						w.WriteHeader(http.StatusBadGateway)
						return
					}
					defer resp.Body.Close()
					for _, k := range []string{"Content-Length", "Content-Type", "Docker-Content-Digest"} {
						if v := resp.Header.Get(k); v != "" {
							w.Header().Set(k, v)
						}
					}
					w.WriteHeader(resp.StatusCode)
					_, _ = io.Copy(w, resp.Body)
				default:
					w.WriteHeader(http.StatusNotFound)
					_, _ = io.WriteString(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"no such blob in this repository"}]}`)
				}
			})
			f.a.sign(f.a.release, notarize.DigestOf(m), notarize.StatusTrusted)
			f.a.sync()
			f.b.sync()
			// The owner pulls through A: the blobs reach the shared store.
			if code, _, body := f.a.do(http.MethodGet, manifestPath("evil/owner", "v1"), nil); code != http.StatusOK {
				t.Fatalf("owner's manifest through A: %d %s", code, body)
			}
			for _, d := range blobs {
				if code, _, _ := f.a.do(http.MethodGet, "/v2/evil/owner/blobs/"+string(d), nil); code != http.StatusOK {
					t.Fatalf("owner's blob %s through A: HTTP %d", d, code)
				}
			}
			f.waitShared(t, blobs)
			for _, repo := range []string{"evil/owner", "evil/thief"} {
				if code, _, body := f.b.do(http.MethodGet, manifestPath(repo, "v1"), nil); code != http.StatusOK {
					t.Fatalf("%s's manifest through B: %d %s", repo, code, body)
				}
			}
			type request struct {
				method string
				hdr    http.Header
			}
			heads := []request{{http.MethodHead, nil}, {http.MethodHead, nil}} // a refusal is not remembered as an answer
			all := append(heads, request{http.MethodGet, http.Header{"Range": {"bytes=0-9"}}}, request{http.MethodGet, nil})
			thief := func(round string, reqs []request) {
				t.Helper()
				for _, d := range blobs {
					path := "/v2/evil/thief/blobs/" + string(d)
					for _, req := range reqs {
						code, h, body := f.b.do(req.method, path, req.hdr)
						if code != http.StatusNotFound {
							t.Fatalf("BYPASS: %s: %s %v of a blob the thief's repository does not have, on the owner's upstream: HTTP %d, Content-Length %q, Location %q, %d bytes",
								round, req.method, req.hdr, code, h.Get("Content-Length"), h.Get("Location"), len(body))
						}
						if h.Get("Location") != "" || bytes.Contains(body, []byte(blobcache.BlobPath(d))) {
							t.Fatalf("BYPASS: %s: %s %v: the answer points at the shared copy", round, req.method, req.hdr)
						}
					}
				}
			}
			thief("before the owner's HEADs", heads) // a GET would copy the blob into B's local cache
			// The owner HEADs through B: answered, and from then on from the
			// shared store for the owner's repository alone.
			for _, d := range blobs {
				for range 2 {
					if code, _, _ := f.b.do(http.MethodHead, "/v2/evil/owner/blobs/"+string(d), nil); code != http.StatusOK {
						t.Fatalf("owner's HEAD of %s through B: HTTP %d", d, code)
					}
				}
			}
			if _, _, met := f.b.do(http.MethodGet, "/metrics", nil); !redirect && !bytes.Contains(met, []byte(`result="shared_head"`)) {
				t.Fatal("the owner's second HEAD was not answered from the shared store: the test checks nothing")
			}
			thief("after the owner's HEADs", all)
			// The owner still gets the blobs from B.
			for _, d := range blobs {
				if code, _, _ := f.b.do(http.MethodGet, "/v2/evil/owner/blobs/"+string(d), nil); code != http.StatusOK && code != http.StatusTemporaryRedirect {
					t.Fatalf("owner's blob %s through B: HTTP %d", d, code)
				}
			}
		})
	}
}
