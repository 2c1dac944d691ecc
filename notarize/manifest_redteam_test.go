package notarize_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/notarize"
)

// Red team: documents that two JSON readers read differently, or that
// read as both an image manifest and an index, must be refused whatever
// the spelling.
func TestRedTeamClassifyManifestSpellings(t *testing.T) {
	kid := fmt.Sprintf(`[{"mediaType":%q,"digest":"%s","size":7}]`, ociM, kidD)
	image := strings.TrimSuffix(imageDoc(ociM), "}")
	index := strings.TrimSuffix(indexDoc(ociI), "}")
	layer := fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":5}`, layerD)
	for name, tc := range map[string]struct{ doc, ct string }{
		"escaped manifests member":           {image + `,"\u006danifests":` + kid + `}`, ociI},
		"escaped manifests, image type":      {image + `,"\u006danifests":` + kid + `}`, ociM},
		"case-variant Manifests":             {image + `,"Manifests":` + kid + `}`, ""},
		"long s manifeſts (folds to s)":      {image + `,"manifeſts":` + kid + `}`, ""},
		"escaped long s":                     {image + `,"manife\u017fts":` + kid + `}`, ""},
		"case-variant LAYERS in an index":    {index + `,"LAYERS":[` + layer + `]}`, ociI},
		"config null in an index":            {index + `,"config":null}`, ociI},
		"layers null and manifests":          {image + `,"manifests":null}`, ""},
		"empty manifests in an image":        {image + `,"manifests":[]}`, ociM},
		"repeated mediaType":                 {image + `,"mediaType":"` + ociI + `"}`, ""},
		"repeated mediaType, escaped":        {image + `,"media\u0054ype":"` + ociI + `"}`, ""},
		"case-variant MediaType":             {image + `,"MediaType":"` + ociI + `"}`, ""},
		"repeated schemaVersion":             {image + `,"schemaVersion":1}`, ""},
		"schemaVersion 2.0":                  {strings.Replace(imageDoc(ociM), `"schemaVersion":2`, `"schemaVersion":2.0`, 1), ociM},
		"schemaVersion 2e0":                  {strings.Replace(imageDoc(ociM), `"schemaVersion":2`, `"schemaVersion":2e0`, 1), ociM},
		"schemaVersion string":               {strings.Replace(imageDoc(ociM), `"schemaVersion":2`, `"schemaVersion":"2"`, 1), ociM},
		"size 5e0 in a layer":                {strings.Replace(imageDoc(ociM), `"size":5`, `"size":5e0`, 1), ociM},
		"descriptor digest twice":            {strings.Replace(imageDoc(ociM), `"size":5`, `"size":5,"digest":"`+string(kidD)+`"`, 1), ociM},
		"descriptor Digest case variant":     {strings.Replace(imageDoc(ociM), `"size":5`, `"size":5,"Digest":"`+string(kidD)+`"`, 1), ociM},
		"platform os case variant":           {strings.Replace(indexDoc(ociI), `"os":"linux"`, `"os":"linux","OS":"windows"`, 1), ociI},
		"child without mediaType":            {fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"digest":"%s","size":7}]}`, ociI, kidD), ociI},
		"child digest upper case":            {fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":"%s","size":7}]}`, ociI, ociM, strings.ToUpper(string(kidD))), ociI},
		"docker list served as OCI index":    {indexDoc(dockL), ociI},
		"docker manifest without mediaType":  {imageDoc(""), dockM},
		"OCI index structure, image type":    {indexDoc(""), ociM},
		"image structure, index type":        {imageDoc(""), ociI},
		"BOM before the object":              {"\ufeff" + imageDoc(ociM), ociM},
		"trailing second object":             {imageDoc(ociM) + indexDoc(ociI), ""},
		"invalid UTF-8 in an annotation":     {strings.Replace(imageDoc(ociM), `"a":"b"`, "\"a\":\"\xff\"", 1), ociM},
		"schema 1 by Content-Type":           {imageDoc(""), "application/vnd.docker.distribution.manifest.v1+prettyjws"},
		"subject twice":                      {image + `,"subject":` + layer + `,"subject":` + layer + `}`, ociM},
		"subject case variant":               {image + `,"subject":` + layer + `,"Subject":` + layer + `}`, ociM},
		"mediaType value with another case":  {imageDoc("application/vnd.OCI.image.manifest.v1+json"), ""},
		"manifests in a nested unknown, top": {image + `,"manifests":` + kid + `,"x":{"manifests":[]}}`, ""},
	} {
		t.Run(name, func(t *testing.T) {
			m, err := notarize.ClassifyManifest([]byte(tc.doc), tc.ct)
			if err == nil {
				t.Fatalf("accepted as %s (%s): %s", m.Kind, m.MediaType, tc.doc)
			}
			if !errors.Is(err, notarize.ErrBadManifest) {
				t.Fatalf("error %v is not ErrBadManifest", err)
			}
		})
	}
}

// TestRedTeamClassifyAgreesWithEncodingJSON: for a document it accepts,
// what ClassifyManifest reports is what encoding/json (the reader of
// docker, containerd and go-containerregistry) reads: the same kind and
// the same references, so no reader sees children the classifier missed.
func TestRedTeamClassifyAgreesWithEncodingJSON(t *testing.T) {
	for _, doc := range []string{
		imageDoc(ociM), imageDoc(""), indexDoc(ociI), indexDoc(""), imageDoc(dockM), indexDoc(dockL),
		strings.TrimSuffix(imageDoc(ociM), "}") + `,"artifactType":"application/x","x":{"Manifests":[{"digest":"` + string(kidD) + `"}]}}`,
	} {
		m, err := notarize.ClassifyManifest([]byte(doc), "")
		if err != nil {
			t.Fatalf("refused %s: %v", doc, err)
		}
		var other struct {
			Config    *struct{ Digest string }
			Layers    []struct{ Digest string }
			Manifests []struct{ Digest string }
		}
		if err := json.Unmarshal([]byte(doc), &other); err != nil {
			t.Fatal(err)
		}
		if (len(other.Manifests) > 0) != (m.Kind == notarize.KindIndex) || (other.Config != nil) != (m.Kind == notarize.KindImage) {
			t.Fatalf("classified %s, encoding/json reads config %v and %d manifests: %s", m.Kind, other.Config != nil, len(other.Manifests), doc)
		}
	}
}
