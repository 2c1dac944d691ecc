package upstream

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/notarize/docker-notarize/notarize"
)

// TestGetManifestAdmitted: admit is asked with the answer's Content-Length
// (or the limit when there is none) before the body is read; its refusal
// is returned, with no manifest.
func TestGetManifestAdmitted(t *testing.T) {
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` +
		string(notarize.DigestOf([]byte("{}"))) + `","size":2},"layers":[]}`)
	var chunked atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		if !chunked.Load() {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		w.(http.Flusher).Flush()
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	r, err := New(Config{Name: "u", URL: srv.URL, Keychain: authn.NewMultiKeychain()})
	if err != nil {
		t.Fatal(err)
	}
	full := errors.New("full")
	for _, tc := range []struct {
		name    string
		chunked bool
		refuse  bool
		want    int64
	}{
		{"length", false, false, int64(len(body))},
		{"no length", true, false, 1 << 20},
		{"refused", false, true, int64(len(body))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chunked.Store(tc.chunked)
			var asked int64 = -1
			m, err := r.GetManifestAdmitted(t.Context(), "repo", "v1", nil, 1<<20, func(size int64) error {
				asked = size
				if tc.refuse {
					return full
				}
				return nil
			})
			if asked != tc.want {
				t.Fatalf("admit asked for %d bytes, want %d", asked, tc.want)
			}
			if tc.refuse {
				if !errors.Is(err, full) || m != nil {
					t.Fatalf("GetManifestAdmitted = %v, %v; want the admit error", m, err)
				}
				return
			}
			if err != nil || m.Digest != notarize.DigestOf(body) {
				t.Fatalf("GetManifestAdmitted = %+v, %v", m, err)
			}
		})
	}
}

// TestHeadManifest: HEAD returns the digest the upstream names, "" when it
// names none or something else than a sha256 digest, and an *Error for a
// non-2xx answer.
func TestHeadManifest(t *testing.T) {
	d := notarize.DigestOf([]byte("m"))
	var header atomic.Value
	var gets atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		if r.Method != http.MethodHead {
			gets.Add(1)
		}
		h := header.Load().(string)
		if h == "404" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("Docker-Content-Digest", h)
	}))
	t.Cleanup(srv.Close)
	r, err := New(Config{Name: "u", URL: srv.URL, Keychain: authn.NewMultiKeychain()})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		header string
		want   notarize.Digest
	}{{string(d), d}, {"", ""}, {"md5:00", ""}, {"sha256:short", ""}} {
		header.Store(tc.header)
		got, err := r.HeadManifest(t.Context(), "repo", "v1", nil)
		if err != nil || got != tc.want {
			t.Fatalf("Docker-Content-Digest %q: HeadManifest = %q, %v; want %q", tc.header, got, err, tc.want)
		}
	}
	header.Store("404")
	var ue *Error
	if _, err := r.HeadManifest(t.Context(), "repo", "v1", nil); !errors.As(err, &ue) || ue.StatusCode != http.StatusNotFound {
		t.Fatalf("HeadManifest of a missing tag: %v, want a 404 *Error", err)
	}
	if gets.Load() != 0 {
		t.Fatalf("HeadManifest sent %d GETs", gets.Load())
	}
}
