package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/gorilla/mux"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/upstream"
)

// maxReferrersJudged bounds the descriptors of one referrers list that are
// judged and answered in one answer: a page of the upstream's list, in its
// order; the next page is linked (Link: <…>; rel="next", as the OCI
// distribution spec pages the referrers API), so that junk artifacts pushed
// ahead of a real signature cannot push it out of every answer. A thousand
// is more than any honest subject has (signatures, SBOMs, attestations),
// and what registries that page the referrers API put on one page at most.
const maxReferrersJudged = 1000

// referrersOffsetParam is the proxy's own query parameter of a referrers
// page after the first: how many of the upstream list's descriptors come
// before it. Clients do not build it: they follow the Link header.
const referrersOffsetParam = "offset"

// serveReferrers answers the referrers of a digest from the upstream's
// list, less every manifest the policy does not allow for this repository:
// the list must not name what the proxy would refuse to serve. At most
// maxReferrersFilters lists are fetched and judged at once (503 with
// Retry-After beyond), each of at most maxReferrersJudged descriptors, with
// one read of the revocations: one anonymous request costs a bounded
// amount of work (red team 6, F2).
func (s *Server) serveReferrers(w http.ResponseWriter, r *http.Request) {
	t, err := s.target(r)
	if err != nil {
		s.writeError(w, r, "", "referrers", err)
		return
	}
	d, err := notarize.ParseDigest(mux.Vars(r)["digest"])
	if err != nil {
		s.writeError(w, r, t.up.Name(), "referrers", &badRequestError{code: errcode.ErrorCodeDigestInvalid, msg: err.Error()})
		return
	}
	offset := 0
	if v, ok := r.URL.Query()[referrersOffsetParam]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil || n < 0 || len(v) != 1 {
			s.writeError(w, r, t.up.Name(), "referrers", &badRequestError{code: errcode.ErrorCodePaginationNumberInvalid, msg: fmt.Sprintf("invalid referrers page offset %q", clip(strings.Join(v, ","), 40))})
			return
		}
		offset = n
	}
	b, filters, total, err := s.judgeReferrers(r.Context(), t, d, r.URL.Query().Get("artifactType"), offset)
	if err != nil {
		s.fail(w, r, t.up.Name(), "referrers", err)
		return
	}
	if filters != "" {
		w.Header().Set("OCI-Filters-Applied", filters)
	}
	if next := offset + maxReferrersJudged; next < total {
		u := url.URL{Path: r.URL.Path}
		q := r.URL.Query()
		q.Set(referrersOffsetParam, strconv.Itoa(next))
		u.RawQuery = q.Encode()
		w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="next"`, u.String()))
	}
	writeBody(w, r, ocispec.MediaTypeImageIndex, b)
}

// judgeReferrers fetches the upstream's referrers list of d at t (with the
// request's artifactType filter) and filters it (filterReferrers), holding
// a referrers filter place and the list's bytes in the in-flight budget
// until it returns, not while the answer is written. It returns the answer,
// the upstream's OCI-Filters-Applied and the number of descriptors the
// upstream listed.
func (s *Server) judgeReferrers(ctx context.Context, t target, d notarize.Digest, artifactType string, offset int) (answer []byte, filters string, total int, err error) {
	done, err := s.referrerFilters.take(ctx)
	if err != nil {
		return nil, "", 0, err
	}
	defer done()
	q := url.Values{}
	if artifactType != "" {
		q.Set("artifactType", artifactType)
	}
	resp, err := t.up.Do(ctx, http.MethodGet, t.repo, "referrers/"+string(d), q, http.Header{"Accept": {ocispec.MediaTypeImageIndex}})
	if err != nil {
		return nil, "", 0, err
	}
	defer resp.Body.Close()
	b, release, err := s.readPassThrough(ctx, t, resp)
	if err != nil {
		return nil, "", 0, err
	}
	defer release()
	answer, total, err = s.filterReferrers(ctx, t, b, offset)
	if err != nil {
		return nil, "", 0, err
	}
	return answer, resp.Header.Get("OCI-Filters-Applied"), total, nil
}

// filterReferrers returns the referrers index b (an OCI image index) with
// only the descriptors whose digest the policy allows at t, each relayed as
// the upstream sent it, of the maxReferrersJudged descriptors from offset
// on (none when offset is past the list's end), and the number of
// descriptors b has. The list must have one reading: it is
// classified as an index first (notarize.ClassifyManifest), which refuses a
// member repeated in one object or spelled in another case (a descriptor
// {"digest":A,"digest":B} is B to encoding/json and A to readers that take
// the first member or match names exactly), a descriptor without a
// mediaType or with a digest other than sha256, and anything but an index;
// such an answer is refused whole (502), never filtered by one reading and
// relayed to clients that read another. The descriptors are judged
// together (evaluateAll): the revocations are read once, after all their
// records, never once per descriptor.
func (s *Server) filterReferrers(ctx context.Context, t target, b []byte, offset int) ([]byte, int, error) {
	bad := func(err error) error {
		return fmt.Errorf("upstream %s: referrers of %s: %w: %v", t.up.Name(), t, upstream.ErrBadManifest, err)
	}
	m, err := notarize.ClassifyManifest(b, ocispec.MediaTypeImageIndex)
	if err != nil {
		return nil, 0, bad(err)
	}
	var idx struct {
		Manifests []json.RawMessage `json:"manifests"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, 0, bad(err)
	}
	if m.Kind != notarize.KindIndex || len(idx.Manifests) != len(m.Manifests) {
		return nil, 0, bad(errors.New("not one reading of an image index"))
	}
	total := len(idx.Manifests)
	from := min(offset, total)
	raws := idx.Manifests[from:min(total, from+maxReferrersJudged)]
	js := make([]judged, len(raws))
	for i := range raws {
		d := m.Manifests[from+i].Digest
		js[i] = judged{digest: d, parents: s.parents.of(d)}
	}
	evs := s.evaluateAll(ctx, s.policy.Load(), t.String(), js)
	kept := make([]json.RawMessage, 0, len(raws))
	for i, raw := range raws {
		if evs[i].Allow {
			kept = append(kept, raw)
		}
	}
	out, err := json.Marshal(struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		Manifests     []json.RawMessage `json:"manifests"`
	}{2, ocispec.MediaTypeImageIndex, kept})
	if err != nil {
		return nil, 0, fmt.Errorf("referrers of %s: %w", t, err)
	}
	return out, total, nil
}
