package notarize

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"unicode/utf8"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// A manifest is classified once, from its bytes, by ClassifyManifest: an
// image manifest or an image index, never both. One document read two ways
// (CVE-2021-41190: an image manifest that also lists "manifests", signed as
// an image and served again as an index) would let trust in one reading
// flow to what only the other reading names, so such a document is refused
// wherever it is met: by sign, and by the proxy.
//
// Specifications:
//   - OCI image manifest and index: https://github.com/opencontainers/image-spec/blob/main/manifest.md, image-index.md
//   - Docker Image Manifest V2, Schema 2 and manifest list:
//     https://github.com/distribution/distribution/blob/main/docs/content/spec/manifest-v2-2.md

// Manifest media types understood by ClassifyManifest. The Docker ones are
// spelled out here rather than taken from go-containerregistry (its
// types.DockerManifestSchema2 and types.DockerManifestList), which the core
// must not import.
const (
	MediaTypeOCIManifest = ocispec.MediaTypeImageManifest
	MediaTypeOCIIndex    = ocispec.MediaTypeImageIndex
	// MediaTypeDockerManifest is Docker Image Manifest V2, Schema 2.
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	// MediaTypeDockerManifestList is the Docker manifest list (schema 2).
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// Docker Image Manifest V2, Schema 1 (deprecated, unsigned and signed): refused.
const (
	mediaTypeDockerSchema1       = "application/vnd.docker.distribution.manifest.v1+json"
	mediaTypeDockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// maxManifestDepth bounds the nesting of a manifest's JSON: manifests nest
// a few levels, and the member check recurses once per level.
const maxManifestDepth = 64

// Errors of ClassifyManifest, carried by a *ManifestError.
var (
	// ErrBadManifest: the document is not a manifest this package reads
	// (invalid JSON, a repeated member, schema 1, an unknown media type, a
	// missing required member, a bad digest).
	ErrBadManifest = errors.New("bad manifest")
	// ErrAmbiguousManifest: the document could be read as an image manifest
	// and as an index, or its media type disagrees with its structure or
	// with the Content-Type it is served with. It is also an ErrBadManifest.
	ErrAmbiguousManifest = errors.New("ambiguous manifest")
)

// ManifestError is why ClassifyManifest refused a document, with what it
// found. errors.Is matches ErrBadManifest, and ErrAmbiguousManifest for an
// ambiguous one.
type ManifestError struct {
	// Err is ErrBadManifest or ErrAmbiguousManifest.
	Err error
	// Reason says what is wrong, in a few words.
	Reason string
	// Declared is the document's mediaType member ("" when absent or unread).
	Declared string
	// Served is the media type of the Content-Type it came with ("" when
	// none or generic).
	Served string
	// Structure is what the members say: "image", "index", "image and
	// index" or "" (unread, or neither).
	Structure string
}

// Error describes the refusal with what was found.
func (e *ManifestError) Error() string {
	var b strings.Builder
	b.WriteString(e.Err.Error() + ": " + e.Reason)
	var found []string
	if e.Declared != "" {
		found = append(found, fmt.Sprintf("mediaType member %q", truncate(e.Declared, 100)))
	}
	if e.Served != "" {
		found = append(found, fmt.Sprintf("served as %q", truncate(e.Served, 100)))
	}
	if e.Structure != "" {
		found = append(found, "members of an "+e.Structure)
	}
	if len(found) > 0 {
		b.WriteString(" (" + strings.Join(found, ", ") + ")")
	}
	return b.String()
}

// Unwrap returns Err, and ErrBadManifest too for an ambiguous manifest.
func (e *ManifestError) Unwrap() []error {
	if e.Err == ErrAmbiguousManifest {
		return []error{e.Err, ErrBadManifest}
	}
	return []error{e.Err}
}

// Descriptor is a content descriptor in a manifest: what it points to.
type Descriptor struct {
	MediaType string
	Digest    Digest
	Size      int64
	// Platform is the platform of an index's manifest, when the index says.
	Platform *ocispec.Platform
}

// Manifest is a classified manifest: exactly one kind, the media type its
// bytes declare, and what it references.
type Manifest struct {
	// Kind is KindImage or KindIndex.
	Kind string
	// MediaType is the media type the bytes declare: the mediaType member,
	// or for an OCI document without one, the OCI type of its structure.
	MediaType string
	// Config and Layers are an image manifest's blobs (zero for an index).
	Config Descriptor
	Layers []Descriptor
	// Manifests are the manifests an index lists (nil for an image).
	Manifests []Descriptor
	// Subject is the OCI 1.1 subject the document refers to, if any.
	Subject *Descriptor
}

// Blobs returns the blobs an image manifest references, config first then
// the layers, and nil for an index (whose children are manifests, not blobs).
func (m *Manifest) Blobs() []Digest {
	if m.Kind != KindImage {
		return nil
	}
	ds := make([]Digest, 0, 1+len(m.Layers))
	ds = append(ds, m.Config.Digest)
	for _, l := range m.Layers {
		ds = append(ds, l.Digest)
	}
	return ds
}

// Children returns the digests of the manifests an index lists, and nil
// for an image manifest.
func (m *Manifest) Children() []Digest {
	if m.Kind != KindIndex {
		return nil
	}
	ds := make([]Digest, 0, len(m.Manifests))
	for _, c := range m.Manifests {
		ds = append(ds, c.Digest)
	}
	return ds
}

// IsIndexMediaType reports whether mt is an image index media type (OCI
// index or Docker manifest list).
func IsIndexMediaType(mt string) bool {
	return mt == MediaTypeOCIIndex || mt == MediaTypeDockerManifestList
}

// IsImageMediaType reports whether mt is an image manifest media type (OCI
// or Docker schema 2).
func IsImageMediaType(mt string) bool {
	return mt == MediaTypeOCIManifest || mt == MediaTypeDockerManifest
}

// manifestDoc is the shape a manifest is decoded into: the members of
// either kind, so that a document holding both is seen to. Members not
// named here (annotations, artifactType, extensions) are allowed and ignored.
type manifestDoc struct {
	SchemaVersion *int             `json:"schemaVersion"`
	MediaType     *string          `json:"mediaType"`
	Config        *descriptorDoc   `json:"config"`
	Layers        []*descriptorDoc `json:"layers"`
	Manifests     []*descriptorDoc `json:"manifests"`
	Subject       *descriptorDoc   `json:"subject"`
}

type descriptorDoc struct {
	MediaType string            `json:"mediaType"`
	Digest    string            `json:"digest"`
	Size      int64             `json:"size"`
	Platform  *ocispec.Platform `json:"platform"`
}

// ClassifyManifest reads manifest bytes, served with contentType (an HTTP
// Content-Type, "" when there is none), into exactly one kind. It refuses,
// with a *ManifestError:
//   - invalid JSON or UTF-8, trailing data, a member name repeated in one
//     object or differing from a member this function reads only in case
//     (JSON readers disagree on which one counts), nesting deeper than 64;
//   - schema 1, a schemaVersion other than 2, an unknown media type;
//   - a document with both config or layers and manifests (ambiguous);
//   - a mediaType member that disagrees with the document's structure, or
//     with contentType unless that is generic (application/json,
//     text/plain, application/octet-stream) (ambiguous);
//   - a Docker schema 2 manifest or manifest list without its mediaType
//     member (an OCI document without one is classified by its structure,
//     and a specific contentType must agree with it);
//   - a descriptor without a media type, or with a negative size or a
//     digest that is not sha256:<64 lowercase hex>.
//
// Unknown members (annotations, artifactType, extensions) are allowed.
func ClassifyManifest(b []byte, contentType string) (*Manifest, error) {
	served := servedMediaType(contentType)
	fail := func(err error, declared, structure, format string, a ...any) error {
		return &ManifestError{Err: err, Reason: fmt.Sprintf(format, a...), Declared: declared, Served: served, Structure: structure}
	}
	present, err := checkManifestJSON(b)
	if err != nil {
		return nil, fail(ErrBadManifest, "", "", "%v", err)
	}
	var doc manifestDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, fail(ErrBadManifest, "", "", "member %q is a JSON %s, not what a manifest holds there", truncate(te.Field, 80), te.Value)
		}
		return nil, fail(ErrBadManifest, "", "", "%v", err)
	}
	declared := ""
	if present["mediaType"] {
		if doc.MediaType == nil || *doc.MediaType == "" {
			return nil, fail(ErrBadManifest, "", "", "mediaType member empty or null")
		}
		declared = *doc.MediaType
	}
	if isSchema1(declared) || isSchema1(served) || doc.SchemaVersion != nil && *doc.SchemaVersion == 1 {
		return nil, fail(ErrBadManifest, declared, "", "Docker schema 1 manifests are not supported")
	}
	if doc.SchemaVersion == nil || *doc.SchemaVersion != 2 {
		return nil, fail(ErrBadManifest, declared, "", "schemaVersion must be 2")
	}
	hasImage, hasIndex := present["config"] || present["layers"], present["manifests"]
	structure := KindImage
	switch {
	case hasImage && hasIndex:
		return nil, fail(ErrAmbiguousManifest, declared, "image and index", "it has both config or layers and manifests")
	case hasIndex:
		structure = KindIndex
	case !hasImage:
		return nil, fail(ErrBadManifest, declared, "", "neither config nor layers nor manifests: not an image manifest or index")
	}
	mt := declared
	if mt == "" {
		if served == MediaTypeDockerManifest || served == MediaTypeDockerManifestList {
			return nil, fail(ErrBadManifest, "", structure, "a Docker schema 2 manifest or manifest list must carry its mediaType member")
		}
		mt = MediaTypeOCIManifest
		if structure == KindIndex {
			mt = MediaTypeOCIIndex
		}
	}
	var kind string
	switch {
	case IsImageMediaType(mt):
		kind = KindImage
	case IsIndexMediaType(mt):
		kind = KindIndex
	default:
		return nil, fail(ErrBadManifest, declared, structure, "unknown manifest media type %q", truncate(mt, 100))
	}
	if kind != structure {
		return nil, fail(ErrAmbiguousManifest, declared, structure, "its mediaType says %s but its members are those of an %s", kind, structure)
	}
	if served != "" && served != mt {
		return nil, fail(ErrAmbiguousManifest, declared, structure, "the Content-Type it is served with disagrees with the media type its bytes give, %q", mt)
	}
	m, err := doc.descriptors(kind)
	if err != nil {
		return nil, fail(ErrBadManifest, declared, structure, "%v", err)
	}
	m.Kind, m.MediaType = kind, mt
	return m, nil
}

// descriptors checks and converts the descriptors of a document of kind.
func (doc *manifestDoc) descriptors(kind string) (*Manifest, error) {
	m := &Manifest{}
	if doc.Subject != nil {
		s, err := doc.Subject.descriptor()
		if err != nil {
			return nil, fmt.Errorf("subject: %w", err)
		}
		m.Subject = &s
	}
	if kind == KindIndex {
		m.Manifests = make([]Descriptor, 0, len(doc.Manifests))
		for i, c := range doc.Manifests {
			d, err := c.descriptor()
			if err != nil {
				return nil, fmt.Errorf("manifests[%d]: %w", i, err)
			}
			m.Manifests = append(m.Manifests, d)
		}
		return m, nil
	}
	if doc.Config == nil {
		return nil, errors.New("an image manifest needs a config")
	}
	var err error
	if m.Config, err = doc.Config.descriptor(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	m.Layers = make([]Descriptor, 0, len(doc.Layers))
	for i, l := range doc.Layers {
		d, err := l.descriptor()
		if err != nil {
			return nil, fmt.Errorf("layers[%d]: %w", i, err)
		}
		m.Layers = append(m.Layers, d)
	}
	return m, nil
}

func (dd *descriptorDoc) descriptor() (Descriptor, error) {
	if dd == nil {
		return Descriptor{}, errors.New("null descriptor")
	}
	if dd.MediaType == "" {
		return Descriptor{}, errors.New("descriptor without a mediaType")
	}
	d, err := ParseDigest(dd.Digest)
	if err != nil {
		return Descriptor{}, err
	}
	if dd.Size < 0 {
		return Descriptor{}, fmt.Errorf("negative size %d", dd.Size)
	}
	return Descriptor{MediaType: dd.MediaType, Digest: d, Size: dd.Size, Platform: dd.Platform}, nil
}

func isSchema1(mt string) bool {
	return mt == mediaTypeDockerSchema1 || mt == mediaTypeDockerSchema1Signed
}

// servedMediaType returns the media type of a Content-Type header value,
// lower-cased and without parameters, or "" when it says nothing about a
// manifest (absent, or a generic type some registries send).
func servedMediaType(contentType string) string {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	switch mt {
	case "application/json", "text/plain", "application/octet-stream":
		return ""
	}
	return mt
}

// checkManifestJSON checks b is one JSON object of valid UTF-8, nested at
// most maxManifestDepth deep, in which no object repeats a member name and
// no member name differs only in case from one manifestDoc reads (see
// memberWalk: encoding/json would read the last of two, or a miscased
// name, where another reader reads the first or nothing). It returns the
// top-level member names.
func checkManifestJSON(b []byte) (map[string]bool, error) {
	if !utf8.Valid(b) {
		return nil, errors.New("not valid UTF-8")
	}
	if !bytes.HasPrefix(bytes.TrimLeft(b, " \t\r\n"), []byte("{")) {
		return nil, errors.New("not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	present := map[string]bool{}
	w := memberWalk{unknown: refuseCaseVariants, maxDepth: maxManifestDepth, top: present}
	if err := w.walk(dec, reflect.TypeFor[manifestDoc](), 0); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON object")
	}
	return present, nil
}

// saysIndex reports whether a statement's predicate says its subject is an
// image index: kind "index" or an index media type, with neither naming
// something else.
func saysIndex(p Predicate) bool {
	if p.Kind != "" && p.Kind != KindIndex {
		return false
	}
	if p.MediaType != "" && !IsIndexMediaType(p.MediaType) {
		return false
	}
	return p.Kind == KindIndex || IsIndexMediaType(p.MediaType)
}
