package proxy_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy"
)

// countingTrust counts the trust source's reads.
type countingTrust struct {
	proxy.TrustSource
	recordsBy atomic.Int64
}

func (c *countingTrust) RecordsBy(ctx context.Context, d notarize.Digest, keyIDs []string) ([]notarize.Record, error) {
	c.recordsBy.Add(1)
	return c.TrustSource.RecordsBy(ctx, d, keyIDs)
}

// referrersList returns an OCI index of n descriptors of random digests.
func referrersList(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		raw := make([]byte, 32)
		_, _ = rand.Read(raw)
		fmt.Fprintf(&b, `{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":1}`, notarize.DigestOf(raw))
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// Red team 6: the cost of one anonymous referrers request. The proxy
// judges every descriptor of the upstream's list (up to 4 MiB, ~30,000
// descriptors) with a whole decision each, and each decision reads the
// accepted keys' revocations again: one request costs (1 + keys) trust
// reads per descriptor. The test fails when the revocations are read more
// than once per request.
func TestRedteam6ReferrersCostPerRequest(t *testing.T) {
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	const n = 25_000
	list := referrersList(n)
	ev.serve(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/referrers/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.index.v1+json")
		w.Header().Set("Content-Length", strconv.Itoa(len(list)))
		_, _ = w.Write(list)
	})
	ct := &countingTrust{TrustSource: e.replica}
	srv, err := proxy.New(proxy.Config{
		DataDir: filepath.Join(t.TempDir(), "data"), Upstreams: e.ups, DefaultUpstream: "local",
		Policy: e.policy, Trust: ct, ManifestTimeout: 3 * time.Second,
		Logger: slog.New(slog.NewJSONHandler(e.logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(context.Background()) })
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)

	subject := notarize.DigestOf([]byte("subject"))
	start := time.Now()
	resp, err := http.Get(hs.URL + "/v2/evil/app/referrers/" + string(subject))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	took := time.Since(start)
	reads := ct.recordsBy.Load()
	t.Logf("one referrers request of %d bytes, %d descriptors: HTTP %d, %d trust reads, %v", len(list), n, resp.StatusCode, reads, took)
	if reads > n+16 {
		t.Errorf("DoS: one anonymous referrers request made %d trust reads for %d descriptors (the accepted keys' revocations read again for each descriptor)", reads, n)
	}
}
