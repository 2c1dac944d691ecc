package proxy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/blobcache"
	"github.com/notarize/docker-notarize/proxy/blobcache/s3test"
	"github.com/notarize/docker-notarize/proxy/upstream"
)

// A fleet: two proxies, each with its own ledger replica and local cache,
// sharing one blob store (an S3 bucket on a real S3 server, versitygw) through
// distribution's s3 driver (issue 15).

type fleet struct {
	a, b       *env
	up         *recorder // the upstream "fleet" both proxies reach
	upURL      string
	bucket     storagedriver.StorageDriver
	srv        *s3test.Server
	bucketName string
}

func fleetStorage(srv *s3test.Server, bucket string, redirect bool) configuration.Storage {
	st := configuration.Storage{"s3": configuration.Parameters(srv.Params(bucket))}
	if redirect {
		st["redirect"] = configuration.Parameters{"disable": false}
	}
	return st
}

// newFleet starts the S3 server, the upstream and the two proxies (the
// second redirects when redirectB), each on its own replica of one ledger.
func newFleet(t *testing.T, redirectB bool, extra ...envOption) *fleet {
	t.Helper()
	srv := s3test.Shared(t)
	bucket := srv.Bucket(t)
	f := &fleet{up: &recorder{h: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}, srv: srv, bucketName: bucket}
	hs := httptest.NewServer(f.up)
	t.Cleanup(hs.Close)
	f.upURL = hs.URL
	ups := withUpstream(upstream.Config{Name: "fleet", URL: hs.URL, Keychain: anonymous()})
	f.a = newEnv(t, append([]envOption{ups, withStorage(fleetStorage(srv, bucket, false))}, extra...)...)
	f.b = newEnv(t, append([]envOption{ups, withStorage(fleetStorage(srv, bucket, redirectB)), withPeer(f.a), withLedger(f.a.ledger)}, extra...)...)
	var err error
	if f.bucket, err = factory.Create(t.Context(), "s3", srv.Params(bucket)); err != nil {
		t.Fatal(err)
	}
	return f
}

// pushSigned pushes a random image of layers×size bytes to the fleet's
// upstream as repo:v1, signs it and syncs both replicas; it returns the
// image's blobs.
func (f *fleet) pushSigned(t *testing.T, repo string, size int64, layers int) []notarize.Digest {
	t.Helper()
	img, err := random.Image(size, int64(layers))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(strings.TrimPrefix(f.upURL, "http://")+"/"+repo+":v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	f.a.sign(f.a.release, digestOf(t, img), notarize.StatusTrusted)
	f.a.sync()
	f.b.sync()
	return blobsOf(t, img)
}

// waitShared waits until the shared store holds every blob (the puts run
// after the fills, detached from the requests).
func (f *fleet) waitShared(t *testing.T, blobs []notarize.Digest) {
	t.Helper()
	for _, d := range blobs {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if _, err := f.bucket.Stat(t.Context(), blobcache.BlobPath(d)); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("blob %s never reached the shared store", d)
			}
		}
	}
}

// blobGETs counts the upstream's blob GETs (not HEADs): the egress.
func (f *fleet) blobGETs() int {
	n := 0
	for _, r := range f.up.all() {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			n++
		}
	}
	return n
}

// TestFleetSecondInstanceNoUpstreamGet: a blob the first proxy pulled is
// served by the second from the shared store, re-hashed: the upstream gets
// no GET for it (only a HEAD per repository, the gate's confirmation that
// the repository's own upstream has the blob).
func TestFleetSecondInstanceNoUpstreamGet(t *testing.T) {
	f := newFleet(t, false)
	blobs := f.pushSigned(t, "team/app", 1<<20, 3)
	if err := f.a.pull("fleet/team/app:v1"); err != nil {
		t.Fatal(err)
	}
	gets := f.blobGETs()
	if gets != len(blobs) {
		t.Fatalf("first pull: %d upstream blob GETs, want %d", gets, len(blobs))
	}
	f.waitShared(t, blobs)
	if err := f.b.pull("fleet/team/app:v1"); err != nil {
		t.Fatal(err)
	}
	if n := f.blobGETs(); n != gets {
		t.Fatalf("the second proxy's first pull made %d upstream blob GETs, want none", n-gets)
	}
	f.b.waitCachedBlobs(len(blobs))
	if _, _, m := f.b.do(http.MethodGet, "/metrics", nil); !bytes.Contains(m, []byte(`notarize_proxy_blob_bytes_total{source="shared"}`)) {
		t.Fatalf("no bytes counted from the shared store:\n%s", grepLines(m, "blob_bytes"))
	}
	// Each instance's shared-store counters: A put the blobs, B read them.
	if _, _, m := f.b.do(http.MethodGet, "/metrics", nil); !bytes.Contains(m, []byte(fmt.Sprintf("notarize_proxy_blob_shared_hits_total %d\n", len(blobs)))) {
		t.Fatalf("B's shared hits:\n%s", grepLines(m, "blob_shared"))
	}
	if _, _, m := f.a.do(http.MethodGet, "/metrics", nil); !bytes.Contains(m, []byte(fmt.Sprintf("notarize_proxy_blob_shared_puts_total %d\n", len(blobs)))) {
		t.Fatalf("A's shared puts:\n%s", grepLines(m, "blob_shared"))
	}
}

// TestFleetConcurrentPulls: both proxies pull the same new image at once:
// both clients get every blob (go-containerregistry checks the digests),
// the bucket ends with one copy of each blob and no temporary upload.
func TestFleetConcurrentPulls(t *testing.T) {
	f := newFleet(t, false)
	blobs := f.pushSigned(t, "team/both", 4<<20, 2)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, e := range []*env{f.a, f.b} {
		wg.Go(func() { errs[i] = e.pull("fleet/team/both:v1") })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	f.waitShared(t, blobs)
	for _, e := range []*env{f.a, f.b} {
		if err := e.srv.Close(t.Context()); err != nil { // every put has ended
			t.Fatal(err)
		}
	}
	var files []string
	err := f.bucket.Walk(t.Context(), "/notarize", func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() {
			files = append(files, fi.Path())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(blobs) {
		t.Fatalf("the bucket holds %v, want one copy of each of %d blobs", files, len(blobs))
	}
	for _, d := range blobs {
		got, err := f.bucket.GetContent(t.Context(), blobcache.BlobPath(d))
		if err != nil || notarize.DigestOf(got) != d {
			t.Fatalf("shared copy of %s: %v", d, err)
		}
	}
}

// TestFleetRedirect: the second proxy, with redirect on, answers a blob the
// shared store holds with a 307 to a presigned URL; following it gives the
// blob, and a range of it. The upstream gets no GET.
func TestFleetRedirect(t *testing.T) {
	f := newFleet(t, true)
	blobs := f.pushSigned(t, "team/redir", 1<<20, 1)
	if err := f.a.pull("fleet/team/redir:v1"); err != nil {
		t.Fatal(err)
	}
	f.waitShared(t, blobs)
	gets := f.blobGETs()
	if _, _, body := f.b.do(http.MethodGet, manifestPath("fleet/team/redir", "v1"), nil); len(body) == 0 { // the gate learns the blobs
		t.Fatal("no manifest")
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, d := range blobs {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, f.b.proxy.URL+"/v2/fleet/team/redir/blobs/"+string(d), nil)
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusTemporaryRedirect || loc == "" {
			t.Fatalf("blob %s: HTTP %d, Location %q; want a redirect", d, resp.StatusCode, loc)
		}
		whole := fetch(t, loc, "")
		if notarize.DigestOf(whole) != d {
			t.Fatalf("the redirect serves other bytes than %s", d)
		}
		if part := fetch(t, loc, "bytes=10-19"); !bytes.Equal(part, whole[10:20]) {
			t.Fatal("a range through the redirect")
		}
		// Through the proxy, following the redirect, as a client does.
		if code, _, b := f.b.do(http.MethodGet, "/v2/fleet/team/redir/blobs/"+string(d), http.Header{"Range": {"bytes=5-9"}}); code != http.StatusPartialContent || !bytes.Equal(b, whole[5:10]) {
			t.Fatalf("a range through the proxy: HTTP %d", code)
		}
	}
	if n := f.blobGETs(); n != gets {
		t.Fatalf("%d upstream blob GETs for redirected blobs", n-gets)
	}
}

// TestFleetSharedBlobNeedsItsOwnUpstream: the stolen-cache case across the
// fleet. Blobs one proxy fetched for a repository are in the shared store;
// a signed manifest at another upstream's repository names them, and that
// upstream has none of them. The second proxy must not serve them from the
// shared store there, streamed or redirected: the repository's own
// upstream must answer for them first.
func TestFleetSharedBlobNeedsItsOwnUpstream(t *testing.T) {
	for _, redirect := range []bool{false, true} {
		t.Run(map[bool]string{false: "stream", true: "redirect"}[redirect], func(t *testing.T) {
			ev := newEvil(t)
			f := newFleet(t, redirect, withUpstream(ev.config()))
			blobs := f.pushSigned(t, "priv/app", 1<<20, 2)
			if err := f.a.pull("fleet/priv/app:v1"); err != nil {
				t.Fatal(err)
			}
			f.waitShared(t, blobs)
			m := manifestWithLayers(t, blobs...)
			ev.serve(func(w http.ResponseWriter, r *http.Request) {
				if strings.Contains(r.URL.Path, "/manifests/") {
					serveManifest(w, m)
					return
				}
				w.WriteHeader(http.StatusNotFound)
				_, _ = io.WriteString(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"no such blob here"}]}`)
			})
			f.a.sign(f.a.release, notarize.DigestOf(m), notarize.StatusTrusted)
			f.b.sync()
			if code, _, body := f.b.do(http.MethodGet, manifestPath("evil/thief", "v1"), nil); code != http.StatusOK {
				t.Fatalf("the naming manifest: %d %s", code, body)
			}
			for _, d := range blobs {
				f.b.wantBlobUnknown(http.MethodGet, "evil/thief", d)
			}
			if n := ev.rec.count("/blobs/"); n == 0 {
				t.Fatal("the repository's upstream was not asked")
			}
			// The repository the blobs were fetched for gets them from the
			// shared store on the second proxy.
			gets := f.blobGETs()
			if err := f.b.pull("fleet/priv/app:v1"); err != nil {
				t.Fatal(err)
			}
			if n := f.blobGETs(); n != gets {
				t.Fatalf("%d upstream blob GETs", n-gets)
			}
		})
	}
}

func fetch(t *testing.T, url, rng string) []byte {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode/100 != 2 {
		t.Fatalf("GET %s: HTTP %d, %v", url, resp.StatusCode, err)
	}
	return b
}

func grepLines(b []byte, s string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestFleetHeadFromShared: a HEAD for a blob this proxy does not have
// locally, in a repository whose upstream already answered for it, is
// answered from the shared store (size and digest) without asking the
// upstream again. The first HEAD there still asks the upstream: the gate's
// confirmation that the repository's own upstream has the blob.
func TestFleetHeadFromShared(t *testing.T) {
	f := newFleet(t, false)
	blobs := f.pushSigned(t, "team/head", 300<<10, 1)
	if err := f.a.pull("fleet/team/head:v1"); err != nil {
		t.Fatal(err)
	}
	f.waitShared(t, blobs)
	if _, _, body := f.b.do(http.MethodGet, manifestPath("fleet/team/head", "v1"), nil); len(body) == 0 { // the gate learns the blobs
		t.Fatal("no manifest")
	}
	heads := func() int {
		n := 0
		for _, r := range f.up.all() {
			if r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/blobs/") {
				n++
			}
		}
		return n
	}
	for _, d := range blobs {
		size, err := f.bucket.Stat(t.Context(), blobcache.BlobPath(d))
		if err != nil {
			t.Fatal(err)
		}
		path := "/v2/fleet/team/head/blobs/" + string(d)
		before := heads()
		if code, _, _ := f.b.do(http.MethodHead, path, nil); code != http.StatusOK {
			t.Fatalf("first HEAD: HTTP %d", code)
		}
		if n := heads() - before; n != 1 {
			t.Fatalf("the first HEAD made %d upstream HEADs, want 1 (the gate's confirmation)", n)
		}
		code, h, _ := f.b.do(http.MethodHead, path, nil)
		if code != http.StatusOK || h.Get("Content-Length") != strconv.FormatInt(size.Size(), 10) || h.Get("Docker-Content-Digest") != string(d) {
			t.Fatalf("second HEAD: HTTP %d, Content-Length %q, digest %q", code, h.Get("Content-Length"), h.Get("Docker-Content-Digest"))
		}
		if n := heads() - before; n != 1 {
			t.Fatalf("a HEAD for a blob the shared store has went to the upstream again (%d upstream HEADs)", n)
		}
	}
	if f.blobGETs() != len(blobs) {
		t.Fatalf("%d upstream blob GETs, want %d (A's pull only)", f.blobGETs(), len(blobs))
	}
}

// TestFleetRedirectClientChecksDigest: a redirecting proxy does not read
// the bucket's copy before redirecting (that would cost the transfer the
// redirect spares); the client checks the bytes against the digest it
// asked for. A copy corrupted in the bucket behind the proxies' back is
// refused by a real client (go-containerregistry, as docker and containerd
// do), never taken for the blob. A streaming proxy of the fleet hashes it,
// aborts that stream, removes the bad copy and puts a good one back from
// the upstream; after that, the redirect serves a good copy again.
func TestFleetRedirectClientChecksDigest(t *testing.T) {
	f := newFleet(t, true)
	blobs := f.pushSigned(t, "team/rot", 256<<10, 1)
	if err := f.a.pull("fleet/team/rot:v1"); err != nil {
		t.Fatal(err)
	}
	f.waitShared(t, blobs)
	layer := blobs[len(blobs)-1] // blobsOf lists the config first
	good, err := f.bucket.GetContent(t.Context(), blobcache.BlobPath(layer))
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 0xff // same size: only the digest can tell
	if err := f.bucket.PutContent(t.Context(), blobcache.BlobPath(layer), bad); err != nil {
		t.Fatal(err)
	}
	err = f.b.pull("fleet/team/rot:v1")
	if err == nil || !strings.Contains(err.Error(), "checksum") || !strings.Contains(err.Error(), string(layer)) {
		t.Fatalf("a client following the redirect to a corrupt copy got %v, want a checksum mismatch for %s", err, layer)
	}
	if _, _, m := f.b.do(http.MethodGet, "/metrics", nil); !bytes.Contains(m, []byte(`notarize_proxy_cache_requests_total{cache="blob",result="redirect"}`)) {
		t.Fatal("the blob was not redirected: the test checks nothing")
	}
	// A streaming instance of the fleet hashes the copy and removes it.
	gets := f.blobGETs()
	c := newEnv(t, withUpstream(upstream.Config{Name: "fleet", URL: f.upURL, Keychain: anonymous()}),
		withStorage(fleetStorage(f.srv, f.bucketName, false)), withPeer(f.a), withLedger(f.a.ledger))
	c.sync()
	// Its first stream of the layer is aborted short: before any byte was
	// sent, go-containerregistry's transport retries, and the retry is
	// fetched from the upstream; once bytes were sent (a loaded machine
	// hands the stream some before the copy is hashed whole), the pull
	// fails with a cut stream, which docker and containerd retry, and so
	// does this test. Either way the pull ends whole, checked by the client.
	err = c.pull("fleet/team/rot:v1")
	if errors.Is(err, io.ErrUnexpectedEOF) {
		t.Logf("the stream was cut after some bytes (%v); pulling again, as docker would", err)
		err = c.pull("fleet/team/rot:v1")
	}
	if err != nil {
		t.Fatalf("a streaming proxy's pull of a blob with a corrupt shared copy: %v", err)
	}
	if f.blobGETs() == gets {
		t.Fatal("the streaming proxy did not go to the upstream: it took the corrupt copy")
	}
	if err := c.srv.Close(t.Context()); err != nil { // its put of the good copy has ended
		t.Fatal(err)
	}
	if got, err := f.bucket.GetContent(t.Context(), blobcache.BlobPath(layer)); err != nil || !bytes.Equal(got, good) {
		t.Fatalf("the bucket's copy after a streaming pull: %d bytes, %v; want the good copy back", len(got), err)
	}
	if err := f.b.pull("fleet/team/rot:v1"); err != nil {
		t.Fatalf("the redirect after the copy was put back: %v", err)
	}
}
