package blobcache_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/blobcache"
	"github.com/notarize/docker-notarize/proxy/blobcache/s3test"
)

// TestS3 runs the shared tier's guarantees against a real S3-compatible
// store (versitygw on loopback) through distribution's s3 driver: one
// server, a bucket per case.
func TestS3(t *testing.T) {
	srv := s3test.Shared(t)
	driver := func(t *testing.T) storagedriver.StorageDriver {
		d, err := factory.Create(t.Context(), "s3", srv.Params(srv.Bucket(t)))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	t.Run("SecondInstanceSkipsUpstream", func(t *testing.T) { testSecondInstanceSkipsUpstream(t, driver(t)) })
	t.Run("NeverStoresUnverified", func(t *testing.T) { testNeverStoresUnverified(t, driver(t)) })
	t.Run("BadCopy", func(t *testing.T) { testBadCopy(t, driver(t)) })
	t.Run("ConcurrentFills", func(t *testing.T) { testConcurrentFills(t, driver(t)) })
	t.Run("Redirect", func(t *testing.T) { testRedirect(t, driver(t)) })
	// No temporary upload outlives a put (cleanup_test.go).
	t.Run("PutLoserLeavesNoUpload", func(t *testing.T) { testPutLoserLeavesNoUpload(t, driver(t)) })
	t.Run("PutMoveCutShort", func(t *testing.T) { testPutMoveCutShort(t, driver(t)) })
	t.Run("PutCleanupOutlivesItsContext", func(t *testing.T) { testPutCleanupOutlivesItsContext(t, driver(t)) })
	t.Run("ClientLeavesMidStream", func(t *testing.T) { testClientLeavesMidStream(t, driver(t)) })
	t.Run("CloseCancelsUploads", func(t *testing.T) { testCloseCancelsUploads(t, driver(t)) })
}

// testRedirect: with redirects on, a blob in the shared store has a
// presigned URL that serves its bytes, whole and by range; without, none.
func testRedirect(t *testing.T, drv storagedriver.StorageDriver) {
	blob := blobOf(6, 1<<20+5)
	d := notarize.DigestOf(blob)
	on, err := blobcache.NewShared(t.Context(), blobcache.SharedConfig{Driver: drv, InstanceDir: t.TempDir(), Redirect: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := on.Put(t.Context(), d, bytes.NewReader(blob), int64(len(blob))); err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/v2/x/blobs/"+string(d), nil)
	u, err := on.RedirectURL(r, d)
	if err != nil || u == "" {
		t.Fatalf("RedirectURL = %q, %v", u, err)
	}
	for _, rng := range []string{"", "bytes=1000-1999"} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
		want := blob
		if rng != "" {
			req.Header.Set("Range", rng)
			want = blob[1000:2000]
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("range %q: HTTP %d, %d bytes, %v", rng, resp.StatusCode, len(got), err)
		}
	}
	off, err := blobcache.NewShared(t.Context(), blobcache.SharedConfig{Driver: drv, InstanceDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if u, err := off.RedirectURL(r, d); u != "" || err != nil {
		t.Fatalf("RedirectURL without redirects = %q, %v", u, err)
	}
}
