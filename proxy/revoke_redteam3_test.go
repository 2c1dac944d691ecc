package proxy_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
	"github.com/notarize/docker-notarize/proxy"
	"github.com/notarize/docker-notarize/proxy/replica"
)

// batchLandsTrust is the proxy's replica with one injected fault of
// timing: right after the proxy's n-th read (RecordsBy) of one evaluation,
// the replica applies the ledger's pending entries, as its background
// follower may at any moment between two reads.
type batchLandsTrust struct {
	*replica.Replica
	mu    sync.Mutex
	armed int // sync after this many more reads; 0: disarmed
	err   error
}

func (b *batchLandsTrust) RecordsBy(ctx context.Context, d notarize.Digest, keyIDs []string) ([]notarize.Record, error) {
	recs, err := b.Replica.RecordsBy(ctx, d, keyIDs)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.armed > 0 {
		if b.armed--; b.armed == 0 {
			if _, serr := b.Replica.Sync(context.WithoutCancel(ctx)); serr != nil {
				b.err = serr
			}
		}
	}
	return recs, err
}

func (b *batchLandsTrust) arm(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.armed = n
}

// submitAt submits a statement about d by sv of the given kind and signed
// timestamp, without syncing the replica.
func (e *env) submitAt(sv signature.Signer, d notarize.Digest, s notarize.Status, kind, mediaType string, at time.Time) {
	e.t.Helper()
	ent, err := notarize.Sign(e.t.Context(), sv, notarize.NewStatement(d, "test", notarize.Predicate{
		Status: s, Kind: kind, MediaType: mediaType, Name: "release", Timestamp: at.UTC(),
	}))
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.lc.Submit(e.t.Context(), ent); err != nil {
		e.t.Fatal(err)
	}
}

// TestRedteam3RevocationAndThiefInOneBatch: release trusted an index, the
// proxy served it (so it knows the index lists its children), then
// release untrusted the index. The key is stolen: its revocation and the
// thief's "trusted" on the index (signed after the revocation, dated
// later than the untrust) reach the ledger together, and the replica
// applies them in one batch. Whatever read of the proxy's evaluation of a
// child the batch lands after — the child's records, the revocations, the
// parent's records — the child is refused: the thief's statement must
// never be read without the revocation before it.
func TestRedteam3RevocationAndThiefInOneBatch(t *testing.T) {
	for after := 1; after <= 3; after++ {
		t.Run(fmt.Sprintf("batch after read %d", after), func(t *testing.T) {
			e := newEnv(t)
			rt := &batchLandsTrust{Replica: e.replica}
			srv, err := proxy.New(proxy.Config{
				DataDir: filepath.Join(t.TempDir(), "data"), Upstreams: e.ups, DefaultUpstream: "local",
				Policy: e.policy, Trust: rt, ManifestTimeout: 3 * time.Second,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = srv.Close(context.Background()) })
			hs := httptest.NewServer(srv.Handler())
			t.Cleanup(hs.Close)
			host := strings.TrimPrefix(hs.URL, "http://")

			idx := e.pushIndex("multi", "v1", 2)
			im, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			index, child := digestOf(t, idx), notarize.Digest(im.Manifests[0].Digest.String())
			now := time.Now()
			e.submitAt(e.release, index, notarize.StatusTrusted, notarize.KindIndex, notarize.MediaTypeOCIIndex, now.Add(-2*time.Hour))
			e.sync()
			ref, err := name.ParseReference(host+"/local/multi:v1", name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := remote.Index(ref, remote.WithContext(t.Context())); err != nil {
				t.Fatalf("trusted index: %v", err)
			}
			e.submitAt(e.release, index, notarize.StatusUntrusted, notarize.KindIndex, notarize.MediaTypeOCIIndex, now.Add(-time.Hour))
			e.sync()
			get := func() (int, string) {
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, hs.URL+manifestPath("local/multi", string(child)), nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			if code, body := get(); code != http.StatusForbidden {
				t.Fatalf("child of an untrusted index: %d %s", code, body)
			}

			// The theft: revocation first, then the thief's un-veto, one batch.
			e.revoke(e.release, notarizetest.KeyID(t, e.release))
			e.submitAt(e.release, index, notarize.StatusTrusted, notarize.KindIndex, notarize.MediaTypeOCIIndex, now)
			rt.arm(after)
			code, body := get()
			if rt.err != nil {
				t.Fatalf("injected sync: %v", rt.err)
			}
			if code != http.StatusForbidden {
				t.Fatalf("BYPASS: the batch holding the revocation and the thief's trusted index landed after read %d of the evaluation, and the child was served (%d): the thief's statement was read without the revocation before it", after, code)
			}
			if code, body = get(); code != http.StatusForbidden || !strings.Contains(body, "revoked at log index") && !strings.Contains(body, "UNTRUSTED") && !strings.Contains(body, "UNKNOWN") {
				t.Fatalf("child after the batch: %d %s", code, body)
			}
		})
	}
}
