package proxy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/internal/testutil"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
	"github.com/notarize/docker-notarize/proxy"
)

// Tests of the bounds on what one anonymous request costs the proxy (red
// team 6: F2 referrers, F3 manifests by tag, F4 tags list).

// randomDigests returns n distinct random digests.
func randomDigests(n int) []notarize.Digest {
	ds := make([]notarize.Digest, n)
	for i := range ds {
		raw := make([]byte, 32)
		_, _ = rand.Read(raw)
		ds[i] = notarize.DigestOf(raw)
	}
	return ds
}

// referrersIndex returns an OCI index that lists ds as image manifests.
func referrersIndex(ds ...notarize.Digest) []byte {
	var b strings.Builder
	b.WriteString(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`)
	for i, d := range ds {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":1}`, d)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// serveReferrersList makes ev answer every referrers request with list.
func serveReferrersList(ev *evil, list []byte) {
	ev.serve(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/referrers/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
		w.Header().Set("Content-Length", strconv.Itoa(len(list)))
		_, _ = w.Write(list)
	})
}

// proxyOver serves a proxy of e's upstreams and policy over trust and
// returns its URL.
func proxyOver(t *testing.T, e *env, trust proxy.TrustSource) string {
	t.Helper()
	_, url := proxyWith(t, e, trust, func(*proxy.Config) {})
	return url
}

// proxyWith is proxyOver with the configuration changed by set; it returns
// the proxy and its URL.
func proxyWith(t *testing.T, e *env, trust proxy.TrustSource, set func(*proxy.Config)) (*proxy.Server, string) {
	t.Helper()
	cfg := proxy.Config{
		DataDir: filepath.Join(t.TempDir(), "data"), Upstreams: e.ups, DefaultUpstream: "local",
		Policy: e.policy, Trust: trust, ManifestTimeout: 3 * time.Second,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
	}
	set(&cfg)
	srv, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(context.Background()) })
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return srv, hs.URL
}

// get sends method to url with ctx and returns the status, headers and
// body (safe to call from any goroutine).
func get(ctx context.Context, method, url string) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// TestReferrersRevocationsReadOnce: the descriptors of one referrers list
// are judged with one read of each descriptor's records and one read of
// the accepted key's revocations, not one per descriptor; the list keeps
// exactly the descriptors the policy allows.
func TestReferrersRevocationsReadOnce(t *testing.T) {
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	const n = 200
	ds := randomDigests(n)
	e.sign(e.release, ds[0], notarize.StatusTrusted)
	e.sign(e.release, ds[n/2], notarize.StatusTrusted)
	e.sync()
	serveReferrersList(ev, referrersIndex(ds...))
	ct := &countingTrust{TrustSource: e.replica}
	url := proxyOver(t, e, ct)

	code, _, body, err := get(t.Context(), http.MethodGet, url+"/v2/evil/app/referrers/"+string(notarize.DigestOf([]byte("subject"))))
	if err != nil || code != http.StatusOK {
		t.Fatalf("referrers: %d %v %s", code, err, body)
	}
	if !bytes.Contains(body, []byte(ds[0])) || !bytes.Contains(body, []byte(ds[n/2])) || bytes.Count(body, []byte(`"digest"`)) != 2 {
		t.Fatalf("want exactly the two signed referrers listed: %s", body)
	}
	if reads := ct.recordsBy.Load(); reads > n+1 {
		t.Fatalf("%d trust reads for %d descriptors and one accepted key: the revocations were read more than once", reads, n)
	}
}

// TestReferrersJudgedBounded: at most 1,000 descriptors of a referrers list
// are judged and listed per answer (a page, in the upstream's order); a
// signed descriptor past the bound is on the next page, which the Link
// header names; a bad page offset is 400.
func TestReferrersJudgedBounded(t *testing.T) {
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	const n = 1500
	ds := randomDigests(n)
	e.sign(e.release, ds[10], notarize.StatusTrusted)
	e.sign(e.release, ds[1200], notarize.StatusTrusted)
	e.sync()
	serveReferrersList(ev, referrersIndex(ds...))
	ct := &countingTrust{TrustSource: e.replica}
	url := proxyOver(t, e, ct)

	code, h, body, err := get(t.Context(), http.MethodGet, url+"/v2/evil/app/referrers/"+string(notarize.DigestOf([]byte("subject"))))
	if err != nil || code != http.StatusOK {
		t.Fatalf("referrers: %d %v %s", code, err, body)
	}
	if !bytes.Contains(body, []byte(ds[10])) || bytes.Contains(body, []byte(ds[1200])) {
		t.Fatalf("want the signed referrer at 10 listed and the one at 1200 (past the bound) not: %s", body)
	}
	if reads := ct.recordsBy.Load(); reads > 1000+1 {
		t.Fatalf("%d trust reads: more than the 1000 descriptors judged and one revocation read", reads)
	}

	// The rest is the next page, linked as the OCI distribution spec pages
	// the referrers API: 1,000 junk artifacts pushed ahead of a signature
	// cannot push it out of every answer (red team 7, W2).
	link := h.Get("Link")
	next, ok := strings.CutPrefix(link, "<")
	next, ok2 := strings.CutSuffix(next, `>; rel="next"`)
	if !ok || !ok2 || !strings.HasPrefix(next, "/v2/evil/app/referrers/") {
		t.Fatalf("Link %q: want the next page of the list", link)
	}
	code, h, body, err = get(t.Context(), http.MethodGet, url+next)
	if err != nil || code != http.StatusOK {
		t.Fatalf("next referrers page %s: %d %v %s", next, code, err, body)
	}
	if !bytes.Contains(body, []byte(ds[1200])) || bytes.Contains(body, []byte(ds[10])) || bytes.Contains(body, []byte(ds[1201])) {
		t.Fatalf("want the signed referrer at 1200 alone on the second page: %s", body)
	}
	if l := h.Get("Link"); l != "" {
		t.Fatalf("the last page links on: %q", l)
	}
	if reads := ct.recordsBy.Load(); reads > 1500+2 {
		t.Fatalf("%d trust reads for two pages of 1500 descriptors", reads)
	}
	for _, bad := range []string{"-1", "x", "1&offset=2"} {
		code, _, body, _ := get(t.Context(), http.MethodGet, url+"/v2/evil/app/referrers/"+string(notarize.DigestOf([]byte("subject")))+"?offset="+bad)
		if code != http.StatusBadRequest || !bytes.Contains(body, []byte("PAGINATION_NUMBER_INVALID")) {
			t.Fatalf("offset %q: HTTP %d %s; want 400 PAGINATION_NUMBER_INVALID", bad, code, body)
		}
	}
}

// TestReferrersFiltersAtOnce: at most 4 referrers lists are fetched and
// judged at once; the next request waits a second, then is answered 503
// UNAVAILABLE with Retry-After, and the 4 finish normally.
func TestReferrersFiltersAtOnce(t *testing.T) {
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	list := referrersIndex(randomDigests(3)...)
	var arrived atomic.Int64
	release := make(chan struct{})
	ev.serve(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/referrers/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
		w.Header().Set("Content-Length", strconv.Itoa(len(list)))
		_, _ = w.Write(list[:10])
		w.(http.Flusher).Flush()
		arrived.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(list[10:])
	})
	path := e.proxy.URL + "/v2/evil/app/referrers/" + string(notarize.DigestOf([]byte("subject")))
	var wg sync.WaitGroup
	codes := make([]int, 4)
	for i := range codes {
		wg.Go(func() { codes[i], _, _, _ = get(t.Context(), http.MethodGet, path) })
	}
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
		wg.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); arrived.Load() < 4; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the upstream saw %d referrers requests, want 4", arrived.Load())
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	code, h, body, err := get(ctx, http.MethodGet, path)
	if err != nil {
		t.Fatalf("a fifth referrers request while 4 are judged was not answered: %v", err)
	}
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") != "1" {
		t.Fatalf("a fifth referrers request while 4 are judged: HTTP %d, Retry-After %q, %s; want 503 with Retry-After 1", code, h.Get("Retry-After"), body)
	}
	if c, _ := ociErr(t, body); c != "UNAVAILABLE" {
		t.Fatalf("code %s, want UNAVAILABLE", c)
	}
	close(release)
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Fatalf("referrers request %d of the 4: HTTP %d", i, c)
		}
	}
}

// TestReferrersRevocationReadLast: a key is stolen; its revocation and the
// thief's statement about a referrer reach the replica in one batch. The
// referrers list is judged with the revocations read once for all the
// descriptors; whichever read the batch lands after, the thief's referrer
// is not listed (the revocations are read after every descriptor's
// records), and the referrer signed before the theft still is.
func TestReferrersRevocationReadLast(t *testing.T) {
	for after := 1; after <= 3; after++ {
		t.Run(fmt.Sprintf("batch after read %d", after), func(t *testing.T) {
			ev := newEvil(t)
			e := newEnv(t, withUpstream(ev.config()))
			ds := randomDigests(3) // signed before the theft, the thief's, unsigned
			e.sign(e.release, ds[0], notarize.StatusTrusted)
			e.sync()
			serveReferrersList(ev, referrersIndex(ds...))
			rt := &batchLandsTrust{Replica: e.replica}
			url := proxyOver(t, e, rt)
			path := url + "/v2/evil/app/referrers/" + string(notarize.DigestOf([]byte("subject")))

			e.revoke(e.release, notarizetest.KeyID(t, e.release))
			e.sign(e.release, ds[1], notarize.StatusTrusted)
			rt.arm(after)
			code, _, body, err := get(t.Context(), http.MethodGet, path)
			if rt.err != nil {
				t.Fatalf("injected sync: %v", rt.err)
			}
			if err != nil || code != http.StatusOK {
				t.Fatalf("referrers: %d %v %s", code, err, body)
			}
			if bytes.Contains(body, []byte(ds[1])) {
				t.Fatalf("BYPASS: the batch holding the revocation and the thief's statement landed after read %d, and the thief's referrer was listed: %s", after, body)
			}
			if !bytes.Contains(body, []byte(ds[0])) {
				t.Fatalf("the referrer signed before the revocation is not listed: %s", body)
			}
		})
	}
}

// manifestUpstream makes ev serve m at every manifests path, with its
// Docker-Content-Digest on HEAD and GET when withDigest, and returns the
// counter of GETs.
func manifestUpstream(ev *evil, m []byte, withDigest bool) *atomic.Int64 {
	var gets atomic.Int64
	ev.serve(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/manifests/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Header().Set("Content-Length", strconv.Itoa(len(m)))
		if withDigest {
			w.Header().Set("Docker-Content-Digest", string(notarize.DigestOf(m)))
		}
		if r.Method == http.MethodGet {
			gets.Add(1)
			_, _ = w.Write(m)
		}
	})
	return &gets
}

// TestManifestTagHeadFirst: a manifest by tag is asked with HEAD first; when
// the digest it names was served for this repository before, the cached
// bytes are served with no GET upstream (Docker Hub counts GETs against the
// pull quota), and the policy is applied again to them: untrusted since,
// they are refused. A digest cached for another repository is not served.
func TestManifestTagHeadFirst(t *testing.T) {
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	m := manifestBytes(t)
	d := notarize.DigestOf(m)
	e.sign(e.release, d, notarize.StatusTrusted)
	e.sync()
	gets := manifestUpstream(ev, m, true)

	for i := range 4 {
		code, h, body := e.do(http.MethodGet, manifestPath("evil/app", "v1"), nil)
		if code != http.StatusOK || !bytes.Equal(body, m) || h.Get("Docker-Content-Digest") != string(d) {
			t.Fatalf("pull %d of the tag: HTTP %d %s", i, code, body)
		}
	}
	if n := gets.Load(); n != 1 {
		t.Fatalf("4 pulls of one tag made %d GETs upstream, want 1 (then HEADs answered from the cache)", n)
	}
	if heads := ev.rec.count("/manifests/") - 1; heads != 4 {
		t.Fatalf("%d HEADs upstream, want 4", heads)
	}

	t.Run("another repository", func(t *testing.T) {
		code, _, body := e.do(http.MethodGet, manifestPath("evil/other", "v1"), nil)
		if code != http.StatusOK || !bytes.Equal(body, m) {
			t.Fatalf("HTTP %d %s", code, body)
		}
		if n := gets.Load(); n != 2 {
			t.Fatalf("the other repository's tag was served from the cache of app's (%d GETs upstream): its upstream repository never served those bytes", n)
		}
	})

	t.Run("decided again", func(t *testing.T) {
		e.sign(e.release, d, notarize.StatusUntrusted)
		e.sync()
		code, _, body := e.do(http.MethodGet, manifestPath("evil/app", "v1"), nil)
		if code != http.StatusForbidden {
			t.Fatalf("a cached manifest untrusted since: HTTP %d %s, want 403", code, body)
		}
		if n := gets.Load(); n != 2 {
			t.Fatalf("%d GETs upstream, want none more", n)
		}
	})
}

// TestManifestTagHeadLies: the digest a HEAD names is a cache key only: an
// upstream naming no digest, or one it never served, is asked with GET, and
// what is served is judged and named by the hash of the bytes.
func TestManifestTagHeadLies(t *testing.T) {
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	m := manifestBytes(t)
	d := notarize.DigestOf(m)
	e.sign(e.release, d, notarize.StatusTrusted)
	e.sync()
	for _, tc := range []struct {
		name   string
		digest string
	}{
		{"no digest", ""},
		{"not a digest", "md5:abc"},
		{"another digest", string(notarize.DigestOf([]byte("never served")))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var gets atomic.Int64
			ev.serve(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
				w.Header().Set("Content-Length", strconv.Itoa(len(m)))
				if tc.digest != "" {
					w.Header().Set("Docker-Content-Digest", tc.digest)
				}
				if r.Method == http.MethodGet {
					gets.Add(1)
					_, _ = w.Write(m)
				}
			})
			tag := strings.ReplaceAll(tc.name, " ", "-")
			code, h, body := e.do(http.MethodGet, manifestPath("evil/app", tag), nil)
			if code != http.StatusOK || !bytes.Equal(body, m) || h.Get("Docker-Content-Digest") != string(d) || gets.Load() != 1 {
				t.Fatalf("HTTP %d, digest %s, %d GETs upstream: want the GET's bytes, named by their hash", code, h.Get("Docker-Content-Digest"), gets.Load())
			}
		})
	}
}

// TestManifestInFlightBudget: the upstream answer bytes held at once are
// bounded: while one manifest fetch holds the budget, a fetch of another
// tag whose answer would not fit waits a second, then is answered 503
// UNAVAILABLE with Retry-After, before its body is read.
func TestManifestInFlightBudget(t *testing.T) {
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	proxy.SetInFlightBudget(e.srv, 10<<10)
	pad := strings.Repeat("x", 8<<10)
	body := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":2},"layers":[],"annotations":{"pad":"%s"}}`, notarize.DigestOf([]byte("{}")), pad)
	var getsA, getsB atomic.Int64
	release := make(chan struct{})
	ev.serve(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if r.Method == http.MethodHead {
			return
		}
		if strings.HasSuffix(r.URL.Path, "/a") {
			_, _ = w.Write(body[:10])
			w.(http.Flusher).Flush()
			getsA.Add(1)
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			_, _ = w.Write(body[10:])
			return
		}
		getsB.Add(1)
		_, _ = w.Write(body)
	})
	var wg sync.WaitGroup
	var codeA int
	wg.Go(func() {
		codeA, _, _, _ = get(t.Context(), http.MethodGet, e.proxy.URL+manifestPath("evil/app", "a"))
	})
	t.Cleanup(wg.Wait)
	for deadline := time.Now().Add(10 * time.Second); getsA.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			close(release)
			t.Fatal("the upstream saw no GET of tag a")
		}
	}
	code, h, b, err := get(t.Context(), http.MethodGet, e.proxy.URL+manifestPath("evil/app", "b"))
	close(release)
	if err != nil || code != http.StatusServiceUnavailable || h.Get("Retry-After") != "1" {
		t.Fatalf("tag b while tag a holds the budget: HTTP %d, Retry-After %q, %v %s; want 503 with Retry-After 1", code, h.Get("Retry-After"), err, b)
	}
	if c, msg := ociErr(t, b); c != "UNAVAILABLE" || !strings.Contains(msg, "busy") {
		t.Fatalf("%s: %s", c, msg)
	}
	wg.Wait()
	if codeA != http.StatusForbidden { // read whole, judged: unsigned
		t.Fatalf("tag a: HTTP %d, want 403 (fetched and judged)", codeA)
	}
	// The budget is given back: b fits now.
	if code, _, b := e.do(http.MethodGet, manifestPath("evil/app", "b"), nil); code != http.StatusForbidden {
		t.Fatalf("tag b once a is done: HTTP %d %s, want 403 (fetched and judged)", code, b)
	}
}

// TestManifestSlowReaderHoldsNoBudget: a client that asks for a large
// manifest and does not read the answer does not keep its bytes in the
// in-flight budget: they count until the decision, not while written, so
// the next fetch fits.
func TestManifestSlowReaderHoldsNoBudget(t *testing.T) {
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	const size = 24 << 20 // more than loopback's socket buffers hold
	big := func(tag string) []byte {
		return fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":2},"layers":[],"annotations":{"tag":%q,"pad":"%s"}}`,
			notarize.DigestOf([]byte("{}")), tag, strings.Repeat("x", size))
	}
	ms := map[string][]byte{"a": big("a"), "b": big("b")}
	for _, m := range ms {
		e.sign(e.release, notarize.DigestOf(m), notarize.StatusTrusted)
	}
	e.sync()
	var servedA atomic.Int64
	ev.serve(func(w http.ResponseWriter, r *http.Request) {
		tag := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		m := ms[tag]
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Header().Set("Content-Length", strconv.Itoa(len(m)))
		if r.Method == http.MethodGet {
			_, _ = w.Write(m)
			if tag == "a" {
				servedA.Add(1)
			}
		}
	})
	logs := &testutil.SyncBuffer{}
	srv, url := proxyWith(t, e, e.replica, func(c *proxy.Config) {
		c.MaxManifestSize = 32 << 20
		c.ManifestTimeout = 30 * time.Second
		c.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	})
	proxy.SetInFlightBudget(srv, 40<<20) // one of the two at a time

	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if _, err := io.WriteString(conn, "GET /v2/evil/app/manifests/a HTTP/1.1\r\nHost: proxy\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Read, decided, being written to a client that does not read.
	for deadline := time.Now().Add(30 * time.Second); !bytes.Contains(logs.Bytes(), []byte(`"reference":"a"`)); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no decision about tag a (upstream served it %d times)", servedA.Load())
		}
	}
	time.Sleep(100 * time.Millisecond)
	code, h, b, err := get(t.Context(), http.MethodGet, url+manifestPath("evil/app", "b"))
	if err != nil || code != http.StatusOK || !bytes.Equal(b, ms["b"]) {
		t.Fatalf("tag b while a client does not read tag a: HTTP %d %v, Retry-After %q, %.300s", code, err, h.Get("Retry-After"), b)
	}
}

// TestManifestFlightShared: concurrent requests for one tag share one
// upstream fetch; a request that leaves does not fail the others; when
// every request has left, the fetch is canceled.
func TestManifestFlightShared(t *testing.T) {
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	m := manifestBytes(t)
	e.sign(e.release, notarize.DigestOf(m), notarize.StatusTrusted)
	e.sync()
	var gets atomic.Int64
	var canceled atomic.Int64
	release := make(chan struct{})
	ev.serve(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Header().Set("Content-Length", strconv.Itoa(len(m)))
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(m[:10])
		w.(http.Flusher).Flush()
		gets.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
			canceled.Add(1)
			return
		}
		_, _ = w.Write(m[10:])
	})
	waitGets := func(n int64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); gets.Load() < n; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the upstream saw %d GETs, want %d", gets.Load(), n)
			}
		}
	}
	url := e.proxy.URL + manifestPath("evil/app", "v1")

	// One request starts the fetch and leaves; eight more join it.
	first, cancelFirst := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _, _, _, _ = get(first, http.MethodGet, url) })
	waitGets(1)
	codes := make([]int, 8)
	for i := range codes {
		wg.Go(func() { codes[i], _, _, _ = get(t.Context(), http.MethodGet, url) })
	}
	time.Sleep(300 * time.Millisecond)
	cancelFirst()
	time.Sleep(100 * time.Millisecond)
	close(release)
	wg.Wait()
	if n := gets.Load(); n != 1 {
		t.Fatalf("9 concurrent requests for one tag made %d GETs upstream, want 1", n)
	}
	for i, c := range codes {
		if c != http.StatusOK {
			t.Fatalf("request %d: HTTP %d after the request that started the fetch left", i, c)
		}
	}

	// Everyone leaves: the fetch is canceled.
	release = make(chan struct{})
	defer close(release)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _, _, _ = get(ctx, http.MethodGet, e.proxy.URL+manifestPath("evil/app", "v2"))
	}()
	waitGets(2)
	cancel()
	<-done
	// Sooner than the fetch's own timeout (ManifestTimeout, 3 s here).
	for deadline := time.Now().Add(2 * time.Second); canceled.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the fetch went on after every request for it had left")
		}
	}
}

// TestTagsListAnswers: the tags list is served as application/json,
// encoded by the proxy, whatever the upstream sent with it; an answer that
// is not one JSON object of a name and tags is refused (502).
func TestTagsListAnswers(t *testing.T) {
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	for _, tc := range []struct {
		name, ct, body string
		want           string // "" for a 502
	}{
		{"honest", "application/json", `{"name":"app","tags":["v1","latest"]}`, `{"name":"app","tags":["v1","latest"]}`},
		{"honest, other content type", "text/plain", `{"name":"app","tags":["v1"]}`, `{"name":"app","tags":["v1"]}`},
		{"null tags", "application/json", `{"name":"app","tags":null}`, `{"name":"app","tags":[]}`},
		{"other members dropped", "application/json", `{"name":"app","tags":["v1"],"x":"<b>"}`, `{"name":"app","tags":["v1"]}`},
		{"name escaped", "application/json", `{"name":"<script>","tags":[]}`, `{"name":"\u003cscript\u003e","tags":[]}`},
		{"html", "text/html", `<html><script>alert(1)</script></html>`, ""},
		{"script as a tag", "application/json", `{"name":"app","tags":["<script>alert(1)</script>"]}`, ""},
		{"two values", "application/json", `{"name":"app","tags":[]}<script>alert(1)</script>`, ""},
		{"no name", "application/json", `{"tags":["v1"]}`, ""},
		{"tags not strings", "application/json", `{"name":"app","tags":[1]}`, ""},
		{"array", "application/json", `[]`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev.serve(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tc.ct)
				_, _ = io.WriteString(w, tc.body)
			})
			code, h, body := e.do(http.MethodGet, "/v2/evil/app/tags/list", nil)
			if tc.want == "" {
				if code != http.StatusBadGateway || bytes.Contains(body, []byte("<script")) {
					t.Fatalf("HTTP %d %s, want 502", code, body)
				}
				return
			}
			if code != http.StatusOK || h.Get("Content-Type") != "application/json" || string(body) != tc.want {
				t.Fatalf("HTTP %d %q %s, want 200 application/json %s", code, h.Get("Content-Type"), body, tc.want)
			}
		})
	}
}

// TestRegistryAnswersNotRendered: every answer under /v2 (relayed bodies,
// errors, the base) says nosniff and carries a sandboxing CSP, so that no
// upstream's bytes are rendered as a document on the proxy's origin.
func TestRegistryAnswersNotRendered(t *testing.T) {
	e := newEnv(t)
	img := e.push("app", "v1")
	e.sign(e.release, digestOf(t, img), notarize.StatusTrusted)
	e.sync()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	ld, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"/v2/", "/v2/app/manifests/v1", "/v2/app/blobs/" + ld.String(), "/v2/app/tags/list",
		"/v2/app/referrers/" + string(digestOf(t, img)), "/v2/app/manifests/nope", "/v2/nope/../x",
	} {
		code, h, _ := e.do(http.MethodGet, path, nil)
		if h.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(h.Get("Content-Security-Policy"), "sandbox") {
			t.Errorf("GET %s: HTTP %d, X-Content-Type-Options %q, Content-Security-Policy %q", path, code, h.Get("X-Content-Type-Options"), h.Get("Content-Security-Policy"))
		}
	}
}
