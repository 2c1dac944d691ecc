package notarize

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// maxStrictDepth bounds the nesting of a signed statement or entry's JSON:
// neither nests more than a few levels, so anything deeper is an attack on
// the reader, refused before encoding/json sees it.
const maxStrictDepth = 32

// unknownMembers says what a memberWalk does with a member name that is not
// one of the JSON field names of the struct an object is read into.
type unknownMembers int

const (
	// refuseUnknown refuses it: statements and entries are signed, and a
	// member this package does not read could mean something to another
	// reader.
	refuseUnknown unknownMembers = iota
	// refuseCaseVariants lets it pass unless it differs only in case from a
	// field's name (encoding/json would read it into that field, a
	// case-sensitive reader would not): manifests carry members this
	// package has no use for (annotations, config, …).
	refuseCaseVariants
)

// memberWalk checks one JSON value token by token, shaped after a Go type,
// for the two things encoding/json lets pass where other JSON readers
// differ: an object that repeats a member name (encoding/json keeps the
// last, others the first), and a member name that matches a struct field
// only case-insensitively (encoding/json fills the field, a case-sensitive
// reader leaves it empty). What is signed, or judged, must mean the same to
// every verifier and auditor. It is the one walker of ParseStatement,
// ParseEntry and ClassifyManifest.
type memberWalk struct {
	// unknown says what to do with members a struct does not name. Maps
	// accept any member names.
	unknown unknownMembers
	// maxDepth bounds the nesting of objects and arrays.
	maxDepth int
	// top, when not nil, receives the member names of the top-level object.
	top map[string]bool
}

// walk reads one JSON value from dec, shaped after Go type t (nil for any
// shape), at nesting depth depth.
func (w memberWalk) walk(dec *json.Decoder, t reflect.Type, depth int) error {
	if depth > w.maxDepth {
		return fmt.Errorf("nested deeper than %d", w.maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if u := reflect.TypeFor[json.Unmarshaler](); t != nil && (t.Implements(u) || reflect.PointerTo(t).Implements(u)) {
		t = nil // decodes itself (time.Time): only its own objects' members are checked
	}
	switch tok {
	case json.Delim('{'):
		var fields map[string]reflect.Type
		var elem reflect.Type
		switch {
		case t != nil && t.Kind() == reflect.Struct:
			fields = jsonFields(t)
		case t != nil && t.Kind() == reflect.Map:
			elem = t.Elem()
		}
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return err
			}
			k, _ := kt.(string)
			if seen[k] {
				return fmt.Errorf("member %q appears twice in one object", truncate(k, 40))
			}
			seen[k] = true
			if depth == 0 && w.top != nil {
				w.top[k] = true
			}
			next := elem
			if fields != nil {
				ft, ok := fields[k]
				if !ok {
					if err := w.unknownMember(k, fields); err != nil {
						return err
					}
				}
				next = ft
			}
			if err := w.walk(dec, next, depth+1); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for dec.More() {
			if err := w.walk(dec, elem, depth+1); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	}
	return nil
}

// unknownMember judges member name k, which none of fields is spelled as.
func (w memberWalk) unknownMember(k string, fields map[string]reflect.Type) error {
	if w.unknown == refuseUnknown {
		return fmt.Errorf("unknown member %q", truncate(k, 40))
	}
	for f := range fields {
		if strings.EqualFold(f, k) {
			return fmt.Errorf("member %q differs from %q only in case", truncate(k, 40), f)
		}
	}
	return nil
}

// errTrailing is returned when a JSON value is followed by more data.
var errTrailing = errors.New("trailing data after JSON value")

// jsonFields returns the exact JSON member names of struct type t, as
// encoding/json names them, with their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	fields := make(map[string]reflect.Type, t.NumField())
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
	}
	return fields
}
