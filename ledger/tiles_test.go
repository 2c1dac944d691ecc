package ledger

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/storage"

	"github.com/notarize/docker-notarize/ledger/api"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/transparency-dev/tessera"
	tapi "github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
)

// httpFetch fetches a tlog-tiles resource like a replicating client does,
// mapping 404 to os.ErrNotExist.
func httpFetch(ctx context.Context, url string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		return nil, nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return b.Bytes(), resp.Header, nil
	case http.StatusNotFound:
		return nil, resp.Header, fmt.Errorf("%s: %w", url, os.ErrNotExist)
	default:
		return nil, resp.Header, fmt.Errorf("%s: status %d: %s", url, resp.StatusCode, b.Bytes())
	}
}

// TestTiles checks that the tlog-tiles endpoints serve what a client needs
// to rebuild every proof the API hands out, with the right headers.
func TestTiles(t *testing.T) {
	const n = 300 // more than one full entry bundle and level-0 tile
	tl := startLedger(t, Config{})
	s := newTestSigner(t)
	entries := make([][]byte, n)
	for i := range entries {
		entries[i] = mustMarshal(t, s.sign(t, randomDigest(t), notarize.StatusTrusted, time.Now()))
	}
	receipts := make([]api.Receipt, n)
	var wg sync.WaitGroup
	for w := range 50 {
		wg.Go(func() {
			for i := w; i < n; i += 50 {
				status, rec, err := post(t.Context(), http.DefaultClient, tl.url, entries[i])
				if err != nil || status != http.StatusCreated {
					t.Errorf("submit %d: %d %v", i, status, err)
					return
				}
				receipts[i] = rec
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// Wait until a checkpoint covers everything.
	var cpRaw []byte
	for {
		raw, h, err := httpFetch(t.Context(), tl.url+"/checkpoint")
		if err != nil {
			t.Fatal(err)
		}
		if got := h.Get("Content-Type"); !strings.HasPrefix(got, "text/plain") {
			t.Errorf("checkpoint Content-Type %q", got)
		}
		if got := h.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("checkpoint Cache-Control %q", got)
		}
		if openCheckpoint(t, tl.VerifierKey(), tl.Origin(), raw).Size == n {
			cpRaw = raw
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cp := openCheckpoint(t, tl.VerifierKey(), tl.Origin(), cpRaw)

	tileFetcher := func(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
		b, h, err := httpFetch(ctx, tl.url+"/"+layout.TilePath(level, index, p))
		if err != nil {
			return nil, err
		}
		checkStaticHeaders(t, h, p)
		return b, nil
	}
	pb, err := client.NewProofBuilder(t.Context(), cp.Size, tileFetcher)
	if err != nil {
		t.Fatal(err)
	}
	bundles := map[uint64]tapi.EntryBundle{}
	for i := range uint64(n) {
		bi := i / layout.EntryBundleWidth
		bundle, ok := bundles[bi]
		if !ok {
			var err error
			bundle, err = client.GetEntryBundle(t.Context(), func(ctx context.Context, bi uint64, p uint8) ([]byte, error) {
				b, h, err := httpFetch(ctx, tl.url+"/"+layout.EntriesPath(bi, p))
				if err == nil {
					checkStaticHeaders(t, h, p)
				}
				return b, err
			}, bi, cp.Size)
			if err != nil {
				t.Fatal(err)
			}
			bundles[bi] = bundle
		}
		got := bundle.Entries[i%layout.EntryBundleWidth]
		rec := receipts[indexOf(t, receipts, i)]
		if !bytes.Equal(got, rec.Entry) {
			t.Fatalf("entry %d over HTTP differs from its receipt", i)
		}
		p, err := pb.InclusionProof(t.Context(), i)
		if err != nil {
			t.Fatalf("proof of %d from served tiles: %v", i, err)
		}
		checkInclusion(t, cp, i, got, p)
	}
	// The lookup API proves to the same checkpoint with the same proof.
	rec := receipts[0]
	resp := tl.lookup(t, mustDigestBytes(t, rec.Entry))
	if resp.Checkpoint != string(cpRaw) || len(resp.Entries) != 1 {
		t.Fatalf("lookup: %d entries at another checkpoint", len(resp.Entries))
	}
	want, err := pb.InclusionProof(t.Context(), rec.Index)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(want) != fmt.Sprint(resp.Entries[0].InclusionProof) {
		t.Fatal("lookup proof differs from the one built from served tiles")
	}

	t.Run("partial of a full tile", func(t *testing.T) {
		full, _, err := httpFetch(t.Context(), tl.url+"/tile/0/000")
		if err != nil || len(full) != 32*layout.TileWidth {
			t.Fatalf("full tile: %d bytes, %v", len(full), err)
		}
		part, h, err := httpFetch(t.Context(), tl.url+"/tile/0/000.p/7")
		if err != nil || !bytes.Equal(part, full[:7*32]) {
			t.Fatalf("partial tile of width 7 is not the first 7 hashes: %v", err)
		}
		checkStaticHeaders(t, h, 7)
		fullBundle, _, err := httpFetch(t.Context(), tl.url+"/tile/entries/000")
		if err != nil {
			t.Fatal(err)
		}
		partBundle, _, err := httpFetch(t.Context(), tl.url+"/tile/entries/000.p/3")
		if err != nil {
			t.Fatal(err)
		}
		var eb tapi.EntryBundle
		if err := eb.UnmarshalText(partBundle); err != nil || len(eb.Entries) != 3 || !bytes.HasPrefix(fullBundle, partBundle) {
			t.Fatalf("partial bundle of width 3: %d entries, %v", len(eb.Entries), err)
		}
	})
}

func checkStaticHeaders(t testing.TB, h http.Header, p uint8) {
	t.Helper()
	if got := h.Get("Content-Type"); got != "application/octet-stream" {
		t.Errorf("tile Content-Type %q", got)
	}
	want := cacheImmutable
	if p > 0 {
		want = cachePartial
	}
	if got := h.Get("Cache-Control"); got != want {
		t.Errorf("Cache-Control %q, want %q (partial %d)", got, want, p)
	}
}

func indexOf(t testing.TB, receipts []api.Receipt, idx uint64) int {
	t.Helper()
	for i, r := range receipts {
		if r.Index == idx {
			return i
		}
	}
	t.Fatalf("no receipt for index %d", idx)
	return -1
}

func mustDigestBytes(t testing.TB, entry []byte) notarize.Digest {
	t.Helper()
	e, err := notarize.ParseEntry(entry)
	if err != nil {
		t.Fatal(err)
	}
	return mustDigest(t, e)
}

// TestFirstEntries: the prefix of an entry bundle holding its first n
// entries is the partial bundle of width n; a truncated bundle has none.
func TestFirstEntries(t *testing.T) {
	var bundle []byte
	for i, e := range []string{"a", "", "ccc"} {
		bundle = append(bundle, tessera.NewEntry([]byte(e)).MarshalBundleData(uint64(i))...)
	}
	for _, tc := range []struct {
		name   string
		bundle []byte
		n      int
		want   []byte
		ok     bool
	}{
		{"none", bundle, 0, bundle[:0], true},
		{"first", bundle, 1, bundle[:3], true},
		{"two", bundle, 2, bundle[:2+1+2], true},
		{"all", bundle, 3, bundle, true},
		{"past the end", bundle, 4, nil, false},
		{"truncated data", bundle[:len(bundle)-1], 3, nil, false},
		{"truncated length", bundle[:1], 1, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := storage.FirstEntries(tc.bundle, tc.n)
			if ok != tc.ok || !bytes.Equal(got, tc.want) {
				t.Fatalf("storage.FirstEntries(%d) = %q, %v; want %q, %v", tc.n, got, ok, tc.want, tc.ok)
			}
		})
	}
}
