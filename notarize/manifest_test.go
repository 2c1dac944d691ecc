package notarize_test

import (
	"crypto"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

var (
	cfgD   = notarize.DigestOf([]byte("config"))
	layerD = notarize.DigestOf([]byte("layer"))
	kidD   = notarize.DigestOf([]byte("child"))
)

const (
	ociM   = notarize.MediaTypeOCIManifest
	ociI   = notarize.MediaTypeOCIIndex
	dockM  = notarize.MediaTypeDockerManifest
	dockL  = notarize.MediaTypeDockerManifestList
	cfgDsc = `{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":6}`
)

func imageDoc(mediaType string) string {
	mt := ""
	if mediaType != "" {
		mt = fmt.Sprintf(`"mediaType":%q,`, mediaType)
	}
	return fmt.Sprintf(`{"schemaVersion":2,%s"config":`+cfgDsc+`,"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":5}],"annotations":{"a":"b"}}`,
		mt, cfgD, layerD)
}

func indexDoc(mediaType string) string {
	mt := ""
	if mediaType != "" {
		mt = fmt.Sprintf(`"mediaType":%q,`, mediaType)
	}
	return fmt.Sprintf(`{"schemaVersion":2,%s"manifests":[{"mediaType":%q,"digest":"%s","size":7,"platform":{"architecture":"amd64","os":"linux"}}],"x-extension":{"deep":[1,2]}}`,
		mt, ociM, kidD)
}

// bothDoc is the CVE-2021-41190 document: an image manifest that also lists manifests.
func bothDoc(mediaType string) string {
	return strings.TrimSuffix(imageDoc(mediaType), "}") + fmt.Sprintf(`,"manifests":[{"mediaType":%q,"digest":"%s","size":7}]}`, ociM, kidD)
}

func TestClassifyManifest(t *testing.T) {
	for _, tc := range []struct {
		name, doc, ct string
		kind, mt      string // accepted
		err           error  // refused: ErrBadManifest or ErrAmbiguousManifest
		errHas        string
	}{
		{name: "OCI image", doc: imageDoc(ociM), ct: ociM, kind: notarize.KindImage, mt: ociM},
		{name: "OCI image, Content-Type with parameters and case", doc: imageDoc(ociM), ct: "Application/VND.oci.image.manifest.v1+json; charset=utf-8", kind: notarize.KindImage, mt: ociM},
		{name: "OCI image, generic Content-Type", doc: imageDoc(ociM), ct: "application/json", kind: notarize.KindImage, mt: ociM},
		{name: "OCI image, no Content-Type", doc: imageDoc(ociM), kind: notarize.KindImage, mt: ociM},
		{name: "OCI image without mediaType, by structure", doc: imageDoc(""), ct: "text/plain", kind: notarize.KindImage, mt: ociM},
		{name: "OCI image without mediaType, served as OCI image", doc: imageDoc(""), ct: ociM, kind: notarize.KindImage, mt: ociM},
		{name: "Docker image", doc: imageDoc(dockM), ct: dockM, kind: notarize.KindImage, mt: dockM},
		{name: "OCI index", doc: indexDoc(ociI), ct: ociI, kind: notarize.KindIndex, mt: ociI},
		{name: "OCI index without mediaType", doc: indexDoc(""), kind: notarize.KindIndex, mt: ociI},
		{name: "Docker list", doc: indexDoc(dockL), ct: dockL, kind: notarize.KindIndex, mt: dockL},
		{name: "empty index", doc: `{"schemaVersion":2,"mediaType":"` + ociI + `","manifests":[]}`, kind: notarize.KindIndex, mt: ociI},

		{name: "image and manifests", doc: bothDoc(ociM), ct: ociM, err: notarize.ErrAmbiguousManifest, errHas: "both config or layers and manifests"},
		{name: "image and manifests served as index", doc: bothDoc(ociM), ct: ociI, err: notarize.ErrAmbiguousManifest, errHas: `served as "` + ociI},
		{name: "image and manifests declared index", doc: bothDoc(ociI), err: notarize.ErrAmbiguousManifest},
		{name: "image and manifests without mediaType", doc: bothDoc(""), err: notarize.ErrAmbiguousManifest},
		{name: "index with null layers", doc: strings.TrimSuffix(indexDoc(ociI), "}") + `,"layers":null}`, err: notarize.ErrAmbiguousManifest},
		{name: "index with empty manifests and a config", doc: `{"schemaVersion":2,"mediaType":"` + ociI + `","manifests":[],"config":` + fmt.Sprintf(cfgDsc, cfgD) + `}`, err: notarize.ErrAmbiguousManifest},
		{name: "image served as index", doc: imageDoc(ociM), ct: ociI, err: notarize.ErrAmbiguousManifest, errHas: "disagrees"},
		{name: "index served as image", doc: indexDoc(ociI), ct: ociM, err: notarize.ErrAmbiguousManifest},
		{name: "OCI image served as Docker", doc: imageDoc(ociM), ct: dockM, err: notarize.ErrAmbiguousManifest},
		{name: "image served as something else", doc: imageDoc(ociM), ct: "text/html", err: notarize.ErrAmbiguousManifest},
		{name: "structureless image served as index", doc: imageDoc(""), ct: ociI, err: notarize.ErrAmbiguousManifest},
		{name: "declares index, is an image", doc: imageDoc(ociI), err: notarize.ErrAmbiguousManifest, errHas: "mediaType says index"},
		{name: "declares image, is an index", doc: indexDoc(dockM), err: notarize.ErrAmbiguousManifest},

		{name: "Docker image without mediaType", doc: imageDoc(""), ct: dockM, err: notarize.ErrBadManifest, errHas: "must carry its mediaType"},
		{name: "Docker list without mediaType", doc: indexDoc(""), ct: dockL, err: notarize.ErrBadManifest, errHas: "must carry its mediaType"},
		{name: "unknown media type", doc: imageDoc("application/vnd.oci.artifact.manifest.v1+json"), err: notarize.ErrBadManifest, errHas: "unknown manifest media type"},
		{name: "media type in other case", doc: imageDoc("application/vnd.OCI.image.manifest.v1+json"), err: notarize.ErrBadManifest},
		{name: "empty mediaType", doc: imageDoc(" "), err: notarize.ErrBadManifest},
		{name: "null mediaType", doc: `{"schemaVersion":2,"mediaType":null,"config":` + fmt.Sprintf(cfgDsc, cfgD) + `}`, err: notarize.ErrBadManifest},
		{name: "schema 1", doc: `{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}`, err: notarize.ErrBadManifest, errHas: "schema 1"},
		{name: "schema 1 media type", doc: imageDoc("application/vnd.docker.distribution.manifest.v1+prettyjws"), err: notarize.ErrBadManifest, errHas: "schema 1"},
		{name: "served as schema 1", doc: imageDoc(""), ct: "application/vnd.docker.distribution.manifest.v1+json", err: notarize.ErrBadManifest, errHas: "schema 1"},
		{name: "no schemaVersion", doc: strings.Replace(imageDoc(ociM), `"schemaVersion":2,`, "", 1), err: notarize.ErrBadManifest},
		{name: "schemaVersion 3", doc: strings.Replace(imageDoc(ociM), `"schemaVersion":2`, `"schemaVersion":3`, 1), err: notarize.ErrBadManifest},
		{name: "neither", doc: `{"schemaVersion":2,"mediaType":"` + ociM + `"}`, err: notarize.ErrBadManifest, errHas: "neither"},
		{name: "image without config", doc: `{"schemaVersion":2,"mediaType":"` + ociM + `","layers":[]}`, err: notarize.ErrBadManifest, errHas: "needs a config"},
		{name: "not JSON", doc: "<html>", err: notarize.ErrBadManifest},
		{name: "a JSON array", doc: "[]", err: notarize.ErrBadManifest},
		{name: "trailing data", doc: indexDoc(ociI) + "{}", err: notarize.ErrBadManifest, errHas: "trailing"},
		{name: "invalid UTF-8", doc: strings.Replace(indexDoc(ociI), `"deep"`, "\"d\xffp\"", 1), err: notarize.ErrBadManifest, errHas: "UTF-8"},
		{name: "repeated mediaType", doc: strings.Replace(imageDoc(ociM), `"schemaVersion":2,`, `"schemaVersion":2,"mediaType":"`+ociI+`",`, 1), err: notarize.ErrBadManifest, errHas: "twice"},
		{name: "repeated child digest member", doc: strings.Replace(indexDoc(ociI), `"size":7`, `"size":7,"digest":"`+string(cfgD)+`"`, 1), err: notarize.ErrBadManifest, errHas: "twice"},
		{name: "repeated member in an extension", doc: strings.Replace(indexDoc(ociI), `{"deep":[1,2]}`, `{"a":1,"a":2}`, 1), err: notarize.ErrBadManifest, errHas: "twice"},
		{name: "miscased Manifests beside layers", doc: strings.TrimSuffix(imageDoc(ociM), "}") + `,"Manifests":[]}`, err: notarize.ErrBadManifest, errHas: "only in case"},
		{name: "miscased child Digest", doc: strings.Replace(indexDoc(ociI), `"size":7`, `"size":7,"Digest":"`+string(cfgD)+`"`, 1), err: notarize.ErrBadManifest, errHas: "only in case"},
		{name: "Kelvin-sign mediaType", doc: strings.Replace(imageDoc(ociM), `"schemaVersion":2,`, `"schemaVersion":2,"mediaType":"x","mediaType\u212a":1,`, 1), err: notarize.ErrBadManifest},
		{name: "bad child digest", doc: strings.Replace(indexDoc(ociI), string(kidD), "sha256:ABC", 1), err: notarize.ErrBadManifest, errHas: "manifests[0]"},
		{name: "sha512 child digest", doc: strings.Replace(indexDoc(ociI), string(kidD), "sha512:"+strings.Repeat("a", 128), 1), err: notarize.ErrBadManifest},
		{name: "bad layer digest", doc: strings.Replace(imageDoc(ociM), string(layerD), "sha256:", 1), err: notarize.ErrBadManifest, errHas: "layers[0]"},
		{name: "negative size", doc: strings.Replace(indexDoc(ociI), `"size":7`, `"size":-7`, 1), err: notarize.ErrBadManifest},
		{name: "child without media type", doc: strings.Replace(indexDoc(ociI), `"mediaType":"`+ociM+`",`, "", 1), err: notarize.ErrBadManifest},
		{name: "null child", doc: `{"schemaVersion":2,"manifests":[null]}`, err: notarize.ErrBadManifest},
		{name: "manifests not a list", doc: `{"schemaVersion":2,"manifests":{}}`, err: notarize.ErrBadManifest},
		{name: "too deep", doc: `{"schemaVersion":2,"manifests":[],"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, err: notarize.ErrBadManifest, errHas: "deeper"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := notarize.ClassifyManifest([]byte(tc.doc), tc.ct)
			if tc.err != nil {
				var me *notarize.ManifestError
				if !errors.Is(err, tc.err) || !errors.Is(err, notarize.ErrBadManifest) || !errors.As(err, &me) || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("ClassifyManifest = %+v, %v; want %v containing %q", m, err, tc.err, tc.errHas)
				}
				if tc.err == notarize.ErrBadManifest && errors.Is(err, notarize.ErrAmbiguousManifest) {
					t.Fatalf("%v: not ambiguous, just bad", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Kind != tc.kind || m.MediaType != tc.mt {
				t.Fatalf("kind %s, media type %s; want %s %s", m.Kind, m.MediaType, tc.kind, tc.mt)
			}
		})
	}
}

func TestClassifyManifestReferences(t *testing.T) {
	img, err := notarize.ClassifyManifest([]byte(imageDoc(ociM)), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := img.Blobs(); !reflect.DeepEqual(got, []notarize.Digest{cfgD, layerD}) || img.Children() != nil || img.Manifests != nil {
		t.Fatalf("image: blobs %v, children %v", got, img.Children())
	}
	if img.Config.Size != 6 || img.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
		t.Fatalf("image descriptors %+v", img)
	}
	idx, err := notarize.ClassifyManifest([]byte(indexDoc(dockL)), dockL)
	if err != nil {
		t.Fatal(err)
	}
	if got := idx.Children(); !reflect.DeepEqual(got, []notarize.Digest{kidD}) || idx.Blobs() != nil || idx.Layers != nil {
		t.Fatalf("index: children %v, blobs %v", got, idx.Blobs())
	}
	c := idx.Manifests[0]
	if c.MediaType != ociM || c.Size != 7 || c.Platform == nil || c.Platform.OS != "linux" || c.Platform.Architecture != "amd64" {
		t.Fatalf("child %+v", c)
	}
}

func FuzzClassifyManifest(f *testing.F) {
	for _, mt := range []string{ociM, ociI, dockM, dockL, ""} {
		for _, ct := range []string{"", "application/json", ociM, ociI, dockM, dockL, "text/html"} {
			f.Add([]byte(imageDoc(mt)), ct)
			f.Add([]byte(indexDoc(mt)), ct)
			f.Add([]byte(bothDoc(mt)), ct)
		}
	}
	f.Add([]byte(`{"schemaVersion":1}`), "")
	f.Add([]byte(`{"schemaVersion":2,"manifests":[],"Manifests":null}`), "")
	f.Fuzz(func(t *testing.T, b []byte, ct string) {
		m, err := notarize.ClassifyManifest(b, ct)
		m2, err2 := notarize.ClassifyManifest(b, ct)
		if fmt.Sprint(err) != fmt.Sprint(err2) || !reflect.DeepEqual(m, m2) {
			t.Fatalf("not deterministic: %v / %v", err, err2)
		}
		if err != nil {
			if !errors.Is(err, notarize.ErrBadManifest) {
				t.Fatalf("error not an ErrBadManifest: %v", err)
			}
			return
		}
		switch m.Kind {
		case notarize.KindImage:
			if !notarize.IsImageMediaType(m.MediaType) || notarize.IsIndexMediaType(m.MediaType) || m.Manifests != nil || m.Children() != nil || len(m.Blobs()) != 1+len(m.Layers) {
				t.Fatalf("image that is not only an image: %+v", m)
			}
		case notarize.KindIndex:
			if !notarize.IsIndexMediaType(m.MediaType) || notarize.IsImageMediaType(m.MediaType) || m.Layers != nil || m.Config != (notarize.Descriptor{}) || m.Blobs() != nil || len(m.Children()) != len(m.Manifests) {
				t.Fatalf("index that is not only an index: %+v", m)
			}
		default:
			t.Fatalf("kind %q", m.Kind)
		}
		for _, d := range append(m.Blobs(), m.Children()...) {
			if _, err := notarize.ParseDigest(string(d)); err != nil {
				t.Fatalf("accepted a bad digest: %v", err)
			}
		}
		// Served with the media type it declares, it reads the same; served
		// with the other kind's, it is refused.
		again, err := notarize.ClassifyManifest(b, m.MediaType)
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("served as its own media type %s: %v", m.MediaType, err)
		}
		other := notarize.MediaTypeOCIIndex
		if m.Kind == notarize.KindIndex {
			other = notarize.MediaTypeOCIManifest
		}
		if _, err := notarize.ClassifyManifest(b, other); !errors.Is(err, notarize.ErrAmbiguousManifest) {
			t.Fatalf("%s accepted when served as %s: %v", m.Kind, other, err)
		}
	})
}

// asIndex returns r with its statement saying its subject is an image index.
func asIndex(r notarize.Record) notarize.Record {
	st := *r.Statement
	st.Predicate.Kind = notarize.KindIndex
	r.Statement = &st
	return r
}

// TestEvaluateIndexTrustNeedsAnIndexStatement: trust flows from an index to
// what it lists only when the trusted statement that decides the index says
// it is an index; a statement about an image manifest (whose bytes may also
// read as an index) vouches for those bytes alone.
func TestEvaluateIndexTrustNeedsAnIndexStatement(t *testing.T) {
	p, err := notarize.ParsePolicy([]byte(examplePolicy))
	if err != nil {
		t.Fatal(err)
	}
	release, ops := polKey(t), polKey(t)
	ev, err := p.Evaluator(map[string][]crypto.PublicKey{"release": {release}, "ops": {ops}})
	if err != nil {
		t.Fatal(err)
	}
	child, idx := notarize.DigestOf([]byte("child")), notarize.DigestOf([]byte("index"))
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	with := func(kind, mediaType string) notarize.Record {
		r := polRecord(t, 1, release, idx, notarize.StatusTrusted, at)
		r.Statement.Predicate.Kind, r.Statement.Predicate.MediaType = kind, mediaType
		return r
	}
	for _, tc := range []struct {
		name    string
		records []notarize.Record
		trusted bool
	}{
		{"kind index", []notarize.Record{with(notarize.KindIndex, "")}, true},
		{"kind index, OCI index media type", []notarize.Record{with(notarize.KindIndex, ociI)}, true},
		{"Docker list media type, no kind", []notarize.Record{with("", dockL)}, true},
		{"kind image", []notarize.Record{with(notarize.KindImage, "")}, false},
		{"kind image, image media type", []notarize.Record{with(notarize.KindImage, ociM)}, false},
		{"no kind, no media type", []notarize.Record{with("", "")}, false},
		{"kind file", []notarize.Record{with(notarize.KindFile, "")}, false},
		{"kind index but an image media type", []notarize.Record{with(notarize.KindIndex, dockM)}, false},
		{"kind image but an index media type", []notarize.Record{with(notarize.KindImage, ociI)}, false},
		{"signed as image after as index: the current one decides", []notarize.Record{
			with(notarize.KindIndex, ociI),
			func() notarize.Record {
				r := with(notarize.KindImage, ociM)
				r.Index, r.Statement.Predicate.Timestamp = 2, at.Add(time.Hour)
				return r
			}(),
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ev.Evaluate("docker.io/library/nginx", child, nil, []notarize.Parent{{Digest: idx, Records: tc.records}})
			if (got.Verdict == notarize.Trusted) != tc.trusted || got.Allow != tc.trusted || (got.Via != nil) != tc.trusted {
				t.Fatalf("verdict %v allow %v via %v, want trusted=%v (%s)", got.Verdict, got.Allow, got.Via, tc.trusted, got.Reason())
			}
		})
	}
}
