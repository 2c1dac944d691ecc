package proxy_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy"
	"github.com/notarize/docker-notarize/proxy/upstream"
)

// benchProxy is a proxy on an in-process upstream registry whose every
// manifest is served under an audit rule (so each request is a decision,
// recorded as audit-only) with a trust source that has no statement.
func benchProxy(b *testing.B) (*proxy.Server, *httptest.Server) {
	b.Helper()
	dir := b.TempDir()
	writeKey(b, filepath.Join(dir, "release.pub"), newSigner(b))
	pol := "signers: {release: {keys: [release.pub]}, ops: {keys: [release.pub]}}\n" +
		"rules: [{match: 'local/deny/**', require: [release]}, {match: '**', require: [release], mode: audit}]\n"
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(pol), 0o600); err != nil {
		b.Fatal(err)
	}
	ev, err := proxy.LoadPolicy(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	up := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	b.Cleanup(up.Close)
	srv, err := proxy.New(proxy.Config{DataDir: filepath.Join(dir, "data"), Policy: ev, Trust: noRecords{},
		Upstreams: []upstream.Config{{Name: "local", URL: up.URL, Keychain: anonymous()}}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Close(context.Background()) })
	return srv, up
}

// BenchmarkManifestRecording is the cost of recording decisions: GET of a
// manifest by digest (from the proxy's manifest cache, so the request is
// the decision and little else) with the decision record on and off, in
// the same run; served (audit-only: counters only) and refused (the
// refusal also goes through the writer's queue).
//
//	go test -run '^$' -bench ManifestRecording ./proxy/
func BenchmarkManifestRecording(b *testing.B) {
	srv, up := benchProxy(b)
	h := srv.Handler()
	push := func(repo string) string {
		img, err := random.Image(1024, 1)
		if err != nil {
			b.Fatal(err)
		}
		ref, err := name.ParseReference(strings.TrimPrefix(up.URL, "http://")+"/"+repo+":v1", name.Insecure)
		if err != nil {
			b.Fatal(err)
		}
		if err := remote.Write(ref, img, remote.WithContext(b.Context())); err != nil {
			b.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			b.Fatal(err)
		}
		return "/v2/" + repo + "/manifests/" + d.String()
	}
	served, refused := push("app"), push("deny/app")
	get := func(b *testing.B, path string, want int) {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != want {
			b.Fatalf("HTTP %d %s", w.Code, w.Body)
		}
	}
	for _, tc := range []struct {
		name string
		path string
		want int
	}{{"served", served, http.StatusOK}, {"refused", refused, http.StatusForbidden}} {
		for _, on := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/recording=%v", tc.name, on), func(b *testing.B) {
				proxy.SetDecisionRecording(srv, on)
				get(b, tc.path, tc.want) // warm the manifest cache
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						get(b, tc.path, tc.want)
					}
				})
			})
		}
	}
}

// BenchmarkDashboard is the time to render /ui/ (and a filtered view, and
// a digest page) with 100,000 decisions recorded over the last day: 400
// repositories on 2 upstreams, 5,000 digests, every verdict.
//
//	go test -run '^$' -bench Dashboard ./proxy/
func BenchmarkDashboard(b *testing.B) {
	srv, _ := benchProxy(b)
	now := time.Now().UTC()
	verdicts := []string{"TRUSTED", "TRUSTED", "TRUSTED", "UNKNOWN", "UNTRUSTED", "UNVERIFIABLE"}
	var someDigest notarize.Digest
	for i := range 100_000 {
		d := notarize.DigestOf(fmt.Appendf(nil, "image %d", i%5000))
		if i == 0 {
			someDigest = d
		}
		v := verdicts[i%len(verdicts)]
		out := proxy.OutcomeAllowed
		switch {
		case v != "TRUSTED" && i%3 == 0:
			out = proxy.OutcomeAudit
		case v != "TRUSTED":
			out = proxy.OutcomeRefused
		}
		signer := ""
		if v == "TRUSTED" || v == "UNTRUSTED" {
			signer = []string{"release", "ops"}[i%2]
		}
		proxy.Observe(srv, proxy.Decision{
			Time: now.Add(-time.Duration(i) * 24 * time.Hour / 100_000), Upstream: []string{"local", "docker.io"}[i%2],
			Repo: fmt.Sprintf("team%d/app%d", i%20, i%400), Reference: "v1", Digest: d, Verdict: v, Outcome: out, Mode: "enforce",
			Signer: signer, Reason: string(d) + " is " + v + ": the bench's reason",
		})
	}
	h := srv.Handler()
	for _, path := range []string{"/ui/", "/ui/?upstream=local&verdict=UNTRUSTED&signer=ops&range=24h", "/ui/?range=30d", "/ui/digest/" + string(someDigest)} {
		b.Run(strings.NewReplacer("/", "_", "?", "_").Replace(path[:min(len(path), 40)]), func(b *testing.B) {
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
				if w.Code != http.StatusOK {
					b.Fatalf("GET %s: HTTP %d %.300s", path, w.Code, w.Body)
				}
			}
		})
	}
}
