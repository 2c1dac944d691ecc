package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/transparency-dev/tessera/api/layout"
)

// Errors only the HTTP layer produces.
var (
	errNotFound   = errors.New("not found")
	errMethod     = errors.New("method not allowed")
	errBadRequest = errors.New("bad request")
)

// Cache-Control values of the tlog-tiles endpoints.
const (
	cacheImmutable  = "public, max-age=31536000, immutable" // full tiles and bundles never change
	cachePartial    = "public, max-age=3600"                // partial ones neither, but may be removed
	cacheCheckpoint = "no-cache"                            // always revalidate
)

// Handler returns the ledger's HTTP handler: the JSON API, the C2SP
// tlog-tiles read endpoints and /metrics. Every error is a JSON
// api.ErrorResponse.
func (l *Ledger) Handler() http.Handler { return l.handler }

// apiFunc is an HTTP handler whose errors are written by writeError.
type apiFunc func(w http.ResponseWriter, r *http.Request) error

func (l *Ledger) routes() http.Handler {
	get := []string{http.MethodGet, http.MethodHead}
	mux := http.NewServeMux()
	mux.Handle("/"+layout.CheckpointPath, l.api(l.serveCheckpoint, get...))
	mux.Handle("/tile/entries/{index...}", l.api(l.serveEntryBundle, get...))
	mux.Handle("/tile/{level}/{index...}", l.api(l.serveTile, get...))
	mux.Handle(api.PathEntries, l.api(l.serveSubmit, http.MethodPost))
	mux.Handle(api.PathDigests+"{digest}", l.api(l.serveLookup, get...))
	mux.Handle(api.PathDigests+"{digest}"+api.PathCurrentSuffix, l.api(l.serveCurrent, get...))
	mux.Handle(api.PathKeys+"{keyid}"+api.PathKeyDigestsSuffix, l.api(l.serveKeyDigests, get...))
	mux.Handle(api.PathKeys+"{keyid}"+api.PathKeyIdentitySuffix, l.api(l.serveKeyIdentity, get...))
	mux.Handle(api.PathInfo, l.api(l.serveInfo, get...))
	metrics := promhttp.HandlerFor(l.metrics.reg, promhttp.HandlerOpts{})
	mux.Handle("/metrics", l.api(func(w http.ResponseWriter, r *http.Request) error {
		metrics.ServeHTTP(w, r)
		return nil
	}, get...))
	l.routePage(mux)
	mux.Handle("/", l.api(func(_ http.ResponseWriter, r *http.Request) error {
		return fmt.Errorf("%w: no such endpoint %s", errNotFound, truncate(r.URL.Path, 100))
	}))
	return l.recoverAndLog(l.withLookupClient(mux))
}

// api adapts f, allowing only the given methods (any when none are given).
func (l *Ledger) api(f apiFunc, methods ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if len(methods) > 0 && !slices.Contains(methods, r.Method) {
			w.Header().Set("Allow", strings.Join(methods, ", "))
			l.writeError(w, r, fmt.Errorf("%w: %s %s (allowed: %s)", errMethod, truncate(r.Method, 20), truncate(r.URL.Path, 100), strings.Join(methods, ", ")))
			return
		}
		if err := f(w, r); err != nil {
			l.writeError(w, r, err)
		}
	})
}

// classify maps an error to its HTTP status and API code. It is the one
// place where domain errors become wire errors.
func classify(err error) (int, string) {
	switch {
	case errors.Is(err, errNotFound):
		return http.StatusNotFound, api.CodeNotFound
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed, api.CodeMethod
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge, api.CodeTooLarge
	case errors.Is(err, ErrFuture):
		return http.StatusBadRequest, api.CodeFuture
	case errors.Is(err, ErrNotEnrolled):
		return http.StatusForbidden, api.CodeNotEnrolled
	case errors.Is(err, ErrSelfRevoked):
		return http.StatusForbidden, api.CodeKeyRevoked
	case errors.Is(err, notarize.ErrIdentityMismatch):
		return http.StatusForbidden, api.CodeIdentityMismatch
	case errors.Is(err, ErrRateLimited):
		return http.StatusTooManyRequests, api.CodeRateLimited
	case errors.Is(err, notarize.ErrBadSignature):
		return http.StatusBadRequest, api.CodeBadSignature
	case errors.Is(err, errBadRequest), errors.Is(err, notarize.ErrBadEntry),
		errors.Is(err, notarize.ErrBadStatement), errors.Is(err, notarize.ErrBadDigest):
		return http.StatusBadRequest, api.CodeBadRequest
	case errors.Is(err, ErrUnavailable), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, api.CodeUnavailable
	default:
		return http.StatusInternalServerError, api.CodeInternal
	}
}

// writeError answers with the JSON ErrorResponse for err.
func (l *Ledger) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code := classify(err)
	msg := err.Error()
	switch {
	case status == http.StatusTooManyRequests:
		if rl, ok := errors.AsType[*RateLimitError](err); ok {
			w.Header().Set("Retry-After", rl.retryAfterSeconds())
		} else {
			w.Header().Set("Retry-After", "1")
		}
	case status == http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
		l.log.WarnContext(r.Context(), "request refused", slog.String("path", r.URL.Path), slog.Any("error", err))
	case status >= 500:
		l.log.ErrorContext(r.Context(), "request failed", slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
		msg = "internal error"
	}
	writeJSON(w, status, api.ErrorResponse{Code: code, Message: msg})
}

// writeJSONHeld answers 200 with v as JSON (a final newline, as
// writeJSON), held by the answer budget until written (writeHeld).
func (l *Ledger) writeJSONHeld(w http.ResponseWriter, r *http.Request, v any) error {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil { // Encode adds the newline
		return fmt.Errorf("encode response: %w", err)
	}
	return l.writeHeld(w, r, http.StatusOK, func(h http.Header) { h.Set("Content-Type", api.MediaTypeJSON) }, buf.Bytes(), 0)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"code":"` + api.CodeInternal + `","message":"encode response"}`)
	}
	w.Header().Set("Content-Type", api.MediaTypeJSON)
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// serveSubmit handles POST /api/v1/entries.
func (l *Ledger) serveSubmit(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	rec, err := l.submitRequest(w, r)
	if err != nil {
		_, code := classify(err)
		l.metrics.submissions.WithLabelValues(code).Inc()
		return err
	}
	status, result := http.StatusCreated, "created"
	if rec.Duplicate {
		status, result = http.StatusOK, "duplicate"
	}
	l.metrics.submissions.WithLabelValues(result).Inc()
	l.metrics.receipt.Observe(time.Since(start).Seconds())
	l.log.DebugContext(r.Context(), "entry logged", slog.Uint64("index", rec.Index), slog.Bool("duplicate", rec.Duplicate))
	writeReceipt(w, status, rec)
	return nil
}

// submitRequest charges the client's rate limit before reading anything,
// then reads, parses and submits the entry.
func (l *Ledger) submitRequest(w http.ResponseWriter, r *http.Request) (*api.Receipt, error) {
	if err := l.limits.allowClient(r); err != nil {
		l.countRateLimited(err)
		return nil, err
	}
	if r.ContentLength > notarize.MaxEntrySize {
		return nil, fmt.Errorf("%w: body is %d bytes, at most %d", ErrTooLarge, r.ContentLength, notarize.MaxEntrySize)
	}
	body, err := readBody(http.MaxBytesReader(w, r.Body, notarize.MaxEntrySize), r.ContentLength)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, fmt.Errorf("%w: body is over %d bytes", ErrTooLarge, notarize.MaxEntrySize)
		}
		return nil, fmt.Errorf("%w: read body: %v", errBadRequest, err)
	}
	e, err := notarize.ParseEntry(body)
	if err != nil {
		return nil, err
	}
	return l.submit(r.Context(), e, body)
}

// readBody reads a request body that says it is length bytes long (-1:
// unknown) into a buffer of that size, instead of growing one as it reads.
func readBody(body io.Reader, length int64) ([]byte, error) {
	if length < 0 || length > notarize.MaxEntrySize {
		return io.ReadAll(body)
	}
	buf := make([]byte, length+1) // one more: a body longer than it says is read whole
	n, err := io.ReadFull(body, buf)
	switch {
	case (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) && int64(n) < length:
		// Shorter than it says: the client went away mid-upload.
		return nil, fmt.Errorf("body of %d bytes, %d declared: %w", n, length, io.ErrUnexpectedEOF)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return buf[:n], nil
	case err != nil:
		return nil, err
	}
	rest, err := io.ReadAll(body)
	return append(buf, rest...), err
}

// serveLookup handles GET /api/v1/digests/{digest}: one page.
func (l *Ledger) serveLookup(w http.ResponseWriter, r *http.Request) error {
	return l.serveLookupKind(w, r, "page", func(ctx context.Context) (*api.LookupResponse, error) {
		d, opts, err := lookupQuery(r)
		if err != nil {
			return nil, err
		}
		return l.Lookup(ctx, d, opts)
	})
}

// serveCurrent handles GET /api/v1/digests/{digest}/current.
func (l *Ledger) serveCurrent(w http.ResponseWriter, r *http.Request) error {
	return l.serveLookupKind(w, r, "current", func(ctx context.Context) (*api.LookupResponse, error) {
		d, err := notarize.ParseDigest(r.PathValue("digest"))
		if err != nil {
			return nil, err
		}
		q := r.URL.Query()
		return l.current(ctx, d, q[api.QueryKeyID], tailMode(q))
	})
}

// serveLookupKind answers with lookup's response, counting it as kind.
// The inline tail it may carry holds its part of the tail budget
// (tail_budget.go) until the answer is written.
func (l *Ledger) serveLookupKind(w http.ResponseWriter, r *http.Request, kind string, lookup func(context.Context) (*api.LookupResponse, error)) error {
	ctx, release := l.holdTails(r.Context())
	defer release()
	resp, err := lookup(ctx)
	if err == nil {
		err = l.writeLookup(w, r.WithContext(ctx), resp)
	}
	if err != nil {
		_, code := classify(err)
		l.metrics.lookups.WithLabelValues(kind, code).Inc()
		return err
	}
	l.metrics.lookups.WithLabelValues(kind, "ok").Inc()
	return nil
}

// lookupQuery parses a page lookup's digest and query: repeatable keyid,
// after (a log index) and limit (1 to api.MaxLookupLimit), each at most
// once. Key IDs are checked by Lookup.
func lookupQuery(r *http.Request) (notarize.Digest, LookupOptions, error) {
	var opts LookupOptions
	d, err := notarize.ParseDigest(r.PathValue("digest"))
	if err != nil {
		return "", opts, err
	}
	q := r.URL.Query()
	opts.KeyIDs = q[api.QueryKeyID]
	opts.Tail = tailMode(q)
	if len(opts.KeyIDs) > api.MaxLookupKeyIDs {
		return "", opts, fmt.Errorf("%w: %d key IDs, at most %d", errBadRequest, len(opts.KeyIDs), api.MaxLookupKeyIDs)
	}
	if v, ok, err := singleParam(q, api.QueryAfter); err != nil {
		return "", opts, err
	} else if ok {
		after, err := parseDecimal(v, math.MaxUint64)
		if err != nil {
			return "", opts, fmt.Errorf("%w: %s %q: want a log index", errBadRequest, api.QueryAfter, truncate(v, 40))
		}
		opts.After = &after
	}
	if v, ok, err := singleParam(q, api.QueryLimit); err != nil {
		return "", opts, err
	} else if ok {
		n, err := parseDecimal(v, api.MaxLookupLimit)
		if err != nil || n == 0 {
			return "", opts, fmt.Errorf("%w: %s %q: want 1 to %d", errBadRequest, api.QueryLimit, truncate(v, 40), api.MaxLookupLimit)
		}
		opts.Limit = int(n)
	}
	return d, opts, nil
}

// tailMode returns the tail a lookup asks for (api.QueryTail): a value the
// ledger does not know asks for none, as before the parameter existed.
func tailMode(q url.Values) TailMode {
	switch q.Get(api.QueryTail) {
	case api.TailInline:
		if q.Get(api.QueryAnchor) == api.AnchorYes {
			return TailAnchor // asked so that an older ledger carries the tail
		}
		return TailInline
	case api.TailAnchor:
		return TailAnchor
	default:
		return TailNone
	}
}

// singleParam returns the value of a query parameter that may appear at most once.
func singleParam(q url.Values, name string) (string, bool, error) {
	switch vs := q[name]; len(vs) {
	case 0:
		return "", false, nil
	case 1:
		return vs[0], true, nil
	default:
		return "", false, fmt.Errorf("%w: %s given %d times", errBadRequest, name, len(vs))
	}
}

// parseDecimal parses a decimal number of at most most, digits only (no
// sign, no spaces).
func parseDecimal(s string, most uint64) (uint64, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errBadRequest
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > most {
		return 0, errBadRequest
	}
	return n, nil
}

// serveKeyDigests handles GET /api/v1/keys/{keyid}/digests: one page of
// a key lookup.
func (l *Ledger) serveKeyDigests(w http.ResponseWriter, r *http.Request) error {
	resp, err := l.keyDigestsRequest(r)
	if err == nil {
		err = l.writeJSONHeld(w, r, resp)
	}
	if err != nil {
		_, code := classify(err)
		l.metrics.lookups.WithLabelValues("key", code).Inc()
		return err
	}
	l.metrics.lookups.WithLabelValues("key", "ok").Inc()
	return nil
}

// keyDigestsRequest parses a key lookup's query, status, cursor and limit
// each at most once, and answers it. KeyDigests checks the values.
func (l *Ledger) keyDigestsRequest(r *http.Request) (*api.KeyDigestsResponse, error) {
	var opts KeyDigestsOptions
	q := r.URL.Query()
	if v, ok, err := singleParam(q, api.QueryStatus); err != nil {
		return nil, err
	} else if ok {
		if v == "" {
			return nil, fmt.Errorf("%w: empty %s", errBadRequest, api.QueryStatus)
		}
		opts.Status = notarize.Status(v)
	}
	if v, ok, err := singleParam(q, api.QueryCursor); err != nil {
		return nil, err
	} else if ok {
		if v == "" {
			return nil, fmt.Errorf("%w: empty %s", errBadRequest, api.QueryCursor)
		}
		opts.Cursor = notarize.Digest(v)
	}
	if v, ok, err := singleParam(q, api.QueryLimit); err != nil {
		return nil, err
	} else if ok {
		n, err := parseDecimal(v, api.MaxLookupLimit)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%w: %s %q: want 1 to %d", errBadRequest, api.QueryLimit, truncate(v, 40), api.MaxLookupLimit)
		}
		opts.Limit = int(n)
	}
	return l.KeyDigests(r.Context(), r.PathValue("keyid"), opts)
}

// serveInfo handles GET /api/v1/info.
func (l *Ledger) serveInfo(w http.ResponseWriter, r *http.Request) error {
	info, err := l.Info(r.Context())
	if err != nil {
		return err
	}
	return l.writeJSONHeld(w, r, info)
}

// serveCheckpoint handles GET /checkpoint.
func (l *Ledger) serveCheckpoint(w http.ResponseWriter, r *http.Request) error {
	raw, err := l.reader.ReadCheckpoint(r.Context())
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: no checkpoint yet", errNotFound)
		}
		return fmt.Errorf("read checkpoint: %w", err)
	}
	return l.writeStatic(w, r, "text/plain; charset=utf-8", cacheCheckpoint, raw)
}

// serveTile handles GET /tile/{L}/{N}[.p/{W}].
func (l *Ledger) serveTile(w http.ResponseWriter, r *http.Request) error {
	level, index, p, err := layout.ParseTileLevelIndexPartial(r.PathValue("level"), r.PathValue("index"))
	if err != nil {
		return fmt.Errorf("%w: %s is not a tile path: %v", errBadRequest, truncate(r.URL.Path, 100), err)
	}
	return l.serveResource(w, r, maxTileBytes, p, func() ([]byte, error) { return l.tileBytes(r.Context(), level, index, p) })
}

// serveEntryBundle handles GET /tile/entries/{N}[.p/{W}].
func (l *Ledger) serveEntryBundle(w http.ResponseWriter, r *http.Request) error {
	index, p, err := layout.ParseTileIndexPartial(r.PathValue("index"))
	if err != nil {
		return fmt.Errorf("%w: %s is not an entry bundle path: %v", errBadRequest, truncate(r.URL.Path, 100), err)
	}
	if o, ok := l.st.(bundleOpener); ok {
		return l.streamBundle(w, r, o, index, p)
	}
	return l.serveResource(w, r, maxBundleBytes, p, func() ([]byte, error) { return l.bundleBytes(r.Context(), index, p) })
}

// bundleOpener is a storage whose entry bundles are files (POSIX): they
// are streamed to the client, not read into memory, so they hold none of
// the answer budget (held_budget.go); a reader that stalls holds a file,
// a copy buffer and two goroutines until its write deadline, and a client
// streams at most clientBundleStreams bundles at once (its IPv6 /56 and
// /48 lookupPrefixScale times as many; 503 past it), with no total, so a
// few addresses cannot keep others' followers out.
type bundleOpener interface {
	OpenEntryBundle(index uint64, p uint8) (io.ReadCloser, int64, error)
}

// streamBundle answers 200 with entry bundle index of width p from o, by
// its write deadline (lookupWriteTimeout plus its size at lookupWriteRate).
func (l *Ledger) streamBundle(w http.ResponseWriter, r *http.Request, o bundleOpener, index uint64, p uint8) error {
	lc, _ := r.Context().Value(lookupClientKey{}).(lookupClient)
	shares := sharesOf(lc)
	if !l.streams.takeShares(shares, 1) {
		_, mine := l.streams.inUse(lc.name)
		return fmt.Errorf("%w: this client has %d entry bundles being written, at most %d", ErrUnavailable, mine, clientBundleStreams)
	}
	defer l.streams.giveShares(shares, 1)
	rc, n, err := o.OpenEntryBundle(index, p)
	if err != nil {
		return resourceError(r, err)
	}
	defer rc.Close()
	_ = http.NewResponseController(w).SetWriteDeadline(l.answers.writeDeadline(time.Now(), int(n)))
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", cacheFor(p))
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = io.Copy(w, rc)
	}
	return nil
}

// The most a tile and an entry bundle read into memory can take: a full
// one is read even for a partial one (bundleBytes).
const (
	maxTileBytes   = layout.TileWidth * 32
	maxBundleBytes = layout.EntryBundleWidth * (2 + MaxLeafSize)
)

// serveResource answers 200 with the log resource read (a tile or an entry
// bundle of width p): the most it can take, most, is held from the answer
// budget before it is read, waiting for room as a client's parallel reads
// do (answerWait), then what it took until it is written.
func (l *Ledger) serveResource(w http.ResponseWriter, r *http.Request, most int64, p uint8, read func() ([]byte, error)) error {
	h, err := l.holdAnswer(r, most, l.answers.resourceWait())
	if err != nil {
		return err
	}
	defer h.release()
	raw, err := read()
	if err != nil {
		return resourceError(r, err)
	}
	h.keep(int64(len(raw)))
	l.writeWithin(w, r, http.StatusOK, func(hd http.Header) {
		hd.Set("Content-Type", "application/octet-stream")
		hd.Set("Cache-Control", cacheFor(p))
	}, raw)
	return nil
}

func resourceError(r *http.Request, err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s", errNotFound, truncate(r.URL.Path, 100))
	}
	return fmt.Errorf("read %s: %w", r.URL.Path, err)
}

func cacheFor(partial uint8) string {
	if partial > 0 {
		return cachePartial
	}
	return cacheImmutable
}

// writeStatic answers 200 with a log resource read into memory (a tile,
// an entry bundle, the checkpoint), held by the answer budget until
// written (writeHeld).
func (l *Ledger) writeStatic(w http.ResponseWriter, r *http.Request, contentType, cacheControl string, body []byte) error {
	return l.writeHeld(w, r, http.StatusOK, func(h http.Header) {
		h.Set("Content-Type", contentType)
		h.Set("Cache-Control", cacheControl)
	}, body, 0)
}

// recoverAndLog logs each request at debug level and turns a panic into a
// 500 (a bug) instead of a dropped connection.
func (l *Ledger) recoverAndLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		start := time.Now()
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				l.log.ErrorContext(r.Context(), "panic in handler", slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
				if sw.status == 0 {
					l.writeError(sw, r, fmt.Errorf("panic: %v", v))
				}
			}
			l.log.DebugContext(r.Context(), "http request", slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.Int("status", sw.status), slog.Duration("duration", time.Since(start)))
		}()
		next.ServeHTTP(sw, r)
	})
}

// statusWriter records the status code written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
