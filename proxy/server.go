package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/blobcache"
	"github.com/notarize/docker-notarize/proxy/upstream"
)

// maxPassThrough bounds the tags list and referrers answers relayed.
const maxPassThrough = 4 << 20

// Server is the trust-enforcing registry proxy. It is safe for concurrent use.
type Server struct {
	cfg       Config
	log       *slog.Logger
	ups       []*upstream.Registry
	router    *router
	policy    atomic.Pointer[notarize.Evaluator]
	trust     TrustSource
	blobs     *blobcache.Cache
	gate      *blobGate
	manifests *manifestCache
	parents   *parentIndex
	stats     *digestStats
	refusals  *refusalLog // the paced log of refused decisions (refusal_log.go)
	metrics   *metrics
	handler   http.Handler
	// inflight bounds the upstream answer bytes held at once (manifests,
	// tags and referrers lists); flights shares one manifest fetch
	// between the requests for it; referrerFilters bounds the referrers
	// lists judged at once (inflight.go).
	inflight        *byteBudget
	flights         *manifestFlights
	referrerFilters *slots
}

// New returns a Server for cfg. It makes no request: upstreams are
// contacted on demand, the ledger by the TrustSource.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		trust:     cfg.Trust,
		manifests: newManifestCache(cfg.ManifestCacheBytes),
		parents:   newParentIndex(),
		stats:     newDigestStats(cfg.MaxTrackedDigests),
		refusals:  newRefusalLog(cfg.Logger, time.Now),
		metrics:   newMetrics(cfg.Trust),

		inflight:        newByteBudget("upstream answers in memory", max(defaultInFlightBytes, 2*cfg.MaxManifestSize)),
		flights:         newManifestFlights(),
		referrerFilters: newSlots("referrers lists being judged", maxReferrersFilters),
	}
	for _, uc := range cfg.Upstreams {
		if uc.UserAgent == "" {
			uc.UserAgent = "notarize-proxy"
		}
		u, err := upstream.New(uc)
		if err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
		s.ups = append(s.ups, u)
	}
	s.router = newRouter(s.ups, cfg.DefaultUpstream)
	blobs, err := openBlobCache(cfg) // storage.go
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	s.blobs = blobs
	if s.gate, err = openBlobGate(filepath.Join(cfg.DataDir, "gate.db"), time.Now, gateMaxAge, gateMaxEntries); err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	if err := s.stats.open(filepath.Join(cfg.DataDir, "decisions.db"), cfg.Logger); err != nil { // decisions_store.go
		return nil, fmt.Errorf("proxy: %w", err)
	}
	s.metrics.watchBlobCache(blobs)
	s.policy.Store(cfg.Policy)
	s.handler = s.routes()
	go s.refusals.run()
	return s, nil
}

// Close waits for the background blob downloads to end (committed to the
// cache or discarded), or for ctx, and closes the blob gate's file. Call it
// after the HTTP server stopped; later calls only wait.
func (s *Server) Close(ctx context.Context) error {
	s.refusals.close()
	return errors.Join(s.blobs.Close(ctx), s.gate.Close(), s.stats.close(ctx))
}

// Handler returns the proxy's HTTP handler: the OCI distribution pull API
// under /v2/, /metrics, /notarize/v1/stats and /healthz.
func (s *Server) Handler() http.Handler { return s.handler }

// SetPolicy replaces the policy; requests in flight finish with the old one.
func (s *Server) SetPolicy(ev *notarize.Evaluator) { s.policy.Store(ev) }

// Upstreams returns the configured upstreams as "NAME=URL".
func (s *Server) Upstreams() []string {
	var out []string
	for _, u := range s.ups {
		out = append(out, u.Name()+"="+u.URL())
	}
	return out
}

// nameRE is what the router takes for a repository name (with an optional
// upstream prefix); resolve validates it strictly.
const nameRE = `[A-Za-z0-9._:\-]+(?:/[A-Za-z0-9._:\-]+)*`

func (s *Server) routes() http.Handler {
	r := mux.NewRouter()
	r.Use(s.authorize) // authentication and access rules before any handler (auth.go)
	r.NotFoundHandler = s.instrument("other", func(w http.ResponseWriter, r *http.Request) { s.writeError(w, r, "", "", errNoRoute) })
	r.MethodNotAllowedHandler = s.instrument("other", func(w http.ResponseWriter, r *http.Request) { s.writeError(w, r, "", "", errUnsupported) })
	unsupported := s.instrument("unsupported", func(w http.ResponseWriter, r *http.Request) { s.writeError(w, r, "", "", errUnsupported) })

	r.Handle("/v2", s.instrument("base", s.serveBase)).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/v2/", s.instrument("base", s.serveBase)).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/v2/_catalog", unsupported)
	r.PathPrefix("/v2/{name:" + nameRE + "}/blobs/uploads").Handler(unsupported)
	r.Handle("/v2/{name:"+nameRE+"}/manifests/{reference}", s.instrument("manifests", s.serveManifest)).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/v2/{name:"+nameRE+"}/blobs/{digest}", s.instrument("blobs", s.serveBlob)).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/v2/{name:"+nameRE+"}/tags/list", s.instrument("tags", s.serveTags)).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/v2/{name:"+nameRE+"}/referrers/{digest}", s.instrument("referrers", s.serveReferrers)).Methods(http.MethodGet, http.MethodHead)

	r.Handle("/metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})).Methods(http.MethodGet)
	r.HandleFunc("/notarize/v1/stats", s.serveStats).Methods(http.MethodGet)
	// Authenticated like /notarize/v1/stats (checkpoint.go).
	r.HandleFunc("/notarize/v1/checkpoint", s.serveCheckpoint).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/notarize/v1/evidence", s.serveEvidence).Methods(http.MethodGet)      // authenticated like stats (evidence.go)
	r.PathPrefix("/ui").Handler(s.dashboard()).Methods(http.MethodGet, http.MethodHead) // authenticated like /notarize/v1/stats (decisions_ui.go)
	r.HandleFunc("/healthz", s.serveHealth).Methods(http.MethodGet, http.MethodHead)
	return registryHeaders(r)
}

// registryHeaders marks every answer under /v2 (the registry API, whose
// bodies come from upstreams: manifests, blobs, tags and referrers lists,
// and the errors) as never to be sniffed nor rendered as a document by a
// browser: a lying upstream's bytes must not run as script on the proxy's
// origin, where the dashboard and its credentials live (red team 6, F4).
func registryHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2" || strings.HasPrefix(r.URL.Path, "/v2/") {
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.Header().Set("Content-Security-Policy", "default-src 'none'; sandbox")
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) serveBase(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	w.Header().Set("Content-Length", "3")
	_, _ = io.WriteString(w, "{}\n")
}

// serveHealth is 200 while the trust data is fresh, 503 otherwise.
func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	if err := s.trust.Fresh(); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

// target resolves the request's repository name and ns parameter.
func (s *Server) target(r *http.Request) (target, error) {
	return s.router.resolve(mux.Vars(r)["name"], r.URL.Query().Get("ns"))
}

func (s *Server) serveManifest(w http.ResponseWriter, r *http.Request) {
	t, err := s.target(r)
	if err != nil {
		s.writeError(w, r, "", "manifest", err)
		return
	}
	ref := mux.Vars(r)["reference"]
	var want notarize.Digest
	if strings.Contains(ref, ":") {
		if want, err = notarize.ParseDigest(ref); err != nil {
			s.writeError(w, r, t.up.Name(), "manifest", &badRequestError{code: errcode.ErrorCodeDigestInvalid, msg: "only sha256 digests are supported: " + err.Error()})
			return
		}
	} else if !tagRE.MatchString(ref) {
		s.writeError(w, r, t.up.Name(), "manifest", &badRequestError{code: errcode.ErrorCodeTagInvalid, msg: fmt.Sprintf("invalid tag %q", clip(ref, 80))})
		return
	}
	m, err := s.allowedManifest(r.Context(), r.Method, t, ref, want, r.Header.Values("Accept"))
	if err != nil {
		s.fail(w, r, t.up.Name(), "manifest", err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", m.MediaType)
	h.Set("Content-Length", strconv.Itoa(len(m.Bytes)))
	h.Set("Docker-Content-Digest", string(m.Digest))
	h.Set("Etag", `"`+string(m.Digest)+`"`)
	writeDeadline(w)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(m.Bytes)
	}
}

// allowedManifest returns the manifest at ref when the policy allows
// serving it at t, else the error to answer (a *DeniedError for a
// refusal). The bytes fetched count in the in-flight budget until the
// decision is made, not while they are written to the client (a client
// that does not read must not hold the budget; writeDeadline bounds it).
func (s *Server) allowedManifest(ctx context.Context, method string, t target, ref string, want notarize.Digest, accept []string) (*upstream.Manifest, error) {
	m, done, err := s.fetchManifest(ctx, t, ref, want, accept)
	defer done()
	if err != nil {
		return nil, err
	}
	// The decision is made on exactly the bytes that are served.
	ev, err := s.decide(ctx, method, t, ref, m)
	if err != nil {
		return nil, err
	}
	if !ev.Allow {
		return nil, &DeniedError{Target: t.String(), Reference: ref, Eval: ev}
	}
	if ev.Verdict == notarize.Trusted {
		if kids := indexChildren(m); len(kids) > 0 {
			s.parents.remember(m.Digest, kids)
		}
	}
	// Served (also under audit or off): its blobs may be fetched here,
	// as long as it would still be served.
	gr := grant{manifest: m.Digest}
	if ev.Via != nil {
		gr.via = ev.Via.Digest
	}
	if err := s.gate.record(t.up.Name(), t.repo, gr, manifestRefs(m)); err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "blob gate not updated: the manifest's blobs will be refused",
			slog.String("upstream", t.up.Name()), slog.String("repo", t.repo), slog.String("digest", string(m.Digest)), slog.String("error", err.Error()))
	}
	return m, nil
}

// answerWriteTimeout bounds the writing of an answer held in memory (a
// manifest, a tags or referrers list) to the client: one that does not
// read keeps the bytes no longer.
const answerWriteTimeout = time.Minute

// writeDeadline bounds the answer about to be written on w by
// answerWriteTimeout, where the connection supports it (net/http lifts it
// once the answer is written: the next answers on the connection, blobs
// that stream for as long as they take, are not bound by it).
func writeDeadline(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(answerWriteTimeout))
}

// fetchManifest returns the manifest at ref: from the cache for a digest
// reference that this target's upstream served for this repository before,
// else from upstream (a tag is always asked upstream, since it can move),
// one fetch shared by the requests that ask for it at once. The digest is
// always the hash of the returned bytes. The caller calls done once it no
// longer needs the bytes counted in flight (decided), also on error.
func (s *Server) fetchManifest(ctx context.Context, t target, ref string, want notarize.Digest, accept []string) (m *upstream.Manifest, done func(), err error) {
	if want != "" {
		if m, ok := s.cachedManifest(t, want); ok {
			return m, func() {}, nil
		}
	}
	return s.flights.do(ctx, newFlightKey(t, ref, accept), func(ctx context.Context, hold func(release func())) (*upstream.Manifest, error) {
		ctx, cancel := context.WithTimeout(ctx, s.cfg.ManifestTimeout)
		defer cancel()
		return s.fetchUpstream(ctx, t, ref, want, accept, hold)
	})
}

// cachedManifest returns the manifest of digest d that t's upstream served
// for t's repository before, if the cache still has it, and counts the hit
// or miss.
func (s *Server) cachedManifest(t target, d notarize.Digest) (*upstream.Manifest, bool) {
	m, ok := s.manifests.get(manifestKey{upstream: t.up.Name(), repo: t.repo, digest: d})
	result := "miss"
	if ok {
		result = "hit"
	}
	s.metrics.cache.WithLabelValues("manifest", result).Inc()
	return m, ok
}

// fetchUpstream asks t's upstream for the manifest at ref. A tag is asked
// with HEAD first, as distribution's proxy does (Docker Hub counts GETs,
// not HEADs, against the pull quota): the Docker-Content-Digest it answers
// is only a key to the manifest cache, whose bytes were hashed when they
// were cached (the policy is applied to them again by the caller); on a
// miss, or when the upstream names no digest, the manifest is fetched with
// GET and its digest is the hash of the bytes, whatever the HEAD said. The
// bytes of a GET are taken from the in-flight budget before they are read
// (503 beyond), and given back through hold.
func (s *Server) fetchUpstream(ctx context.Context, t target, ref string, want notarize.Digest, accept []string, hold func(release func())) (*upstream.Manifest, error) {
	if want == "" {
		d, err := t.up.HeadManifest(ctx, t.repo, ref, accept)
		var ue *upstream.Error
		switch {
		case err == nil && d != "":
			if m, ok := s.cachedManifest(t, d); ok {
				return m, nil
			}
		case err == nil:
		case errors.As(err, &ue) && ue.StatusCode != http.StatusNotFound && ue.StatusCode != http.StatusTooManyRequests:
			// A registry that does not answer HEAD well: the GET says.
		default:
			return nil, err
		}
	}
	admit := func(size int64) error {
		release, err := s.inflight.acquire(ctx, size)
		if err != nil {
			return err
		}
		hold(release)
		return nil
	}
	m, err := t.up.GetManifestAdmitted(ctx, t.repo, ref, accept, s.cfg.MaxManifestSize, admit)
	if err != nil {
		return nil, err
	}
	if want != "" && m.Digest != want { // GetManifest checks this too; never serve otherwise
		return nil, fmt.Errorf("manifest %s: %w", want, upstream.ErrDigestMismatch)
	}
	s.manifests.put(manifestKey{upstream: t.up.Name(), repo: t.repo, digest: m.Digest}, m)
	return m, nil
}

// fail is writeError with Retry-After on a 503 for a bound of the work in
// flight (*busyError).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, upstreamName, kind string, err error) {
	retryAfter(w, err)
	s.writeError(w, r, upstreamName, kind, err)
}

// refreshTimeout bounds the replica refresh made before a refusal.
const refreshTimeout = 2 * time.Second

// evaluate applies pol to digest d at tgt with the records about d and the
// trusted indexes known to list it. When the trust source cannot answer,
// the evaluation is UNVERIFIABLE (the core fails closed under enforce).
func (s *Server) evaluate(ctx context.Context, pol *notarize.Evaluator, tgt string, d notarize.Digest) notarize.Evaluation {
	return s.evaluateWith(ctx, pol, tgt, d, s.parents.of(d))
}

// evaluateWith is evaluate with the indexes that may lend d their trust
// given (parents).
func (s *Server) evaluateWith(ctx context.Context, pol *notarize.Evaluator, tgt string, d notarize.Digest, parents []notarize.Digest) notarize.Evaluation {
	return s.evaluateAll(ctx, pol, tgt, []judged{{digest: d, parents: parents}})[0]
}

// judged is a digest to evaluate and the indexes that may lend it their
// trust.
type judged struct {
	digest  notarize.Digest
	parents []notarize.Digest
}

// evaluateAll applies pol at tgt to each of js, for an answer that judges
// many digests (a referrers list) or one. Each digest's records are read
// once however often it appears (as a digest or a parent), all of them
// before the revocations, which are read once, last: one answer costs one
// read per distinct digest plus one per accepted key, never a revocation
// read per digest (red team 6, F2). A digest whose records (or a parent's)
// cannot be read is UNVERIFIABLE (the core fails closed under enforce).
func (s *Server) evaluateAll(ctx context.Context, pol *notarize.Evaluator, tgt string, js []judged) []notarize.Evaluation {
	// Only the records of the keys the matching rule accepts are read:
	// strangers' statements about d, however many, count for nothing and
	// cannot slow the decision or make it UNVERIFIABLE
	// (TestDecisionIgnoresStrangersFlood).
	var keys []string
	if _, rule, ok := pol.Policy().Match(tgt); ok {
		keys = pol.AcceptedKeys(rule)
	}
	type read struct {
		recs []notarize.Record
		err  error
	}
	reads := map[notarize.Digest]read{}
	get := func(d notarize.Digest) read {
		r, ok := reads[d]
		if !ok {
			r.recs, r.err = s.trust.RecordsBy(ctx, d, keys)
			reads[d] = r
		}
		return r
	}
	out := make([]notarize.Evaluation, len(js))
	failed := make([]bool, len(js))
	ps := make([][]notarize.Parent, len(js))
	anyRead := false
	for i, j := range js {
		r := get(j.digest)
		if r.err != nil {
			out[i], failed[i] = pol.Unverifiable(tgt, j.digest, r.err), true
			continue
		}
		for _, p := range j.parents {
			pr := get(p)
			if pr.err != nil {
				out[i], failed[i] = pol.Unverifiable(tgt, j.digest, pr.err), true
				break
			}
			ps[i] = append(ps[i], notarize.Parent{Digest: p, Records: pr.recs})
		}
		anyRead = anyRead || !failed[i]
	}
	if !anyRead {
		return out
	}
	// The revocations are read last: the replica may apply entries
	// between two reads, and every record read before them is then older
	// than what they cover, so a thief's statement is never read without
	// the revocation logged before it (TestRedteam3RevocationAndThiefInOneBatch).
	revs, err := s.revocations(ctx, pol, tgt) // revoke.go
	for i, j := range js {
		switch {
		case failed[i]:
		case err != nil:
			out[i] = pol.Unverifiable(tgt, j.digest, err)
		default:
			out[i] = pol.EvaluateWithRevocations(tgt, j.digest, get(j.digest).recs, ps[i], revs)
		}
	}
	return out
}

// decide applies the policy to m at t, logs the decision as one line and
// counts it. An UNVERIFIABLE decision that is not allowed is a
// *trustError (503); one an audit or off rule allows is served.
func (s *Server) decide(ctx context.Context, method string, t target, ref string, m *upstream.Manifest) (notarize.Evaluation, error) {
	start := time.Now()
	pol := s.policy.Load()
	tgt := t.String()
	ev := s.evaluate(ctx, pol, tgt, m.Digest)
	if !ev.Allow && ev.Verdict != notarize.Unverifiable {
		// Before refusing, make sure the replica has seen what the ledger
		// committed to until now: a statement signed just before this pull
		// (sign, then deploy) must not lose to the replica's poll interval.
		rctx, cancel := context.WithTimeout(ctx, refreshTimeout)
		err := s.trust.Refresh(rctx)
		cancel()
		if err == nil {
			ev = s.evaluate(ctx, pol, tgt, m.Digest)
		}
	}
	verdict := ev.Verdict.String()
	elapsed := time.Since(start)
	s.metrics.decisionTime.Observe(elapsed.Seconds())
	s.metrics.decisions.WithLabelValues(verdict, string(ev.Mode), t.up.Name()).Inc()
	s.stats.observe(newDecision(t, ref, m.Digest, ev, time.Now().UTC()))
	via := ""
	if ev.Via != nil {
		via = string(ev.Via.Digest)
	}
	attrs := []slog.Attr{
		slog.String("upstream", t.up.Name()), slog.String("repo", t.repo), slog.String("reference", ref),
		slog.String("digest", string(m.Digest)), slog.String("media_type", m.MediaType), slog.String("method", method),
		slog.String("verdict", verdict), slog.Bool("allowed", ev.Allow), slog.String("mode", string(ev.Mode)),
		slog.String("rule", ev.Rule.Match), slog.Int("rule_index", ev.RuleIndex), slog.String("signer", ev.Signer()),
		slog.String("via_index", via), slog.String("reason", ev.Reason()), slog.Duration("decision_time", elapsed),
	}
	if ev.Allow {
		s.log.LogAttrs(ctx, slog.LevelInfo, "decision", attrs...)
	} else { // once per kind per interval, with the count of the others
		s.refusals.note(ctx, fmt.Sprintf("%s@%s %s %d", tgt, m.Digest, verdict, ev.RuleIndex), "decision", attrs...)
	}
	if ev.Verdict == notarize.Unverifiable && !ev.Allow {
		return ev, &trustError{target: tgt + "@" + string(m.Digest), err: ev.Err}
	}
	return ev, nil
}

// serveTags answers the upstream's tags list as one JSON object
// {"name":…,"tags":[…]}, encoded by the proxy and served as
// application/json whatever Content-Type the upstream sent: an answer that
// is not one such object, or names a tag that is not one, is refused (502),
// never relayed (red team 6, F4).
func (s *Server) serveTags(w http.ResponseWriter, r *http.Request) {
	t, err := s.target(r)
	if err != nil {
		s.writeError(w, r, "", "tags", err)
		return
	}
	q := url.Values{}
	for _, k := range []string{"n", "last"} {
		if v := r.URL.Query().Get(k); v != "" {
			q.Set(k, v)
		}
	}
	resp, err := t.up.Do(r.Context(), http.MethodGet, t.repo, "tags/list", q, http.Header{"Accept": {"application/json"}})
	if err != nil {
		s.writeError(w, r, t.up.Name(), "tags", err)
		return
	}
	defer resp.Body.Close()
	b, release, err := s.readPassThrough(r.Context(), t, resp)
	if err != nil {
		s.fail(w, r, t.up.Name(), "tags", err)
		return
	}
	b, err = tagsList(t, b)
	release() // the upstream's bytes are dropped; the answer is at most as large
	if err != nil {
		s.writeError(w, r, t.up.Name(), "tags", err)
		return
	}
	if next := nextLink(resp.Header.Get("Link"), r); next != "" {
		w.Header().Set("Link", next)
	}
	writeBody(w, r, "application/json", b)
}

// tagsList returns the tags list b as the proxy serves it: b must be one
// JSON object with a string "name" and a "tags" array of tags (null for
// none), nothing after it; it is encoded again (encoding/json escapes
// '<', '>' and '&'), other members dropped.
func tagsList(t target, b []byte) ([]byte, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("upstream %s: tags of %s: %w: %s", t.up.Name(), t, upstream.ErrBadAnswer, fmt.Sprintf(format, args...))
	}
	var list struct {
		Name *string   `json:"name"`
		Tags *[]string `json:"tags"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&list); err != nil {
		return nil, bad("not a JSON object {name, tags}: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, bad("more than one JSON value")
	}
	if list.Name == nil || *list.Name == "" {
		return nil, bad("no name")
	}
	tags := []string{}
	if list.Tags != nil && *list.Tags != nil {
		tags = *list.Tags
	}
	for _, tag := range tags {
		if !tagRE.MatchString(tag) {
			return nil, bad("%q is not a tag", clip(tag, 80))
		}
	}
	out, err := json.Marshal(struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{*list.Name, tags})
	if err != nil {
		return nil, fmt.Errorf("tags of %s: %w", t, err)
	}
	return out, nil
}

// readPassThrough reads an upstream answer of at most maxPassThrough bytes,
// taken from the in-flight budget (by its Content-Length, or the bound when
// it has none) before it is read; the caller calls release once it no
// longer holds the bytes, before it writes its answer.
func (s *Server) readPassThrough(ctx context.Context, t target, resp *http.Response) (b []byte, release func(), err error) {
	size := resp.ContentLength
	if size < 0 || size > maxPassThrough {
		size = maxPassThrough
	}
	release, err = s.inflight.acquire(ctx, size)
	if err != nil {
		return nil, nil, err
	}
	b, err = io.ReadAll(io.LimitReader(resp.Body, maxPassThrough+1))
	if err == nil && len(b) > maxPassThrough {
		err = fmt.Errorf("upstream %s: answer larger than %d bytes: %w", t.up.Name(), maxPassThrough, upstream.ErrTooLarge)
	}
	if err != nil {
		release()
		return nil, nil, fmt.Errorf("upstream %s: %w: %w", t.up.Name(), upstream.ErrUnreachable, err)
	}
	return b, release, nil
}

// writeBody answers 200 with b (no body for HEAD), within answerWriteTimeout.
func writeBody(w http.ResponseWriter, r *http.Request, contentType string, b []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	writeDeadline(w)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

// nextLink rewrites an upstream tags pagination Link for the client's path.
func nextLink(link string, r *http.Request) string {
	start, end := strings.Index(link, "<"), strings.Index(link, ">")
	if start < 0 || end <= start || !strings.Contains(link[end:], `rel="next"`) {
		return ""
	}
	u, err := url.Parse(link[start+1 : end])
	if err != nil {
		return ""
	}
	q := url.Values{}
	for _, k := range []string{"n", "last"} {
		if v := u.Query().Get(k); v != "" {
			q.Set(k, v)
		}
	}
	if ns := r.URL.Query().Get("ns"); ns != "" {
		q.Set("ns", ns)
	}
	return "<" + (&url.URL{Path: r.URL.Path, RawQuery: q.Encode()}).String() + `>; rel="next"`
}

// instrument times a handler and counts it by route, method and status.
func (s *Server) instrument(route string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			s.metrics.requests.WithLabelValues(route, r.Method, strconv.Itoa(sw.status)).Observe(time.Since(start).Seconds())
		}()
		h(sw, r)
	})
}

// statusWriter records the status code; it keeps the underlying writer's
// ReadFrom (sendfile for cached blobs) and Flush.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	w.wrote = true
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack is never used by the proxy but keeps the interface of the writer.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := w.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("hijack not supported")
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
