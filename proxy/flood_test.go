package proxy_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
	"github.com/notarize/docker-notarize/proxy"
	"github.com/notarize/docker-notarize/proxy/replica"
)

// floodedTrust is the proxy's replica with one injected fault: every
// digest's whole lookup is past its bound, as when strangers flood it
// with statements by their own keys (replica's
// TestRecordsByIgnoresStrangersFlood floods a real one).
type floodedTrust struct{ *replica.Replica }

func (floodedTrust) Records(_ context.Context, d notarize.Digest) ([]notarize.Record, error) {
	return nil, fmt.Errorf("replica lookup %s: more than 100000 records", d)
}

// TestDecisionIgnoresStrangersFlood: a decision reads only the records of
// the keys its rule accepts, for the digest and for each key's revocation
// digest, so strangers flooding either cannot turn release's trusted image
// UNVERIFIABLE (a refusal), and a revocation still counts.
func TestDecisionIgnoresStrangersFlood(t *testing.T) {
	e := newEnv(t)
	srv, err := proxy.New(proxy.Config{
		DataDir: filepath.Join(t.TempDir(), "data"), Upstreams: e.ups, DefaultUpstream: "local",
		Policy: e.policy, Trust: floodedTrust{e.replica}, ManifestTimeout: 3 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close(context.Background()) })
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	pull := func(tag string) error {
		ref, err := name.ParseReference(strings.TrimPrefix(hs.URL, "http://")+"/local/app:"+tag, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		_, err = remote.Image(ref, remote.WithContext(t.Context()))
		return err
	}
	e.sign(e.release, digestOf(t, e.push("app", "v1")), notarize.StatusTrusted)
	e.sync()
	if err := pull("v1"); err != nil {
		t.Fatalf("release's trusted image, its digest flooded by strangers: %v", err)
	}
	kid := notarizetest.KeyID(t, e.release)
	e.revoke(e.release, kid)
	e.signAt(e.release, digestOf(t, e.push("app", "v2")), notarize.StatusTrusted, time.Now().Add(-time.Hour))
	e.sync()
	if err := pull("v2"); err == nil {
		t.Fatal("the thief's image after the revocation was served")
	}
	if err := pull("v1"); err != nil {
		t.Fatalf("release's image from before the revocation: %v", err)
	}
}
