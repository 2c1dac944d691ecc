package blobcache_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
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
	// The store checks signatures, as a real S3 does: these tests run
	// against one that would refuse a proxy without the bucket's keys.
	t.Run("WrongCredentialsRefused", func(t *testing.T) {
		params := srv.Params(srv.Bucket(t))
		params["secretkey"] = "not-" + s3test.SecretKey
		d, err := factory.Create(t.Context(), "s3", params)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := blobcache.NewShared(t.Context(), blobcache.SharedConfig{Driver: d, InstanceDir: t.TempDir()}); err == nil {
			t.Fatal("a shared store opened with a wrong secret key")
		}
	})
	t.Run("PresignedURLIsForItsBlobOnly", func(t *testing.T) { testPresignedURLIsForItsBlobOnly(t, driver(t)) })
}

// testPresignedURLIsForItsBlobOnly: a client given a presigned URL for one
// blob cannot point it at another blob in the bucket (the signature covers
// the path), nor keep using it with the signature altered.
func testPresignedURLIsForItsBlobOnly(t *testing.T, drv storagedriver.StorageDriver) {
	shared, err := blobcache.NewShared(t.Context(), blobcache.SharedConfig{Driver: drv, InstanceDir: t.TempDir(), Redirect: true})
	if err != nil {
		t.Fatal(err)
	}
	a, b := blobOf(7, 4096), blobOf(8, 4096)
	da, db := notarize.DigestOf(a), notarize.DigestOf(b)
	for _, blob := range [][]byte{a, b} {
		if _, err := shared.Put(t.Context(), notarize.DigestOf(blob), bytes.NewReader(blob), int64(len(blob))); err != nil {
			t.Fatal(err)
		}
	}
	r := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/v2/x/blobs/"+string(da), nil)
	u, err := shared.RedirectURL(r, da)
	if err != nil || u == "" {
		t.Fatalf("RedirectURL = %q, %v", u, err)
	}
	get := func(u string) (int, []byte) {
		t.Helper()
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	if code, body := get(u); code != http.StatusOK || !bytes.Equal(body, a) {
		t.Fatalf("the presigned URL itself: HTTP %d, %d bytes", code, len(body))
	}
	hexA, hexB := string(da)[len("sha256:"):], string(db)[len("sha256:"):]
	other := strings.ReplaceAll(u, hexA, hexB)
	other = strings.Replace(other, "/"+hexA[:2]+"/", "/"+hexB[:2]+"/", 1)
	if other == u {
		t.Fatalf("the presigned URL %q does not name blob %s", u, da)
	}
	if code, body := get(other); code != http.StatusForbidden || bytes.Equal(body, b) {
		t.Fatalf("the URL re-pointed at another blob: HTTP %d (%d bytes), want 403", code, len(body))
	}
	sig := strings.Index(u, "X-Amz-Signature=")
	if sig < 0 {
		t.Fatalf("no signature in %q", u)
	}
	tampered := []byte(u)
	i := sig + len("X-Amz-Signature=") // the signature's first hex digit, changed
	if tampered[i] == '0' {
		tampered[i] = '1'
	} else {
		tampered[i] = '0'
	}
	if code, _ := get(string(tampered)); code != http.StatusForbidden {
		t.Fatalf("an altered signature: HTTP %d, want 403", code)
	}
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
