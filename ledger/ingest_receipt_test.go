package ledger

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/notarize/docker-notarize/ledger/api"
)

// receiptJSONCases are receipts whose every field takes its edge values:
// zero and large indices, nil and empty byte slices and proofs, and
// checkpoints with the characters encoding/json escapes.
var receiptJSONCases = []api.Receipt{
	{},
	{Index: 1<<64 - 1, Duplicate: true, Entry: []byte{}, InclusionProof: [][]byte{}},
	{Index: 7, Entry: []byte(`{"envelope":{}}`), InclusionProof: [][]byte{nil, {}, bytes.Repeat([]byte{0xff}, 32)}},
	{Checkpoint: "example.com/log\n42\nq83Ud0Q0rXk=\n\n— example.com/log AbCd+/==\n"},
	{Checkpoint: "quote \" backslash \\ tab \t cr \r nul \x00 del \x7f"},
	{Checkpoint: "<script>&amp;</script>"},
	{Checkpoint: "line separator \u2028 paragraph \u2029 bmp é 𝄞"},
	{Checkpoint: "invalid \xff\xfe utf-8 \xe2\x80"},
}

// TestAppendReceiptIsJSONMarshal: the receipt encoder writes exactly
// json.Marshal's bytes, so clients decode the same receipt.
func TestAppendReceiptIsJSONMarshal(t *testing.T) {
	for i, r := range receiptJSONCases {
		want, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendReceipt(nil, &r); !bytes.Equal(got, want) {
			t.Errorf("case %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// FuzzAppendReceipt: for any receipt, the encoder's bytes are json.Marshal's.
func FuzzAppendReceipt(f *testing.F) {
	for _, r := range receiptJSONCases {
		var p []byte
		if len(r.InclusionProof) > 0 {
			p = r.InclusionProof[len(r.InclusionProof)-1]
		}
		f.Add(r.Index, r.Duplicate, r.Entry, r.Checkpoint, p, len(r.InclusionProof))
	}
	f.Fuzz(func(t *testing.T, index uint64, dup bool, entry []byte, cp string, node []byte, n int) {
		r := api.Receipt{Index: index, Duplicate: dup, Entry: entry, Checkpoint: cp}
		if n >= 0 {
			r.InclusionProof = make([][]byte, n%40)
			for i := range r.InclusionProof {
				if i%3 != 1 {
					r.InclusionProof[i] = node
				}
			}
		}
		want, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendReceipt(nil, &r); !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	})
}

// TestAppendReceiptKnowsEveryField: appendReceipt writes api.Receipt's
// fields by hand, so a field added to the wire contract would be dropped
// from every receipt without this test failing: every field, set to a
// non-zero value by reflection, must change the encoder's bytes as it
// changes json.Marshal's.
func TestAppendReceiptKnowsEveryField(t *testing.T) {
	typ := reflect.TypeFor[api.Receipt]()
	for i := range typ.NumField() {
		var r api.Receipt
		f := reflect.ValueOf(&r).Elem().Field(i)
		switch f.Kind() {
		case reflect.Uint64:
			f.SetUint(42)
		case reflect.Bool:
			f.SetBool(true)
		case reflect.String:
			f.SetString("x")
		case reflect.Slice:
			if f.Type().Elem().Kind() == reflect.Uint8 {
				f.SetBytes([]byte("x"))
			} else {
				f.Set(reflect.ValueOf([][]byte{[]byte("x")}))
			}
		default:
			t.Fatalf("api.Receipt.%s is a %s: teach appendReceipt and this test about it", typ.Field(i).Name, f.Kind())
		}
		want, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendReceipt(nil, &r); !bytes.Equal(got, want) {
			t.Errorf("api.Receipt.%s set: appendReceipt writes %s, json.Marshal %s", typ.Field(i).Name, got, want)
		}
	}
}
