package notarize

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Red team 23: ParseStatement's scanner fast path (bc60510) against the
// ParseStatement before it (2c6b38a: the general path alone). Whatever the input,
// both must accept the same bytes with the same Statement value, and
// refuse the same bytes with the same error.

// redteam23OldParseStatement is ParseStatement as of 2c6b38a: its checks
// of size and UTF-8, then the general path alone (parseStatementGeneral,
// which was the whole function then).
func redteam23OldParseStatement(b []byte) (*Statement, error) {
	if len(b) > MaxStatementSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadStatement, len(b), MaxStatementSize)
	}
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("%w: statement is not valid UTF-8", ErrBadStatement)
	}
	return parseStatementGeneral(b)
}

// redteam23Same fails t unless the new and the old ParseStatement agree on b.
func redteam23Same(t *testing.T, b []byte) {
	t.Helper()
	got, gerr := ParseStatement(b)
	want, werr := redteam23OldParseStatement(b)
	if (gerr == nil) != (werr == nil) {
		t.Fatalf("ParseStatement(%q): error %v, before bc60510 %v", b, gerr, werr)
	}
	if gerr != nil {
		if gerr.Error() != werr.Error() {
			t.Fatalf("ParseStatement(%q): error %q, before bc60510 %q", b, gerr, werr)
		}
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseStatement(%q) = %+v, before bc60510 %+v", b, got, want)
	}
	// The same instant, zone and rendering, whatever the location pointer.
	gt, wt := got.Predicate.Timestamp, want.Predicate.Timestamp
	gn, go_ := gt.Zone()
	wn, wo := wt.Zone()
	if !gt.Equal(wt) || gn != wn || go_ != wo || gt.String() != wt.String() || gt.Location().String() != wt.Location().String() {
		t.Fatalf("ParseStatement(%q): timestamp %v (%s), before bc60510 %v (%s)", b, gt, gt.Location(), wt, wt.Location())
	}
}

// redteam23Seeds are canonical statements of many shapes and spellings
// one step away from them, which the old parser refuses.
func redteam23Seeds(t testing.TB) [][]byte {
	d := DigestOf([]byte("redteam23"))
	var out [][]byte
	add := func(st *Statement) {
		b, err := json.Marshal(st) // not Marshal: invalid statements too
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	zones := []*time.Location{time.UTC, time.Local, time.FixedZone("", 3600), time.FixedZone("", -(9*3600 + 30*60)),
		time.FixedZone("X", 14*3600), time.FixedZone("", 59), time.FixedZone("", -1)}
	for i, z := range zones {
		ts := time.Date(2000+i*1000, time.Month(1+i), 1+i, i, i, i, i*111111, z)
		add(NewStatement(d, "", Predicate{Status: StatusTrusted, Timestamp: ts}))
		add(NewStatement(d, "n\né<>&\u2028\x7f", Predicate{Status: StatusUnsupported, MediaType: "m", Size: int64(1) << (i * 9),
			Kind: KindFile, Attributes: map[string]string{"z": "", "a": "\n", "é": "x"}, Name: "N", Email: "a@b.c", Timestamp: ts}))
	}
	add(NewStatement(d, "x", Predicate{Status: "bogus", Timestamp: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}))
	add(NewStatement(d, "x", Predicate{Status: StatusTrusted, Timestamp: time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC)}))
	add(NewStatement(d, "x", Predicate{Status: StatusTrusted, Size: -5, Timestamp: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}))
	add(NewStatement(d, "x", Predicate{Status: StatusTrusted, Size: 1<<63 - 1, Timestamp: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}))
	add(NewStatement(d, "x", Predicate{Status: StatusTrusted, Size: 999999999999999999, Timestamp: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}))
	add(NewStatement(d, "x", Predicate{Status: StatusTrusted, Email: "not an email", Timestamp: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}))
	add(NewStatement(d, "x", Predicate{Status: StatusTrusted, Attributes: map[string]string{"": "v"}, Timestamp: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}))
	add(&Statement{Type: StatementType, Subject: []Subject{{Digest: map[string]string{"sha256": "AB"}}}, PredicateType: PredicateType,
		Predicate: Predicate{Status: StatusTrusted, Timestamp: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}})
	// Spellings one step from canonical (the old parser refuses each).
	canon := string(out[5]) // zone +01:00
	for _, r := range [][2]string{
		{`"a":"\n","z":""`, `"z":"","a":"\n"`},
		{`"a":"\n",`, `"a":"\n","a":"\n",`},
		{`"size":`, `"Size":`},
		{`"status":"unsupported"`, `"status":"unsupp\u006frted"`},
		{`+01:00"`, `+01:00" `},
		{`+01:00"`, `+0100"`},
		{`.000222222`, `.000222222000`},
		{`"kind":"file"`, `"kind":"file","kind":"image"`},
		{`"name":"N"`, `"Name":"N"`},
	} {
		if !strings.Contains(canon, r[0]) {
			t.Fatalf("seed: %q not in %s", r[0], canon)
		}
		out = append(out, []byte(strings.Replace(canon, r[0], r[1], 1)))
	}
	return out
}

// TestRedteam23ParseStatementUnchanged: the seeds, each parsed by both.
//
// Mutants caught: the fast path without its json.Marshal comparison
// (attributes out of order, a repeated attribute are then accepted), or
// without Validate (status "bogus", a 1999 timestamp, an empty attribute
// key, an uppercase digest are then accepted).
func TestRedteam23ParseStatementUnchanged(t *testing.T) {
	for _, b := range redteam23Seeds(t) {
		redteam23Same(t, b)
	}
}

// FuzzRedteam23ParseStatement: the new ParseStatement against the old on
// any bytes.
func FuzzRedteam23ParseStatement(f *testing.F) {
	for _, b := range redteam23Seeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { redteam23Same(t, b) })
}

// FuzzRedteam23StructuredStatement builds statements from fuzzed fields
// (so that most inputs are canonical and reach the fast path), then
// compares both parsers on json.Marshal's bytes and on those bytes with
// one byte changed.
func FuzzRedteam23StructuredStatement(f *testing.F) {
	f.Add("registry.example/app:1", "trusted", "m", int64(5), "image", "k", "v\nw", "Name", "a@b.c", int64(1764795600), int32(123), int32(3600), uint16(0), byte(0))
	f.Add("", "untrusted", "", int64(0), "", "", "", "", "", int64(946684800), int32(0), int32(0), uint16(7), byte('"'))
	f.Fuzz(func(t *testing.T, name, status, mt string, size int64, kind, ak, av, pn, email string, sec int64, nsec, off int32, at uint16, c byte) {
		var attrs map[string]string
		if ak != "" || av != "" {
			attrs = map[string]string{ak: av, "~" + ak: av + "\n"}
		}
		ts := time.Unix(sec, int64(nsec)).In(time.FixedZone("", int(off)%(100*3600)))
		if off == 1 {
			ts = ts.In(time.Local)
		} else if off == 2 {
			ts = ts.UTC()
		}
		st := &Statement{Type: StatementType, PredicateType: PredicateType,
			Subject: []Subject{{Name: name, Digest: map[string]string{"sha256": strings.Repeat("ab", 32)}}},
			Predicate: Predicate{Status: Status(status), MediaType: mt, Size: size, Kind: kind, Attributes: attrs,
				Name: pn, Email: email, Timestamp: ts}}
		b, err := json.Marshal(st)
		if err != nil {
			return
		}
		redteam23Same(t, b)
		if len(b) > 0 {
			m := bytes.Clone(b)
			m[int(at)%len(m)] = c
			redteam23Same(t, m)
		}
	})
}
