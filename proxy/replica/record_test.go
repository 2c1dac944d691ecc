package replica

import (
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

func TestRecordEncoding(t *testing.T) {
	for _, sr := range []storedRecord{
		{KeyID: strings.Repeat("ab", 32), Status: notarize.StatusTrusted, Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Name: "release", Kind: "image"},
		{KeyID: strings.Repeat("01", 32), Status: notarize.StatusUnsupported, Timestamp: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
	} {
		b, err := sr.encode()
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeRecord(b)
		if err != nil || got != sr {
			t.Fatalf("round trip: %+v, %v; want %+v", got, err, sr)
		}
	}
	if _, err := (storedRecord{KeyID: "zz", Status: notarize.StatusTrusted}).encode(); err == nil {
		t.Fatal("bad key ID encoded")
	}
	if _, err := (storedRecord{KeyID: strings.Repeat("ab", 32), Status: "maybe"}).encode(); err == nil {
		t.Fatal("bad status encoded")
	}
}

func FuzzDecodeRecord(f *testing.F) {
	b, _ := storedRecord{KeyID: strings.Repeat("ab", 32), Status: notarize.StatusUntrusted, Timestamp: time.Unix(1, 2), Name: "n", Kind: "k"}.encode()
	f.Add(b)
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		sr, err := decodeRecord(b)
		if err != nil {
			return
		}
		again, err := sr.encode()
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		if back, err := decodeRecord(again); err != nil || back != sr {
			t.Fatalf("re-encoding changed the record")
		}
	})
}
