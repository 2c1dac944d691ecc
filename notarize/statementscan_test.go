package notarize

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// scanStatements are canonical statements with every optional member left
// out, and with all of them (a newline in a string, a nanosecond
// timestamp with an offset, attributes in key order).
func scanStatements(t testing.TB) [][]byte {
	t.Helper()
	d := DigestOf([]byte("scan"))
	ts := time.Date(2026, 12, 3, 21, 0, 0, 123456789, time.FixedZone("", 3600))
	full := NewStatement(d, "registry.example/app:1", Predicate{
		Status: StatusUntrusted, MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 1234,
		Kind: KindImage, Attributes: map[string]string{"b": "two\nlines", "a": "1"},
		Name: "Ops Team", Email: "ops@example.com", Timestamp: ts,
	})
	bare := NewStatement(d, "", Predicate{Status: StatusTrusted, Timestamp: ts.UTC().Truncate(time.Second)})
	var out [][]byte
	for _, st := range []*Statement{full, bare} {
		b, err := st.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzScanCanonicalStatement: whatever ParseStatement's fast path reads,
// encoding/json (the general path's decoder) reads the same.
func FuzzScanCanonicalStatement(f *testing.F) {
	for _, b := range scanStatements(f) {
		f.Add(b)
	}
	f.Add([]byte(`{"_type":"t","subject":[{"digest":{"sha256":"a"}}],"predicateType":"p","predicate":{"status":"s","size":0,"timestamp":"x"}}`))
	f.Add([]byte(`{"_type":"t","subject":[{"digest":{"sha256":"a"}}],"predicateType":"p","predicate":{"status":"s","attributes":{"k":"v","k":"w"},"timestamp":"2026-01-01T00:00:00Z"}}`))
	f.Fuzz(func(t *testing.T, b []byte) { scanAgrees(t, b, scanCanonicalStatement) })
}

// TestScanCanonicalStatement: the fast path reads canonical statements as
// encoding/json does, and leaves any other spelling to the general path,
// whose answer ParseStatement gives (a refusal for every spelling here).
func TestScanCanonicalStatement(t *testing.T) {
	for _, b := range scanStatements(t) {
		st, ok := scanCanonicalStatement(b)
		if !ok {
			t.Fatalf("scanCanonicalStatement(%s): not read", b)
		}
		var d Statement
		if err := json.Unmarshal(b, &d); err != nil || !reflect.DeepEqual(st, d) {
			t.Fatalf("scanCanonicalStatement(%s) = %+v, encoding/json %+v (%v)", b, st, d, err)
		}
	}
	canon := string(scanStatements(t)[0])
	for _, c := range []struct{ name, old, new string }{
		{"leading space", `{`, ` {`},
		{"members out of order", `"status":"untrusted","mediaType"`, `"mediaType"`},
		{"attributes out of order", `{"a":"1","b":"two\nlines"}`, `{"b":"two\nlines","a":"1"}`},
		{"a repeated attribute", `{"a":"1",`, `{"a":"1","a":"1",`},
		{"a size with a leading zero", `"size":1234`, `"size":01234`},
		{"a zero size", `"size":1234`, `"size":0`},
		{"a negative size", `"size":1234`, `"size":-1234`},
		{"a size past int64", `"size":1234`, `"size":99999999999999999999`},
		{"a fractional size", `"size":1234`, `"size":1234.0`},
		{"an escape other than \\n", `Ops Team`, `Ops\u0020Team`},
		{"a raw control character", `Ops Team`, "Ops\tTeam"},
		{"two subjects", `}}],"predicateType"`, `}},{"digest":{"sha256":"00"}}],"predicateType"`},
		{"a second digest", `"digest":{"sha256":`, `"digest":{"sha512":"00","sha256":`},
		{"an empty name", `"name":"registry.example/app:1",`, `"name":"",`},
		{"a timestamp that is no RFC 3339", `"timestamp":"2026-12-03T21:00:00.123456789+01:00"`, `"timestamp":"03 Dec 26 21:00 +0100"`},
		{"trailing zeros in the timestamp", `.123456789+01:00`, `.123456789000+01:00`},
		{"an unknown member", `,"timestamp"`, `,"x":"y","timestamp"`},
		{"trailing data", `}}`, `}} `},
		{"an uppercase member", `"kind":`, `"Kind":`},
	} {
		b := strings.Replace(canon, c.old, c.new, 1)
		if b == canon {
			t.Fatalf("%s: %q not in %s", c.name, c.old, canon)
		}
		if st, ok := scanCanonicalStatement([]byte(b)); ok && st.Validate() == nil {
			if again, err := json.Marshal(&st); err == nil && string(again) == b {
				t.Errorf("%s: the fast path accepts %s", c.name, b)
			}
		}
		if _, err := ParseStatement([]byte(b)); err == nil {
			t.Errorf("%s: ParseStatement accepts %s", c.name, b)
		}
	}
}
