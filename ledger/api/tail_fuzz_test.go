package api

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzUnmarshalTailAnswer: the framed answer's parser never panics, keeps
// the inline tail's bounds, and the resources it accepts encode and decode
// back to themselves.
func FuzzUnmarshalTailAnswer(f *testing.F) {
	idx := uint64(7)
	seed := &LookupResponse{Digest: "sha256:00", Checkpoint: "cp\n", Entries: []LookupEntry{}, Map: &MapProof{
		RootIndex: &idx, Keys: []KeyMapProof{},
		Tail: &InlineTail{
			Bundles: []InlineBundle{{Index: 3, Width: 2, Data: []byte{0, 1, 'a', 0, 0}}, {Index: 4, Data: []byte{}}},
			Tiles:   []InlineTile{{Level: 1, Index: 0, Width: 5, Data: bytes.Repeat([]byte{9}, 160)}},
		},
	}}
	b, err := MarshalTailAnswer(seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)-1])
	f.Add([]byte(tailAnswerMagic))
	f.Add(append([]byte(tailAnswerMagic), 0, 0, 0, 2, '{', '}', 'b'))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := UnmarshalTailAnswer(b)
		if err != nil {
			return
		}
		if r.Map == nil {
			return // JSON without a map: re-encoded as JSON by the ledger, not framed
		}
		tail := r.Map.Tail
		n := 0
		for _, x := range tail.Bundles {
			n += len(x.Data)
		}
		for _, x := range tail.Tiles {
			n += len(x.Data)
		}
		if len(tail.Bundles) > MaxInlineBundles || len(tail.Tiles) > MaxInlineTiles || n > MaxInlineTailBytes {
			t.Fatalf("accepted %d bundles, %d tiles, %d bytes", len(tail.Bundles), len(tail.Tiles), n)
		}
		again, err := MarshalTailAnswer(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := UnmarshalTailAnswer(again)
		if err != nil || !reflect.DeepEqual(r2.Map.Tail, r.Map.Tail) {
			t.Fatalf("round trip: %v\n%+v\n%+v", err, r.Map.Tail, r2)
		}
	})
}
