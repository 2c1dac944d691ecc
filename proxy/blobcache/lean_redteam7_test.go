package blobcache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/blobcache"
)

// readOnly hides a reader's WriteTo, so io.Copy uses Read.
type readOnly struct{ io.Reader }

// TestRedteam7LeanFillRefusesLies attacks the fill memory budget (f243fc9,
// 82e136f): with the budget spent from the start, or spent by the fill
// itself part-way (it turns from its memory window to small chunks), an
// upstream that lies about a blob (a wrong last or first byte, one byte
// short or long, a size it does not announce) must never get the whole
// blob's length of bytes to a reader without an error, nor get the bytes
// cached; the next fill fetches again. Readers read with Read and with
// WriteTo, late (from the file) and at once.
func TestRedteam7LeanFillRefusesLies(t *testing.T) {
	const size = 9<<20 + 77
	blob := blobOf(7, size)
	d := notarize.DigestOf(blob)
	lies := map[string]func() ([]byte, int64){
		"honest":                func() ([]byte, int64) { return blob, size },
		"honest unannounced":    func() ([]byte, int64) { return blob, -1 },
		"last byte":             func() ([]byte, int64) { b := bytes.Clone(blob); b[size-1] ^= 1; return b, size },
		"first byte":            func() ([]byte, int64) { b := bytes.Clone(blob); b[0] ^= 1; return b, size },
		"middle unannounced":    func() ([]byte, int64) { b := bytes.Clone(blob); b[size/2] ^= 1; return b, -1 },
		"one short":             func() ([]byte, int64) { return blob[:size-1], size },
		"one short unannounced": func() ([]byte, int64) { return blob[:size-1], -1 },
		"one long":              func() ([]byte, int64) { return append(bytes.Clone(blob), 'x'), size },
		"one long unannounced":  func() ([]byte, int64) { return append(bytes.Clone(blob), 'x'), -1 },
		"announced short":       func() ([]byte, int64) { return blob, size - 1 },
	}
	for _, budget := range []int64{1, 3 << 19} { // spent at once; spent by the fill itself part-way
		for name, lie := range lies {
			for _, late := range []bool{false, true} {
				for _, useWriteTo := range []bool{false, true} {
					t.Run(fmt.Sprintf("budget=%d/%s/late=%v/writeto=%v", budget, name, late, useWriteTo), func(t *testing.T) {
						sent, announced := lie()
						honest := bytes.Equal(sent, blob) && (announced == size || announced < 0)
						c, err := blobcache.New(blobcache.Config{Dir: t.TempDir(), FillMemoryBytes: budget})
						if err != nil {
							t.Fatal(err)
						}
						t.Cleanup(func() { _ = c.Close(context.Background()) })
						pr, pw := io.Pipe()
						fill, _ := c.Fill(t.Context(), d, func(context.Context) (io.ReadCloser, int64, error) { return pr, announced, nil })
						defer fill.Release()
						wrote := make(chan struct{})
						go func() {
							defer close(wrote)
							for off := 0; off < len(sent); off += 64 << 10 {
								if _, err := pw.Write(sent[off:min(off+64<<10, len(sent))]); err != nil {
									return
								}
							}
							_ = pw.Close()
						}()
						if _, err := fill.Started(t.Context()); err != nil {
							t.Fatal(err)
						}
						if late {
							<-wrote
						}
						rd := fill.NewReader(t.Context())
						defer rd.Close()
						var dst bytes.Buffer
						var src io.Reader = rd
						if !useWriteTo {
							src = readOnly{rd}
						}
						ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
						defer cancel()
						_, rerr := io.Copy(&dst, src)
						<-wrote
						werr := fill.Wait(ctx)
						got := dst.Bytes()
						if honest {
							if rerr != nil || werr != nil || !bytes.Equal(got, blob) || !c.Has(d) {
								t.Fatalf("honest upstream: read %v (%d bytes, equal %v), fill %v, cached %v", rerr, len(got), bytes.Equal(got, blob), werr, c.Has(d))
							}
							return
						}
						if rerr == nil && len(got) >= size {
							if bytes.Equal(got[:size], blob) && werr == nil {
								// The upstream sent the blob's bytes (with a trailing extra):
								// what was served and cached is the blob itself.
								return
							}
							t.Fatalf("BYPASS: a lying upstream (%s) got %d bytes to the client with no error (the blob is %d bytes; equal %v)", name, len(got), size, bytes.Equal(got, blob))
						}
						if rerr == nil {
							t.Fatalf("BYPASS: a lying upstream (%s): the reader ended without an error after %d of %d bytes", name, len(got), size)
						}
						if werr == nil && c.Has(d) && !bytes.Equal(got, blob) {
							t.Fatalf("BYPASS: a lying upstream (%s): the fill succeeded and cached the blob while its reader failed: %v", name, rerr)
						}
						if c.Has(d) {
							rc, err := c.Open(d)
							if err == nil {
								b, _ := io.ReadAll(rc)
								rc.Close()
								if !bytes.Equal(b, blob) {
									t.Fatalf("BYPASS: a lying upstream (%s): the cache holds %d bytes that are not the blob", name, len(b))
								}
							}
						}
						if !errors.Is(rerr, blobcache.ErrDigestMismatch) && !errors.Is(rerr, blobcache.ErrSizeMismatch) && !errors.Is(rerr, io.ErrUnexpectedEOF) {
							t.Logf("%s: reader error %v (not a digest or size mismatch)", name, rerr)
						}
					})
				}
			}
		}
	}
}
