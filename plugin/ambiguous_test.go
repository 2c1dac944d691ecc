package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/notarize"
)

// putManifest pushes raw manifest bytes to the test registry under
// repo:ref with contentType.
func putManifest(t *testing.T, host, repo, ref, contentType string, b []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut, "http://"+host+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("push %s:%s as %s: HTTP %d", repo, ref, contentType, resp.StatusCode)
	}
}

// ambiguousFixture pushes to reg, under repo "amb": the test image as
// "child", and the CVE-2021-41190 document (the image's manifest plus a
// "manifests" list naming the child, declaring mediaType when not "")
// twice, as "as-image" with an image Content-Type and as "as-index" with an
// index one. It returns the document's digest.
func ambiguousFixture(t *testing.T, reg *testRegistry, mediaType string) notarize.Digest {
	t.Helper()
	raw, err := reg.image.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	putManifest(t, reg.host, "amb", "child", mediaTypeDockerManifest, raw)
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "mediaType")
	if mediaType != "" {
		doc["mediaType"] = mediaType
	}
	doc["manifests"] = []map[string]any{{"mediaType": mediaTypeDockerManifest, "digest": string(digestOf(t, reg.image)), "size": len(raw)}}
	amb, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	putManifest(t, reg.host, "amb", "as-image", mediaTypeOCIManifest, amb)
	putManifest(t, reg.host, "amb", "as-index", mediaTypeOCIIndex, amb)
	return notarize.DigestOf(amb)
}

// TestResolveRefusesAmbiguousManifest: a document that reads as an image
// manifest and as an index, or whose Content-Type disagrees with the
// mediaType it declares, is never resolved, so never signed.
func TestResolveRefusesAmbiguousManifest(t *testing.T) {
	reg := newTestRegistry(t, nil)
	res := newTestResolver(t, nil)
	for _, mt := range []string{"", mediaTypeOCIManifest} {
		ambiguousFixture(t, reg, mt)
		for _, ref := range []string{"as-image", "as-index"} {
			_, err := res.Resolve(t.Context(), reg.host+"/amb:"+ref, false)
			if !errors.Is(err, notarize.ErrAmbiguousManifest) || !strings.Contains(err.Error(), "both config or layers and manifests") {
				t.Errorf("mediaType %q, %s: Resolve = %v, want ErrAmbiguousManifest", mt, ref, err)
			}
		}
	}
	// A plain image manifest served with an index Content-Type.
	raw, err := reg.image.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	putManifest(t, reg.host, "mismatch", "v1", mediaTypeDockerList, raw)
	if _, err := res.Resolve(t.Context(), reg.host+"/mismatch:v1", false); !errors.Is(err, notarize.ErrAmbiguousManifest) || !strings.Contains(err.Error(), "Content-Type") {
		t.Errorf("image manifest served as a list: Resolve = %v, want ErrAmbiguousManifest", err)
	}
	// A Docker manifest without its mediaType member.
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "mediaType")
	noMT, _ := json.Marshal(doc)
	putManifest(t, reg.host, "nomediatype", "v1", mediaTypeDockerManifest, noMT)
	if _, err := res.Resolve(t.Context(), reg.host+"/nomediatype:v1", false); !errors.Is(err, notarize.ErrBadManifest) || !strings.Contains(err.Error(), "must carry its mediaType") {
		t.Errorf("Docker manifest without mediaType: Resolve = %v, want ErrBadManifest", err)
	}
}

// TestSignRefusesAmbiguousManifest: `sign` fails with a clear error and
// records nothing about the ambiguous document.
func TestSignRefusesAmbiguousManifest(t *testing.T) {
	h := newHarness(t, "alice")
	d := ambiguousFixture(t, h.reg, "")
	for _, ref := range []string{"as-image", "as-index"} {
		out, errOut, code := h.run("sign", h.reg.host+"/amb:"+ref)
		if code != ExitError || !strings.Contains(errOut, "ambiguous manifest") || !strings.Contains(errOut, string(d)) {
			t.Fatalf("sign %s: exit %d, stdout %q, stderr %q; want exit %d naming the ambiguous manifest", ref, code, out, errOut, ExitError)
		}
	}
	h.mustRun(2, "verify", h.reg.host+"/amb@"+string(d)) // UNKNOWN: nothing was signed
}
