package ledgerclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// Size bounds of the ledger's answers. A larger answer is an error.
const (
	maxInfoSize    = 64 << 10
	maxErrorSize   = 64 << 10
	maxReceiptSize = 1 << 20
	maxTileSize    = layout.TileWidth * 32
	// An entry bundle holds up to 256 entries, each with a 2-byte length.
	maxBundleSize = layout.EntryBundleWidth * (2 + notarize.MaxEntrySize)
	maxRedirects  = 5
)

// ops is everything the client asks of a ledger. Its answers are untrusted
// bytes: all checks are made by the Client, so tests can drive the security
// logic with fakes that lie. ReadTile and ReadEntryBundle follow the contract
// of tessera's client.TileFetcherFunc and client.EntryBundleFetcherFunc
// (os.ErrNotExist for a missing resource); ReadEntryBundle is there for a
// replicating reader (Follow).
type ops interface {
	ReadCheckpoint(ctx context.Context) ([]byte, error)
	ReadTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error)
	ReadEntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error)
	// api.Info returns the body of GET /api/v1/info.
	Info(ctx context.Context) ([]byte, error)
	// Submit posts an entry and returns the body of the 2xx answer (a api.Receipt).
	Submit(ctx context.Context, entry []byte) ([]byte, error)
	// Lookup returns the body of GET /api/v1/digests/{d} (one page of a
	// api.LookupResponse) for q: entries by q.keyIDs when there are any,
	// after q.after when set, at most q.limit.
	Lookup(ctx context.Context, d notarize.Digest, q lookupQuery) ([]byte, error)
	// Current returns the body of GET /api/v1/digests/{d}/current (a
	// api.LookupResponse): the current statement of each of keyIDs.
	Current(ctx context.Context, d notarize.Digest, keyIDs []string) ([]byte, error)
	// KeyDigests returns the body of GET /api/v1/keys/{keyID}/digests (one
	// page of an api.KeyDigestsResponse) for q (keys.go).
	KeyDigests(ctx context.Context, keyID string, q KeyQuery) ([]byte, error)
	// KeyIdentity returns the body of GET /api/v1/keys/{keyID}/identity
	// (an api.KeyIdentity; identity.go).
	KeyIdentity(ctx context.Context, keyID string) ([]byte, error)
}

// httpOps is ops over HTTP: tlog-tiles read endpoints through tessera's
// HTTPFetcher and the JSON API.
type httpOps struct {
	base  *url.URL // with a trailing slash
	hc    *http.Client
	tiles *client.HTTPFetcher
	// anchor asks keyed lookups for api.TailAnchor (api.QueryAnchor), for
	// a client that takes recent map roots (MaxIndexLag); they ask
	// tail=inline either way, which a ledger from before the anchored
	// check answers with the tail.
	anchor bool
}

var _ ops = (*httpOps)(nil)

// newHTTPOps returns ops for the ledger at base. It copies hc, bounds every
// response body, sets the User-Agent and refuses redirects to another host.
func newHTTPOps(base *url.URL, hc *http.Client, userAgent string) (*httpOps, error) {
	c := *hc
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	c.Transport = &boundedTransport{base: &retryTransport{base: rt}, userAgent: userAgent} // busy reads retried (retry.go)
	c.CheckRedirect = sameHostRedirects
	u := *base
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	f, err := client.NewHTTPFetcher(&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}, &c)
	if err != nil {
		return nil, fmt.Errorf("ledger fetcher: %w", err)
	}
	return &httpOps{base: &u, hc: &c, tiles: f}, nil
}

func (h *httpOps) ReadCheckpoint(ctx context.Context) ([]byte, error) {
	return h.tiles.ReadCheckpoint(withLimit(ctx, MaxCheckpointSize))
}

func (h *httpOps) ReadTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	return h.tiles.ReadTile(withLimit(ctx, maxTileSize), level, index, p)
}

func (h *httpOps) ReadEntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error) {
	return h.tiles.ReadEntryBundle(withLimit(ctx, maxBundleSize), index, p)
}

func (h *httpOps) Info(ctx context.Context) ([]byte, error) {
	return h.do(ctx, http.MethodGet, api.PathInfo, nil, nil, maxInfoSize)
}

func (h *httpOps) Submit(ctx context.Context, entry []byte) ([]byte, error) {
	return h.do(ctx, http.MethodPost, api.PathEntries, nil, entry, maxReceiptSize)
}

func (h *httpOps) Lookup(ctx context.Context, d notarize.Digest, q lookupQuery) ([]byte, error) {
	v := url.Values{}
	if len(q.keyIDs) > 0 {
		v[api.QueryKeyID] = q.keyIDs
	}
	if q.after != nil {
		v.Set(api.QueryAfter, strconv.FormatUint(*q.after, 10))
	}
	if q.limit > 0 {
		v.Set(api.QueryLimit, strconv.Itoa(q.limit))
	}
	if len(q.keyIDs) > 0 {
		h.askTail(v) // the log's tail after the map root, inline (tail.go)
	}
	return h.do(ctx, http.MethodGet, api.PathDigests+d.String(), v, nil, maxLookupAnswer(q.limit))
}

func (h *httpOps) Current(ctx context.Context, d notarize.Digest, keyIDs []string) ([]byte, error) {
	v := url.Values{api.QueryKeyID: keyIDs}
	h.askTail(v) // the tail inline (tail.go)
	return h.do(ctx, http.MethodGet, api.PathDigests+d.String()+api.PathCurrentSuffix, v, nil, maxLookupAnswer(len(keyIDs)))
}

// askTail sets the tail a keyed lookup asks for in v.
func (h *httpOps) askTail(v url.Values) {
	v.Set(api.QueryTail, api.TailInline)
	if h.anchor {
		v.Set(api.QueryAnchor, api.AnchorYes)
	}
}

// do sends one API request and returns the body of a 2xx answer; any other
// answer becomes an *APIError.
func (h *httpOps) do(ctx context.Context, method, path string, query url.Values, body []byte, limit int64) ([]byte, error) {
	u := h.base.ResolveReference(&url.URL{Path: strings.TrimPrefix(path, "/"), RawQuery: query.Encode()})
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(withLimit(ctx, max(limit, maxErrorSize)), method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	accept := api.MediaTypeJSON
	if query.Get(api.QueryTail) == api.TailInline {
		accept = api.MediaTypeTailAnswer + ", " + api.MediaTypeJSON
	}
	req.Header.Set("Accept", accept)
	if body != nil {
		req.Header.Set("Content-Type", api.MediaTypeJSON)
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, u.Redacted(), err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := decodeAPIError(resp.StatusCode, b)
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
		return nil, e
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s %s: answer larger than %d bytes", method, u.Redacted(), limit)
	}
	return b, nil
}

// decodeAPIError turns a non-2xx answer into an *APIError.
func decodeAPIError(status int, body []byte) *APIError {
	var er api.ErrorResponse
	if err := json.Unmarshal(body, &er); err == nil && er.Code != "" {
		return &APIError{StatusCode: status, Code: oneLine(clip(er.Code, 80)), Message: oneLine(clip(er.Message, 1024))}
	}
	msg := strings.TrimSpace(string(body))
	if msg == "" || !utf8.ValidString(msg) {
		msg = http.StatusText(status)
	}
	return &APIError{StatusCode: status, Message: oneLine(clip(msg, 1024))}
}

// oneLine replaces the line breaks, control characters (terminal escapes
// included) and invisible formatting characters of text a ledger sent with
// spaces: an error message shown to a person or a script stays on its line,
// so a ledger or a front cannot put a forged verdict ("TRUSTED sha256:…") on
// a line of its own in the output of a command that failed.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) {
			return ' '
		}
		return r
	}, s)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// sameHostRedirects follows at most a few redirects, and only to the same
// scheme and host: a ledger URL never silently becomes another server.
func sameHostRedirects(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", len(via))
	}
	first := via[0].URL
	if req.URL.Host != first.Host || req.URL.Scheme != first.Scheme {
		return fmt.Errorf("refusing redirect from %s to another host %s", first.Redacted(), req.URL.Redacted())
	}
	return nil
}

type limitKey struct{}

// withLimit sets the size bound of the answers to requests made with ctx.
func withLimit(ctx context.Context, n int64) context.Context {
	return context.WithValue(ctx, limitKey{}, n)
}

// boundedTransport sets the User-Agent and bounds every response body to the
// limit in the request's context (defaultLimit without one). Tessera's
// HTTPFetcher reads whole bodies; this makes it fail instead.
type boundedTransport struct {
	base      http.RoundTripper
	userAgent string
}

const defaultLimit = 1 << 20

func (t *boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.Header.Set("User-Agent", t.userAgent)
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	limit, ok := req.Context().Value(limitKey{}).(int64)
	if !ok {
		limit = defaultLimit
	}
	if resp.ContentLength > limit {
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: answer of %d bytes, at most %d", req.Method, req.URL.Redacted(), resp.ContentLength, limit)
	}
	resp.Body = &limitedBody{rc: resp.Body, left: limit, url: req.URL.Redacted()}
	return resp, nil
}

var errTooLarge = errors.New("answer too large")

// limitedBody fails a read past its limit instead of truncating silently.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
	url  string
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, fmt.Errorf("%s: %w", b.url, errTooLarge)
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	if int64(n) > b.left {
		b.left = -1
		return 0, fmt.Errorf("%s: %w", b.url, errTooLarge)
	}
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
