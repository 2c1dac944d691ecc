package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/notarize/docker-notarize/notarize"
)

// TestGetManifestClassifies: GetManifest classifies the bytes once with
// the Content-Type they came with, returns the media type they declare,
// and refuses what the classifier refuses as ErrBadManifest.
func TestGetManifestClassifies(t *testing.T) {
	cfg := fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":2}`, notarize.DigestOf([]byte("{}")))
	child := notarize.DigestOf([]byte("child"))
	index := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":"%s","size":3}]}`, notarize.MediaTypeOCIIndex, notarize.MediaTypeOCIManifest, child)
	image := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":%s,"layers":[]}`, notarize.MediaTypeOCIManifest, cfg)
	both := fmt.Sprintf(`{"schemaVersion":2,"config":%s,"layers":[],"manifests":[{"mediaType":%q,"digest":"%s","size":3}]}`, cfg, notarize.MediaTypeOCIManifest, child)

	var body, ct string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		w.Header().Set("Content-Type", ct)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	r, err := New(Config{Name: "u", URL: srv.URL, Keychain: authn.NewMultiKeychain()})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, body, ct string
		kind, mt       string // "" for a refusal
		ambiguous      bool
	}{
		{name: "index, generic Content-Type", body: index, ct: "application/json", kind: notarize.KindIndex, mt: notarize.MediaTypeOCIIndex},
		{name: "image as declared", body: image, ct: notarize.MediaTypeOCIManifest, kind: notarize.KindImage, mt: notarize.MediaTypeOCIManifest},
		{name: "image and manifests", body: both, ct: notarize.MediaTypeOCIIndex, ambiguous: true},
		{name: "image served as an index", body: image, ct: notarize.MediaTypeOCIIndex, ambiguous: true},
		{name: "not JSON", body: "<html>", ct: "text/html"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, ct = tc.body, tc.ct
			m, err := r.GetManifest(t.Context(), "repo", "v1", nil, 1<<20)
			if tc.kind == "" {
				if !errors.Is(err, ErrBadManifest) || errors.Is(err, notarize.ErrAmbiguousManifest) != tc.ambiguous {
					t.Fatalf("GetManifest = %+v, %v; want ErrBadManifest (ambiguous: %v)", m, err, tc.ambiguous)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Parsed == nil || m.Parsed.Kind != tc.kind || m.MediaType != tc.mt || m.Parsed.MediaType != tc.mt || m.Digest != notarize.DigestOf([]byte(tc.body)) {
				t.Fatalf("GetManifest = %+v (parsed %+v), want kind %s, media type %s", m, m.Parsed, tc.kind, tc.mt)
			}
		})
	}
}
