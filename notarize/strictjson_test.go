package notarize

import (
	"reflect"
	"strings"
	"testing"
)

// TestStrictJSONRefusesDeepNesting: a statement whose attribute value nests
// arrays thousands deep is refused by the member walk before encoding/json
// reads it, with an error that says why.
func TestStrictJSONRefusesDeepNesting(t *testing.T) {
	deep := strings.Repeat("[", 1000) + strings.Repeat("]", 1000)
	b := []byte(`{"_type":"` + StatementType + `","subject":[{"digest":{"sha256":"` + strings.Repeat("a", 64) +
		`"}}],"predicateType":"` + PredicateType + `","predicate":{"status":"trusted","attributes":{"k":` + deep +
		`},"timestamp":"2026-01-01T00:00:00Z"}}`)
	_, err := ParseStatement(b)
	if err == nil || !strings.Contains(err.Error(), "nested deeper than") {
		t.Fatalf("ParseStatement(deep) = %v, want a nesting error", err)
	}
}

// TestStrictJSONWalkModes: the one walker refuses unknown members for
// signed documents and only case variants for manifests, and repeated
// members in both.
func TestStrictJSONWalkModes(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		wantStmt  string // substring of ParseStatement's error
	}{
		{"unknown member", `{"_type":"x","Extra":1}`, "unknown member"},
		{"repeated member", `{"_type":"x","_type":"y"}`, "appears twice"},
		{"case variant", `{"_TYPE":"x"}`, "unknown member"},
	} {
		if _, err := ParseStatement([]byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.wantStmt) {
			t.Errorf("%s: ParseStatement = %v, want %q", tc.name, err, tc.wantStmt)
		}
	}
	mt := "application/vnd.oci.image.manifest.v1+json"
	if _, err := ClassifyManifest([]byte(`{"schemaVersion":2,"mediaType":"`+mt+`","annotations":{},"layers":[],"Layers":[]}`), mt); err == nil || !strings.Contains(err.Error(), "only in case") {
		t.Errorf("ClassifyManifest(case variant) = %v, want a case error", err)
	}
	if _, err := ClassifyManifest([]byte(`{"schemaVersion":2,"mediaType":"`+mt+`","layers":[],"layers":[]}`), mt); err == nil || !strings.Contains(err.Error(), "appears twice") {
		t.Errorf("ClassifyManifest(repeated) = %v, want a repeated-member error", err)
	}
}

// FuzzCanonicalImpliesStrict: ParseStatement and ParseEntry run the member
// walk only to explain a refusal, relying on the canonical comparison to
// accept nothing the walk would refuse. Whatever they accept, the walk
// accepts too.
func FuzzCanonicalImpliesStrict(f *testing.F) {
	f.Add([]byte(`{"_type":"` + StatementType + `","subject":[{"digest":{"sha256":"` + strings.Repeat("a", 64) +
		`"}}],"predicateType":"` + PredicateType + `","predicate":{"status":"trusted","timestamp":"2026-01-01T00:00:00Z"}}`))
	f.Add([]byte(`{"_type":"x","_type":"y"}`))
	f.Add([]byte(`{"envelope":{"payloadType":"a","payload":"b","signatures":[{"keyid":"k","sig":"c"}]},"publicKey":"p"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := ParseStatement(b); err == nil {
			if werr := explainJSON(b, reflect.TypeFor[Statement]()); werr != nil {
				t.Fatalf("ParseStatement accepted what the member walk refuses (%v): %q", werr, b)
			}
		}
		if _, err := ParseEntry(b); err == nil {
			if werr := explainJSON(b, reflect.TypeFor[Entry]()); werr != nil {
				t.Fatalf("ParseEntry accepted what the member walk refuses (%v): %q", werr, b)
			}
		}
	})
}
