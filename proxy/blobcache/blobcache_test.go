package blobcache_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/blobcache"
)

// TestLastByteWaitsForVerification streams a blob whose body stays open
// after its last byte: readers get everything but the last byte until the
// fill has verified it. The large blobs span many memory chunks: a reader
// that starts late reads the first of them from the file (dropped from
// memory once written and hashed) and the rest from memory.
func TestLastByteWaitsForVerification(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt bool
		size    int
	}{{"good", false, 100_000}, {"corrupt", true, 100_000}, {"large", false, 40<<20 + 123}, {"large corrupt", true, 40<<20 + 123}} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := blobcache.New(blobcache.Config{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			blob := blobOf(7, tc.size)
			d := notarize.DigestOf(blob)
			sent := bytes.Clone(blob)
			if tc.corrupt {
				sent[len(sent)-1] ^= 1
			}
			pr, pw := io.Pipe()
			fill, joined := c.Fill(t.Context(), d, func(context.Context) (io.ReadCloser, int64, error) { return pr, int64(len(blob)), nil })
			defer fill.Release()
			if joined {
				t.Fatal("first fill joined another")
			}
			wrote := make(chan struct{})
			go func() { _, _ = pw.Write(sent); close(wrote) }()
			if size, err := fill.Started(t.Context()); err != nil || size != int64(len(blob)) {
				t.Fatalf("Started() = %d, %v", size, err)
			}
			<-wrote // the fill has every byte; the body is still open
			rd := fill.NewReader(t.Context())
			defer rd.Close()
			got := make([]byte, len(blob)-1)
			if _, err := io.ReadFull(rd, got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, sent[:len(sent)-1]) {
				t.Fatal("the reader got other bytes than the upstream sent")
			}
			// Nothing more until the body ends and the digest is checked.
			more := make(chan error, 1)
			go func() {
				var one [1]byte
				n, err := rd.Read(one[:])
				if n == 1 && err == nil && one[0] != blob[len(blob)-1] {
					err = errors.New("wrong last byte")
				}
				if n == 1 && err == nil {
					_, err = rd.Read(one[:])
					if err == io.EOF {
						err = nil
					}
				}
				more <- err
			}()
			select {
			case err := <-more:
				t.Fatalf("the last byte was released before verification (%v)", err)
			case <-time.After(100 * time.Millisecond):
			}
			_ = pw.Close()
			err = <-more
			if tc.corrupt {
				if !errors.Is(err, blobcache.ErrDigestMismatch) {
					t.Fatalf("reader error %v, want ErrDigestMismatch", err)
				}
				if c.Has(d) {
					t.Fatal("a corrupt blob was committed")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := fill.Wait(t.Context()); err != nil || !c.Has(d) {
				t.Fatalf("Wait() = %v, cached %v", err, c.Has(d))
			}
		})
	}
}

func TestJoinAndSizeMismatch(t *testing.T) {
	c, err := blobcache.New(blobcache.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	blob := []byte("hello")
	d := notarize.DigestOf(blob)
	release := make(chan struct{})
	calls := 0
	fetch := func(context.Context) (io.ReadCloser, int64, error) {
		calls++
		<-release
		return io.NopCloser(bytes.NewReader(blob)), 6, nil // announces one byte more
	}
	f1, j1 := c.Fill(t.Context(), d, fetch)
	f2, j2 := c.Fill(t.Context(), d, fetch)
	defer f1.Release()
	defer f2.Release()
	if j1 || !j2 || f1 != f2 {
		t.Fatalf("joined = %v, %v; same fill %v", j1, j2, f1 == f2)
	}
	close(release)
	if err := f2.Wait(t.Context()); !errors.Is(err, blobcache.ErrSizeMismatch) {
		t.Fatalf("Wait() = %v, want ErrSizeMismatch", err)
	}
	if calls != 1 || c.Has(d) {
		t.Fatalf("%d fetches, cached %v", calls, c.Has(d))
	}
}
