package proxy_test

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/upstream"
)

// TestRedteam15FillJoinAcrossUpstreams: blob fills were shared by digest
// only, whatever upstream started them. A request for a trusted layer at
// local/priv/app (whose own upstream has the blob) joined a fill that a
// client started at evil/priv/app, where a lying mirror serves the genuine
// trusted manifest (so the gate opens for its blobs, under enforce) and
// then drips the blob: the honest request got nothing for as long as the
// mirror dripped (up to BlobFillTimeout, 30 min by default), then an
// aborted stream. A fill is now shared only within one upstream and
// repository (blobcache.FillFrom): the honest request is served from its
// own upstream while the lying fill runs, and the lying fill's other bytes
// are never served.
func TestRedteam15FillJoinAcrossUpstreams(t *testing.T) {
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	img := e.push("priv/app", "v1")
	md := digestOf(t, img)
	e.sign(e.release, md, notarize.StatusTrusted)
	e.sync()
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, err := img.MediaType()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	layer := layers[0]
	ld := digestOf(t, layer)
	size, err := layer.Size()
	if err != nil {
		t.Fatal(err)
	}

	// The lying mirror: the genuine signed manifest, then a blob that
	// drips until released, and ends with other bytes.
	release := make(chan struct{})
	releaseAll := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseAll) // before the servers' Close, which waits for a held handler
	var blobGets atomic.Int32
	ev.serve(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.Contains(r.URL.Path, "/manifests/"):
			w.Header().Set("Content-Type", string(mt))
			w.Header().Set("Content-Length", strconv.Itoa(len(raw)))
			if r.Method != http.MethodHead {
				_, _ = w.Write(raw)
			}
		case strings.Contains(r.URL.Path, "/blobs/"):
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			if r.Method == http.MethodHead {
				return
			}
			blobGets.Add(1)
			_, _ = w.Write([]byte("x"))
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			_, _ = w.Write([]byte(strings.Repeat("y", int(size)-1))) // not the blob
		default:
			http.NotFound(w, r)
		}
	})

	// Both repositories' manifests are allowed (the same trusted digest).
	for _, repo := range []string{"evil/priv/app", "local/priv/app"} {
		if code, _, body := e.do(http.MethodGet, manifestPath(repo, "v1"), nil); code != http.StatusOK {
			t.Fatalf("%s: %d %s", repo, code, body)
		}
	}

	// The attacker starts the fill at the lying mirror.
	go func() {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.proxy.URL+"/v2/evil/priv/app/blobs/"+string(ld), nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	for deadline := time.Now().Add(5 * time.Second); blobGets.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the evil upstream was never asked for the blob")
		}
	}

	// Control: a direct fetch from the honest upstream is instant.
	start := time.Now()
	resp, err := http.Get(e.upstream.URL + "/v2/priv/app/blobs/" + string(ld))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	t.Logf("control: local upstream serves the layer directly in %v (%d bytes, digest ok: %v)", time.Since(start), len(b), notarize.DigestOf(b) == ld)

	// The honest client, through the proxy, for local/priv/app, while the
	// lying fill still drips.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	start = time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.proxy.URL+"/v2/local/priv/app/blobs/"+string(ld), nil)
	resp, err = http.DefaultClient.Do(req)
	var got []byte
	if err == nil {
		got, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err != nil || notarize.DigestOf(got) != ld {
		t.Fatalf("DoS: an honest GET of a trusted layer at local/priv/app, whose upstream has it, got %d of %d bytes after %v (%v) while a lying upstream's fill of the same digest ran",
			len(got), size, time.Since(start).Round(time.Millisecond), err)
	}
	releaseAll() // the lying fill ends with other bytes, which are never committed
	if code, _, body := e.do(http.MethodGet, "/v2/local/priv/app/blobs/"+string(ld), nil); code != http.StatusOK || notarize.DigestOf(body) != ld {
		t.Fatalf("after the lying fill: %d", code)
	}
}

const fillJoinPolicy = `
signers:
  release: {keys: [release.pub]}
  ops: {keys: [ops.pub]}
rules:
  - match: "pub/**"
    require: [release]
    mode: audit
  - match: "**"
    require: [release]
`

// TestRedteam15FillJoinHonest404: no lying party. "pub" is an honest
// registry (go-containerregistry's) that, like many, does not check a
// pushed manifest's references. An anonymous client pushes there a
// manifest naming a trusted layer of local/priv/app that pub does not
// have (under an audit rule its own manifest; under enforce a copy of the
// trusted manifest's bytes), and keeps asking the proxy for that blob at
// pub: each request starts or joins a fill from pub, which fails with 404.
// Honest requests for the layer at local/priv/app joined those fills and
// failed (35–74 failed attempts before the first success over 10 layers),
// with an error naming pub and the attacker's repository. Now every honest
// first attempt gets its layer.
func TestRedteam15FillJoinHonest404(t *testing.T) {
	t.Run("audit rule, attacker's own manifest", func(t *testing.T) { fillJoin404(t, fillJoinPolicy, false) })
	t.Run("enforce, copy of the trusted manifest", func(t *testing.T) { fillJoin404(t, testPolicy, true) })
}

func fillJoin404(t *testing.T, policy string, copyTrusted bool) {
	pubSrv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(pubSrv.Close)
	e := newEnv(t, withUpstream(upstream.Config{Name: "pub", URL: pubSrv.URL, Keychain: anonymous()}),
		func(c *envConfig) { c.policy = policy })
	for round := range 3 {
		fillJoinRound(t, e, pubSrv, round, copyTrusted)
	}
}

func fillJoinRound(t *testing.T, e *env, pubSrv *httptest.Server, round int, copyTrusted bool) {
	tag := "v" + string(rune('a'+round))
	img := e.push("priv/app", tag)
	e.sign(e.release, digestOf(t, img), notarize.StatusTrusted)
	e.sync()
	layer := blobsOf(t, img)[1]

	// The attacker's manifest at pub (pushed to pub directly: anyone may).
	m, mt := manifestWithLayers(t, layer), "application/vnd.oci.image.manifest.v1+json"
	if copyTrusted {
		raw, _ := img.RawManifest()
		mtv, _ := img.MediaType()
		m, mt = raw, string(mtv)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPut, pubSrv.URL+"/v2/mallory/x/manifests/"+tag, strings.NewReader(string(m)))
	req.Header.Set("Content-Type", mt)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("push to pub: %s", resp.Status)
	}
	for _, repo := range []string{"pub/mallory/x", "local/priv/app"} {
		if code, _, b := e.do(http.MethodGet, manifestPath(repo, tag), nil); code != http.StatusOK {
			t.Fatalf("%s manifest: %d %s", repo, code, b)
		}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var attacks atomic.Int64
	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer cl.CloseIdleConnections()
	for range 16 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if resp, err := cl.Get(e.proxy.URL + "/v2/pub/mallory/x/blobs/" + string(layer)); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				attacks.Add(1)
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	time.Sleep(200 * time.Millisecond)
	code, _, b := e.do(http.MethodGet, "/v2/local/priv/app/blobs/"+string(layer), nil)
	if code != http.StatusOK || notarize.DigestOf(b) != layer {
		t.Fatalf("round %d: DoS: the honest request for a trusted layer at local/priv/app, whose upstream has it, failed while %d anonymous requests for it at pub ran: HTTP %d %.200s",
			round, attacks.Load(), code, b)
	}
}
