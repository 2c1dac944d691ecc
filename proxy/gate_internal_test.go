package proxy

import (
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/upstream"
)

// allowBlobs opens the gate of s for ds at UPSTREAM/REPO, as an allowed
// manifest listing them would, for tests about blobs alone.
func allowBlobs(t testing.TB, s *Server, upstream, repo string, ds ...notarize.Digest) {
	t.Helper()
	if err := s.gate.record(upstream, repo, grant{manifest: notarize.DigestOf([]byte(repo))}, ds); err != nil {
		t.Fatal(err)
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func digestN(i int) notarize.Digest      { return notarize.DigestOf([]byte{byte(i), byte(i >> 8)}) }
func (g *blobGate) size() int            { g.mu.Lock(); defer g.mu.Unlock(); return g.count }
func mustAllowed(t *testing.T, g *blobGate, up, repo string, d notarize.Digest) bool {
	t.Helper()
	e, err := g.entry(up, repo, d)
	if err != nil {
		t.Fatal(err)
	}
	return len(e.grants) > 0
}

// TestBlobGate: entries are per upstream and repository, survive a reopen,
// expire after maxAge (and are swept at open), and their number is bounded
// with the least recently allowed evicted first.
func TestBlobGate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gate.db")
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	g, err := openBlobGate(path, clock.now, time.Hour, 10)
	if err != nil {
		t.Fatal(err)
	}
	a, b := digestN(1), digestN(2)
	if err := g.record("up", "app", grant{manifest: digestN(100)}, []notarize.Digest{a, b}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		up, repo string
		d        notarize.Digest
		want     bool
	}{
		{"up", "app", a, true}, {"up", "app", b, true},
		{"up", "other", a, false}, {"other", "app", a, false}, {"up", "app", digestN(3), false},
		{"up", "ap", a, false}, {"up\x00app", "", a, false},
	} {
		if got := mustAllowed(t, g, tc.up, tc.repo, tc.d); got != tc.want {
			t.Errorf("allowed(%q, %q, %s) = %v, want %v", tc.up, tc.repo, tc.d, got, tc.want)
		}
	}
	// Persistent.
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if g, err = openBlobGate(path, clock.now, time.Hour, 10); err != nil {
		t.Fatal(err)
	}
	if !mustAllowed(t, g, "up", "app", a) || g.size() != 2 {
		t.Fatalf("after reopen: allowed %v, %d entries", mustAllowed(t, g, "up", "app", a), g.size())
	}
	// Expiry, then swept at open.
	clock.add(time.Hour + time.Second)
	if mustAllowed(t, g, "up", "app", a) {
		t.Fatal("an expired entry still allows")
	}
	_ = g.Close()
	if g, err = openBlobGate(path, clock.now, time.Hour, 10); err != nil {
		t.Fatal(err)
	}
	if g.size() != 0 {
		t.Fatalf("%d expired entries kept", g.size())
	}
	// Bound: 12 entries in manifests a minute apart; past 10, down to 9,
	// oldest out.
	for i := range 12 {
		if err := g.record("up", "app", grant{manifest: digestN(200 + i)}, []notarize.Digest{digestN(10 + i)}); err != nil {
			t.Fatal(err)
		}
		clock.add(time.Minute)
	}
	if n := g.size(); n > 10 {
		t.Fatalf("%d entries, bound 10", n)
	}
	if mustAllowed(t, g, "up", "app", digestN(10)) || !mustAllowed(t, g, "up", "app", digestN(21)) {
		t.Fatal("the oldest entry was kept or the newest evicted")
	}
	_ = g.Close()
	if err := g.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestBlobGrants: a blob keeps the manifests that let it through, most
// recent first, without repeats, at most maxGrantsPerBlob; an index that
// vouched for a manifest is kept with it.
func TestBlobGrants(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	g, err := openBlobGate(filepath.Join(t.TempDir(), "gate.db"), clock.now, 100*time.Hour, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	layer := digestN(1)
	var want []grant
	for i := range maxGrantsPerBlob + 2 {
		gr := grant{manifest: digestN(100 + i)}
		if i%2 == 1 {
			gr.via = digestN(200 + i)
		}
		for range 2 { // the second is a repeat
			if err := g.record("up", "app", gr, []notarize.Digest{layer}); err != nil {
				t.Fatal(err)
			}
			clock.add(2 * gateRefresh)
		}
		want = append([]grant{gr}, want...)
	}
	want = want[:maxGrantsPerBlob]
	e, err := g.entry("up", "app", layer)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(e.grants, want) {
		t.Fatalf("grants %v, want %v", e.grants, want)
	}
	// The upstream's answer is kept across later grants.
	if e.upstreamHas {
		t.Fatal("upstreamHas before any answer")
	}
	if err := g.upstreamHas("up", "app", layer); err != nil {
		t.Fatal(err)
	}
	if err := g.record("up", "app", grant{manifest: digestN(999)}, []notarize.Digest{layer}); err != nil {
		t.Fatal(err)
	}
	if e, err = g.entry("up", "app", layer); err != nil || !e.upstreamHas || e.grants[0].manifest != digestN(999) {
		t.Fatalf("%+v %v", e, err)
	}
	if err := g.upstreamHas("up", "other", layer); err != nil { // no entry: nothing to note
		t.Fatal(err)
	}
	if e, _ := g.entry("up", "other", layer); e.upstreamHas || len(e.grants) > 0 {
		t.Fatalf("an entry was made by an upstream's answer alone: %+v", e)
	}
}

func TestManifestRefs(t *testing.T) {
	cfg, l1, l2 := digestN(1), digestN(2), digestN(3)
	desc := func(mt string, d notarize.Digest) string {
		return `{"mediaType":"` + mt + `","digest":"` + string(d) + `","size":1}`
	}
	for _, tc := range []struct {
		name, doc string
		want      []notarize.Digest
	}{
		{"image: config and layers",
			`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":` + desc("application/vnd.oci.image.config.v1+json", cfg) +
				`,"layers":[` + desc("application/vnd.oci.image.layer.v1.tar+gzip", l1) + `,` + desc("application/vnd.oci.image.layer.v1.tar+gzip", l2) + `]}`,
			[]notarize.Digest{cfg, l1, l2}},
		{"index: the manifests it lists",
			`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` + desc("application/vnd.oci.image.manifest.v1+json", l1) + `]}`,
			[]notarize.Digest{l1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := notarize.ClassifyManifest([]byte(tc.doc), "")
			if err != nil {
				t.Fatal(err)
			}
			got := manifestRefs(&upstream.Manifest{Bytes: []byte(tc.doc), Parsed: p})
			if !slices.Equal(got, tc.want) {
				t.Fatalf("%v, want %v", got, tc.want)
			}
		})
	}
	if got := manifestRefs(&upstream.Manifest{}); got != nil {
		t.Fatalf("unclassified: %v", got)
	}
}

// FuzzDecodeEntry: any bytes in the gate file decode without panicking,
// and what decodes encodes back to the same bytes (flags other than
// flagUpstreamHas aside).
func FuzzDecodeEntry(f *testing.F) {
	f.Add(encodeEntry(gateEntry{at: time.Unix(1_800_000_000, 0), upstreamHas: true,
		grants: []grant{{manifest: digestN(1)}, {manifest: digestN(2), via: digestN(3)}}}))
	f.Add([]byte{})
	f.Add(make([]byte, entryHeader+grantLen-1))
	f.Fuzz(func(t *testing.T, v []byte) {
		e, ok := decodeEntry(v)
		if !ok {
			return
		}
		want := slices.Clone(v)
		want[8] &= flagUpstreamHas
		if got := encodeEntry(e); !slices.Equal(got, want) {
			t.Fatalf("%x decodes to %+v, which encodes to %x", v, e, got)
		}
	})
}
