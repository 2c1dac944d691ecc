package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/distribution/distribution/v3/registry/api/errcode"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/blobcache"
	"github.com/notarize/docker-notarize/proxy/upstream"
)

// errUnsupported answers pushes, deletes, mounts and the catalog.
var errUnsupported = errors.New("this registry is a read-only, trust-enforcing proxy: pushes, deletes, mounts and the catalog are not supported")

// errNoRoute answers paths outside the OCI distribution API.
var errNoRoute = errors.New("not an OCI distribution API path")

// DeniedError is a manifest the policy does not allow.
type DeniedError struct {
	Target    string
	Reference string
	Eval      notarize.Evaluation
}

// Error names the target, digest, verdict and why.
func (e *DeniedError) Error() string {
	rule := "no rule"
	if e.Eval.RuleIndex >= 0 {
		rule = fmt.Sprintf("rule %d (%s)", e.Eval.RuleIndex+1, e.Eval.Rule.Match)
	}
	return fmt.Sprintf("notarize-proxy denied %s:%s by policy %s: %s", e.Target, e.Reference, rule, e.Eval.Reason())
}

// trustError is a decision that could not be made because the trust data
// is unavailable (stale replica, forked ledger): the proxy fails closed.
type trustError struct {
	target string
	err    error
}

func (e *trustError) Error() string {
	return fmt.Sprintf("notarize-proxy cannot verify %s, failing closed: %v", e.target, e.err)
}

func (e *trustError) Unwrap() error { return e.err }

// badRequestError is a malformed reference or digest in the request.
type badRequestError struct {
	code errcode.ErrorCode
	msg  string
}

func (e *badRequestError) Error() string { return e.msg }

// ociError is an answer: HTTP status, OCI error code, message and detail.
type ociError struct {
	status int
	code   errcode.ErrorCode
	msg    string
	detail any
	// upstreamKind is set for upstream failures, the label of the
	// upstream errors counter.
	upstreamKind string
}

// toOCI maps every error of the proxy to its answer. It is the one place
// where domain errors become OCI error codes.
func toOCI(err error, kind string) ociError {
	var (
		denied *DeniedError
		trust  *trustError
		route  *routeError
		bad    *badRequestError
		ue     *upstream.Error
	)
	if busy, ok := asBusy(err); ok { // inflight.go; Retry-After set by fail
		return ociError{status: http.StatusServiceUnavailable, code: errcode.ErrorCodeUnavailable, msg: busy.Error()}
	}
	switch {
	case errors.As(err, &denied):
		return ociError{status: http.StatusForbidden, code: errcode.ErrorCodeDenied, msg: denied.Error(),
			detail: map[string]string{"digest": string(denied.Eval.Digest), "verdict": denied.Eval.Verdict.String(), "rule": denied.Eval.Rule.Match, "signer": denied.Eval.Signer()}}
	case errors.As(err, &trust):
		return ociError{status: http.StatusServiceUnavailable, code: errcode.ErrorCodeUnavailable, msg: trust.Error()}
	case errors.As(err, &route):
		if route.unknown {
			return ociError{status: http.StatusNotFound, code: errcode.ErrorCodeNameUnknown, msg: route.msg}
		}
		return ociError{status: http.StatusBadRequest, code: errcode.ErrorCodeNameInvalid, msg: route.msg}
	case errors.As(err, &bad):
		return ociError{status: http.StatusBadRequest, code: bad.code, msg: bad.msg}
	case errors.Is(err, errUnsupported):
		return ociError{status: http.StatusMethodNotAllowed, code: errcode.ErrorCodeUnsupported, msg: err.Error()}
	case errors.Is(err, errNoRoute):
		return ociError{status: http.StatusNotFound, code: errcode.ErrorCodeUnsupported, msg: err.Error()}
	case errors.As(err, &ue):
		switch {
		case ue.StatusCode == http.StatusNotFound:
			code := errcode.ErrorCodeNameUnknown
			switch {
			case ue.Code == errcode.ErrorCodeManifestUnknown.String() || kind == "manifest":
				code = errcode.ErrorCodeManifestUnknown
			case ue.Code == errcode.ErrorCodeBlobUnknown.String() || kind == "blob":
				code = errcode.ErrorCodeBlobUnknown
			}
			if ue.Code == errcode.ErrorCodeNameUnknown.String() {
				code = errcode.ErrorCodeNameUnknown
			}
			return ociError{status: http.StatusNotFound, code: code, msg: ue.Error()}
		case ue.StatusCode == http.StatusUnauthorized || ue.StatusCode == http.StatusForbidden:
			return ociError{status: http.StatusForbidden, code: errcode.ErrorCodeDenied, msg: ue.Error(), upstreamKind: "refused"}
		case ue.StatusCode == http.StatusTooManyRequests:
			return ociError{status: http.StatusTooManyRequests, code: errcode.ErrorCodeTooManyRequests, msg: ue.Error(), upstreamKind: "rate_limited"}
		case ue.StatusCode == http.StatusRequestedRangeNotSatisfiable:
			return ociError{status: ue.StatusCode, code: errcode.ErrorCodeRangeInvalid, msg: ue.Error()}
		}
		return ociError{status: http.StatusBadGateway, code: errcode.ErrorCodeUnavailable, msg: ue.Error(), upstreamKind: "status_" + strconv.Itoa(ue.StatusCode/100) + "xx"}
	case errors.Is(err, upstream.ErrDigestMismatch), errors.Is(err, blobcache.ErrDigestMismatch):
		return ociError{status: http.StatusBadGateway, code: errcode.ErrorCodeUnavailable, msg: err.Error() + " (refused; nothing served or cached)", upstreamKind: "digest_mismatch"}
	case errors.Is(err, blobcache.ErrSizeMismatch):
		return ociError{status: http.StatusBadGateway, code: errcode.ErrorCodeUnavailable, msg: err.Error() + " (refused; nothing cached)", upstreamKind: "size_mismatch"}
	case errors.Is(err, upstream.ErrTooLarge):
		return ociError{status: http.StatusBadGateway, code: errcode.ErrorCodeManifestInvalid, msg: err.Error(), upstreamKind: "too_large"}
	case errors.Is(err, upstream.ErrBadAnswer):
		return ociError{status: http.StatusBadGateway, code: errcode.ErrorCodeUnavailable, msg: err.Error(), upstreamKind: "bad_answer"}
	case errors.Is(err, upstream.ErrBadManifest):
		return ociError{status: http.StatusBadGateway, code: errcode.ErrorCodeManifestInvalid, msg: err.Error(), upstreamKind: "bad_manifest"}
	case errors.Is(err, context.DeadlineExceeded):
		return ociError{status: http.StatusGatewayTimeout, code: errcode.ErrorCodeUnavailable, msg: "upstream timed out: " + err.Error(), upstreamKind: "timeout"}
	case errors.Is(err, upstream.ErrUnreachable):
		return ociError{status: http.StatusBadGateway, code: errcode.ErrorCodeUnavailable, msg: err.Error(), upstreamKind: "unreachable"}
	case errors.Is(err, context.Canceled):
		return ociError{status: 499, code: errcode.ErrorCodeUnknown, msg: "request canceled"}
	}
	return ociError{status: http.StatusInternalServerError, code: errcode.ErrorCodeUnknown, msg: err.Error()}
}

// writeError answers a request with err mapped by toOCI, counts upstream
// failures and logs server-side failures.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, upstreamName, kind string, err error) {
	oe := toOCI(err, kind)
	if oe.upstreamKind != "" {
		s.metrics.upstreamErrors.WithLabelValues(upstreamName, oe.upstreamKind).Inc()
	}
	var route *routeError
	if errors.As(err, &route) && route.unknown {
		s.logUnknownUpstream(r, route)
	}
	if oe.status >= 500 {
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "request failed",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", oe.status), slog.String("error", err.Error()))
	}
	writeOCIError(w, oe)
}

// logUnknownUpstream logs a request answered NAME_UNKNOWN because it named
// no configured upstream, through the refusal log (refusal_log.go): once per
// registry per interval, with the count of the requests not logged, so that
// a client pointed at the wrong registry is seen without a line per request.
func (s *Server) logUnknownUpstream(r *http.Request, route *routeError) {
	s.logRefusal(r.Context(), "unknown "+route.registry, "request for an upstream that is not configured: NAME_UNKNOWN",
		slog.String("registry", route.registry), slog.String("method", r.Method),
		slog.String("path", clip(r.URL.Path, 200)), slog.String("reason", route.msg))
}

func writeOCIError(w http.ResponseWriter, oe ociError) {
	e := oe.code.WithMessage(oe.msg)
	if oe.detail != nil {
		e = e.WithDetail(oe.detail)
	}
	b, err := json.Marshal(errcode.Errors{e})
	if err != nil {
		b = []byte(`{"errors":[{"code":"UNKNOWN","message":"error encoding failed"}]}`)
	}
	h := w.Header()
	h.Del("Content-Length")
	h.Del("Docker-Content-Digest")
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(oe.status)
	_, _ = w.Write(append(b, '\n'))
}
