package proxy_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/notarize"
)

// signKind submits a statement about d by sv that records the subject's
// kind and media type, as `docker notarize sign` does, and syncs.
func (e *env) signKind(sv signature.Signer, d notarize.Digest, s notarize.Status, kind, mediaType string) {
	e.t.Helper()
	ent, err := notarize.Sign(e.t.Context(), sv, notarize.NewStatement(d, "test", notarize.Predicate{
		Status: s, Kind: kind, MediaType: mediaType, Name: "release", Timestamp: time.Now().UTC(),
	}))
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.lc.Submit(e.t.Context(), ent); err != nil {
		e.t.Fatal(err)
	}
	e.sync()
}

// putManifest pushes raw manifest bytes to the upstream registry under
// repo:ref with contentType, as any client with push rights there can.
func (e *env) putManifest(repo, ref, contentType string, b []byte) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), http.MethodPut, e.upstream.URL+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(b))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		e.t.Fatalf("push %s:%s as %s: HTTP %d", repo, ref, contentType, resp.StatusCode)
	}
}

// TestAmbiguousManifestDoesNotLendTrust reproduces the CVE-2021-41190 class
// end to end: an image manifest that also carries a "manifests" list is
// signed as an image; an attacker pushes the same bytes again with an index
// Content-Type and asks the proxy for the unsigned manifest it lists. The
// document is refused (502 MANIFEST_INVALID) however it is served, and the
// listed manifest gets no trust from it (403).
func TestAmbiguousManifestDoesNotLendTrust(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name      string
		mediaType string // the document's own mediaType member; "" for none
		imageCT   string // Content-Type it was first pushed, and signed, with
		indexCT   string // Content-Type the attacker pushes it again with
	}{
		{"no mediaType member", "", notarize.MediaTypeOCIManifest, notarize.MediaTypeOCIIndex},
		{"declares a Docker image manifest", notarize.MediaTypeDockerManifest, notarize.MediaTypeDockerManifest, notarize.MediaTypeDockerManifestList},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := "app-" + strconv.Itoa(len(tc.mediaType))
			child := digestOf(t, e.push(repo, "unsigned")) // never signed
			childRaw, err := e.push(repo, "base").RawManifest()
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			if err := json.Unmarshal(childRaw, &doc); err != nil {
				t.Fatal(err)
			}
			delete(doc, "mediaType")
			if tc.mediaType != "" {
				doc["mediaType"] = tc.mediaType
			}
			doc["manifests"] = []map[string]any{{"mediaType": string(types.DockerManifestSchema2), "digest": string(child), "size": 1}}
			amb, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			ambD := notarize.DigestOf(amb)

			// Pushed and signed as an image manifest.
			e.putManifest(repo, "v1", tc.imageCT, amb)
			e.signKind(e.release, ambD, notarize.StatusTrusted, notarize.KindImage, tc.imageCT)
			// The attacker pushes the same bytes as an index.
			e.putManifest(repo, "evil", tc.indexCT, amb)
			resp, err := http.Get(e.upstream.URL + "/v2/" + repo + "/manifests/evil")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); ct != tc.indexCT {
				t.Fatalf("upstream serves the pushed bytes as %q, want %q: the attack is not set up", ct, tc.indexCT)
			}

			// The attacker's pull: the index reading first, then the child.
			for _, ref := range []string{"evil", string(ambD), "v1"} {
				code, hdr, body := e.do(http.MethodGet, manifestPath("local/"+repo, ref), http.Header{"Accept": {tc.indexCT, tc.imageCT}})
				if code != http.StatusBadGateway {
					t.Errorf("GET %s: %d as %s; want 502 MANIFEST_INVALID", ref, code, hdr.Get("Content-Type"))
					continue
				}
				if c, msg := ociErr(t, body); c != "MANIFEST_INVALID" || !strings.Contains(msg, "ambiguous") {
					t.Errorf("GET %s: %s %s; want MANIFEST_INVALID, ambiguous", ref, c, msg)
				}
			}
			code, _, body := e.do(http.MethodGet, manifestPath("local/"+repo, string(child)), nil)
			if c, _ := ociErr(t, body); code != http.StatusForbidden || c != "DENIED" {
				t.Fatalf("unsigned manifest listed by the ambiguous document: %d %s, want 403 DENIED", code, body)
			}
		})
	}
}

// TestImageStatementDoesNotTrustIndexChildren: a trusted statement that
// says "image" about bytes that are a real index trusts those bytes, but
// not the manifests they list; a statement that says "index" does.
func TestImageStatementDoesNotTrustIndexChildren(t *testing.T) {
	e := newEnv(t)
	idx := e.pushIndex("multi", "v1", 2)
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	index, child := digestOf(t, idx), notarize.Digest(im.Manifests[0].Digest.String())
	e.signKind(e.release, index, notarize.StatusTrusted, notarize.KindImage, notarize.MediaTypeOCIManifest)

	code, hdr, _ := e.do(http.MethodGet, manifestPath("local/multi", "v1"), nil)
	if code != http.StatusOK || hdr.Get("Docker-Content-Digest") != string(index) || hdr.Get("Content-Type") != notarize.MediaTypeOCIIndex {
		t.Fatalf("the signed digest itself: %d %s %s", code, hdr.Get("Docker-Content-Digest"), hdr.Get("Content-Type"))
	}
	code, _, body := e.do(http.MethodGet, manifestPath("local/multi", string(child)), nil)
	if c, msg := ociErr(t, body); code != http.StatusForbidden || c != "DENIED" || !strings.Contains(msg, "UNKNOWN") {
		t.Fatalf("child of an index signed as an image: %d %s %s, want 403", code, c, msg)
	}

	// Signed again, as what it is: its trust now covers what it lists.
	e.signKind(e.release, index, notarize.StatusTrusted, notarize.KindIndex, notarize.MediaTypeOCIIndex)
	if code, _, body := e.do(http.MethodGet, manifestPath("local/multi", string(child)), nil); code != http.StatusOK {
		t.Fatalf("child of an index signed as an index: %d %s", code, body)
	}
}

// TestManifestServedAsDeclared: the proxy refuses a document whose
// Content-Type disagrees with what its bytes declare, or that lacks a
// mediaType the spec requires, and serves the media type the bytes declare
// rather than the upstream's header.
func TestManifestServedAsDeclared(t *testing.T) {
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	good := manifestBytes(t) // an OCI image manifest
	e.sign(e.release, notarize.DigestOf(good), notarize.StatusTrusted)
	e.sync()
	noMT := bytes.Replace(good, []byte(`"mediaType":"application/vnd.oci.image.manifest.v1+json",`), nil, 1)
	e.sign(e.release, notarize.DigestOf(noMT), notarize.StatusTrusted)
	e.sync()
	serveAs := func(ct string, b []byte) {
		ev.serve(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ct)
			_, _ = w.Write(b)
		})
	}
	for _, tc := range []struct {
		name   string
		ct     string
		b      []byte
		wantCT string // "" for a refusal
	}{
		{"OCI image served as an index", notarize.MediaTypeOCIIndex, good, ""},
		{"OCI image served as Docker", notarize.MediaTypeDockerManifest, good, ""},
		{"without mediaType, served as Docker", notarize.MediaTypeDockerManifest, noMT, ""},
		{"without mediaType, served as an index", notarize.MediaTypeOCIIndex, noMT, ""},
		{"generic Content-Type", "application/json", good, notarize.MediaTypeOCIManifest},
		{"without mediaType, no Content-Type", "", noMT, notarize.MediaTypeOCIManifest},
		{"as declared", notarize.MediaTypeOCIManifest + "; charset=utf-8", good, notarize.MediaTypeOCIManifest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serveAs(tc.ct, tc.b)
			code, hdr, body := e.do(http.MethodGet, manifestPath("evil/app", "v1"), nil)
			if tc.wantCT == "" {
				if c, _ := ociErr(t, body); code != http.StatusBadGateway || c != "MANIFEST_INVALID" {
					t.Fatalf("%d %s, want 502 MANIFEST_INVALID", code, body)
				}
				return
			}
			if code != http.StatusOK || hdr.Get("Content-Type") != tc.wantCT || !bytes.Equal(body, tc.b) {
				t.Fatalf("%d Content-Type %q, want 200 %q", code, hdr.Get("Content-Type"), tc.wantCT)
			}
		})
	}
}
