package notarize

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"time"
	"unicode/utf8"
)

const (
	// StatementType is the in-toto Statement v1 type URI.
	StatementType = "https://in-toto.io/Statement/v1"
	// PredicateType identifies the docker notarize status predicate.
	PredicateType = "https://github.com/notarize/docker-notarize/status/v1"
	// PayloadType is the DSSE payload type of an in-toto statement.
	PayloadType = "application/vnd.in-toto+json"
)

// Limits on what a statement may hold. Parsers refuse anything larger.
const (
	MaxStatementSize = 32 << 10 // bytes of statement JSON
	MaxAttributes    = 64
	MaxAttributeKey  = 128
	MaxAttributeVal  = 1024
	MaxNameLen       = 256
	MaxMediaTypeLen  = 256
)

// Status is what a signer says about a digest.
type Status string

// The three statuses a signer can record.
const (
	StatusTrusted     Status = "trusted"
	StatusUntrusted   Status = "untrusted"
	StatusUnsupported Status = "unsupported"
)

// Valid reports whether s is one of the three statuses.
func (s Status) Valid() bool {
	return s == StatusTrusted || s == StatusUntrusted || s == StatusUnsupported
}

// Kinds of subject a statement may be about.
const (
	KindImage = "image" // an image manifest
	KindIndex = "index" // an image index (manifest list)
	KindFile  = "file"  // any file, by its SHA-256
)

// ErrBadStatement is returned (wrapped) for a statement that does not parse or
// does not follow the rules of this package.
var ErrBadStatement = errors.New("bad statement")

// Subject is the in-toto resource descriptor the statement is about.
type Subject struct {
	Name   string            `json:"name,omitempty"`
	Digest map[string]string `json:"digest"`
}

// Predicate is the docker notarize status predicate.
type Predicate struct {
	Status     Status            `json:"status"`
	MediaType  string            `json:"mediaType,omitempty"`
	Size       int64             `json:"size,omitempty"`
	Kind       string            `json:"kind,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
	// Name is the signer's display name; it is not authenticated beyond the key.
	Name string `json:"name,omitempty"`
	// Email is the signer's optional email address, a bare addr-spec
	// (ValidateEmail); like Name it is the signer's claim, which a ledger
	// with enrolled identities checks against the key's (CheckClaim).
	Email string `json:"email,omitempty"`
	// Timestamp is the signer's clock when signing; the newest one wins.
	Timestamp time.Time `json:"timestamp"`
}

// Statement is an in-toto Statement v1 with exactly one subject and a status predicate.
type Statement struct {
	Type          string    `json:"_type"`
	Subject       []Subject `json:"subject"`
	PredicateType string    `json:"predicateType"`
	Predicate     Predicate `json:"predicate"`
}

// NewStatement returns a statement that d has status p.Status. The subject name
// is informational (an image reference or file name).
func NewStatement(d Digest, name string, p Predicate) *Statement {
	return &Statement{
		Type:          StatementType,
		Subject:       []Subject{{Name: name, Digest: map[string]string{"sha256": d.Hex()}}},
		PredicateType: PredicateType,
		Predicate:     p,
	}
}

// Digest returns the statement's subject digest. Call it on validated statements only.
func (s *Statement) Digest() Digest {
	if len(s.Subject) == 0 {
		return ""
	}
	return Digest("sha256:" + s.Subject[0].Digest["sha256"])
}

// Validate checks the statement follows the rules: in-toto v1, one subject with
// a sha256 digest, the status predicate with a valid status and a timestamp,
// and bounded free-form fields.
func (s *Statement) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadStatement, fmt.Sprintf(format, a...))
	}
	if s.Type != StatementType {
		return bad("_type %q, want %q", truncate(s.Type, 80), StatementType)
	}
	if s.PredicateType != PredicateType {
		return bad("predicateType %q, want %q", truncate(s.PredicateType, 80), PredicateType)
	}
	if len(s.Subject) != 1 {
		return bad("want exactly one subject, got %d", len(s.Subject))
	}
	sub := s.Subject[0]
	if len(sub.Digest) != 1 {
		return bad("subject must carry exactly one digest (sha256)")
	}
	h, ok := sub.Digest["sha256"]
	if !ok {
		return bad("subject digest must be sha256")
	}
	if err := checkHex(h); err != nil {
		return bad("subject digest: %v", err)
	}
	if len(sub.Name) > MaxNameLen*4 || !utf8.ValidString(sub.Name) {
		return bad("subject name too long or not UTF-8")
	}
	p := s.Predicate
	if !p.Status.Valid() {
		return bad("status %q, want trusted, untrusted or unsupported", truncate(string(p.Status), 40))
	}
	if err := validateKeyPredicate(p); err != nil { // keyrevoke.go
		return bad("%v", err)
	}
	if p.Timestamp.IsZero() {
		return bad("predicate timestamp missing")
	}
	if y := p.Timestamp.Year(); y < 2000 || y > 9999 {
		return bad("predicate timestamp %v out of range", p.Timestamp)
	}
	if p.Size < 0 {
		return bad("negative size")
	}
	if len(p.MediaType) > MaxMediaTypeLen || len(p.Kind) > MaxNameLen || len(p.Name) > MaxNameLen {
		return bad("mediaType, kind or name too long")
	}
	if !utf8.ValidString(p.MediaType) || !utf8.ValidString(p.Kind) || !utf8.ValidString(p.Name) {
		return bad("mediaType, kind or name not UTF-8")
	}
	if p.Email != "" {
		if err := ValidateEmail(p.Email); err != nil {
			return fmt.Errorf("%w: %w", ErrBadStatement, err)
		}
	}
	if len(p.Attributes) > MaxAttributes {
		return bad("%d attributes, at most %d", len(p.Attributes), MaxAttributes)
	}
	for k, v := range p.Attributes {
		if k == "" || len(k) > MaxAttributeKey || len(v) > MaxAttributeVal || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return bad("attribute %q: empty, too long or not UTF-8", truncate(k, 40))
		}
	}
	return nil
}

// Marshal returns the statement's JSON, the DSSE payload that gets signed:
// Go encoding/json of Statement, the one encoding ParseStatement accepts.
func (s *Statement) Marshal() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(s)
}

// ParseStatement decodes and validates a statement. Unknown top-level or
// predicate fields are refused so that what is signed is what is understood;
// invalid UTF-8 (encoding/json would quietly read it as U+FFFD, so the
// statement would read differently elsewhere) and any spelling but the
// statement's own Marshal output (other member order or spacing, escapes,
// empty optional members; ErrNotCanonical) are refused so that one
// statement has one payload.
func ParseStatement(b []byte) (*Statement, error) {
	if len(b) > MaxStatementSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadStatement, len(b), MaxStatementSize)
	}
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("%w: statement is not valid UTF-8", ErrBadStatement)
	}
	if s, ok := scanCanonicalStatement(b); ok && s.Validate() == nil {
		if canon, err := json.Marshal(&s); err == nil && bytes.Equal(canon, b) {
			return &s, nil
		}
	}
	return parseStatementGeneral(b)
}

// parseStatementGeneral is ParseStatement of b (of valid size and UTF-8)
// by encoding/json, with the member walk explaining a refusal: every
// statement's path before the scanner (scanCanonicalStatement), and the
// one for any spelling the scanner does not read.
func parseStatementGeneral(b []byte) (*Statement, error) {
	// The canonical comparison accepts only bytes that json.Marshal
	// writes, which never repeat a member, miscase one or nest deeper than
	// the type: so the member walk (memberWalk) runs only to explain a
	// refusal, not on every statement.
	var s Statement
	derr := decodeOne(b, &s)
	if derr == nil {
		if err := s.Validate(); err != nil {
			if werr := explainJSON(b, reflect.TypeFor[Statement]()); werr != nil {
				return nil, fmt.Errorf("%w: %v", ErrBadStatement, werr)
			}
			return nil, err
		}
		if canon, err := json.Marshal(&s); err == nil && bytes.Equal(canon, b) {
			return &s, nil
		}
	}
	if werr := explainJSON(b, reflect.TypeFor[Statement]()); werr != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadStatement, werr)
	}
	if derr != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadStatement, derr)
	}
	return nil, notCanonical(ErrBadStatement, "statement JSON must be exactly its canonical form (Go encoding/json of the statement: members in field order, no whitespace, empty optional members left out, Go's string escapes, RFC 3339 timestamp without trailing zeros)")
}

// decodeOne decodes exactly one JSON value into v, refusing unknown
// fields and trailing data. What encoding/json would quietly accept but
// another JSON reader may read differently (repeated or miscased members)
// is left to the caller's canonical comparison, and explained by
// explainJSON.
func decodeOne(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errTrailing
	}
	return nil
}

// explainJSON returns why b is not strict JSON for Go type t (memberWalk:
// a repeated, unknown or miscased member, nesting too deep), or nil.
func explainJSON(b []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return (memberWalk{unknown: refuseUnknown, maxDepth: maxStrictDepth}).walk(dec, t, 0)
}
