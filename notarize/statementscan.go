package notarize

import (
	"strconv"
	"time"
)

// scanCanonicalStatement reads b in the one layout Statement.Marshal
// writes for a valid statement,
//
//	{"_type":S,"subject":[{"name":S,"digest":{"sha256":S}}],"predicateType":S,
//	 "predicate":{"status":S,"mediaType":S,"size":N,"kind":S,"attributes":{S:S,…},
//	 "name":S,"email":S,"timestamp":S}}
//
// (on one line), where the subject's name and the predicate's members but
// status and timestamp may be left out, N is a positive decimal, and each
// S is a JSON string whose only escape is \n (entryScanner.str). It is
// ParseStatement's fast path: every statement a ledger admits, and every
// entry a replica or a verify checks, is parsed, and encoding/json's
// reflective decoder cost as much as the signature check's other work
// (4 % of a ledger's CPU under 1,024 clients). ok is false for anything
// else, which ParseStatement then decodes the general way.
// ParseStatement accepts what it returns only when it validates and
// json.Marshal gives b back byte for byte, so a mistake here can only send
// a statement to the general path, never accept a spelling the general
// path would refuse (FuzzScanCanonicalStatement checks that what it reads
// is what encoding/json reads).
func scanCanonicalStatement(b []byte) (st Statement, ok bool) {
	s := entryScanner{b: b}
	s.lit(`{"_type":`)
	st.Type = s.str()
	s.lit(`,"subject":[{`)
	var sub Subject
	if s.has(`"name":`) {
		sub.Name = s.str()
		s.lit(`,`)
	}
	s.lit(`"digest":{"sha256":`)
	sub.Digest = map[string]string{"sha256": s.str()}
	s.lit(`}}],"predicateType":`)
	st.Subject = []Subject{sub}
	st.PredicateType = s.str()
	s.lit(`,"predicate":{"status":`)
	p := &st.Predicate
	p.Status = Status(s.str())
	if s.has(`,"mediaType":`) {
		p.MediaType = s.str()
	}
	if s.has(`,"size":`) {
		p.Size = s.positive()
	}
	if s.has(`,"kind":`) {
		p.Kind = s.str()
	}
	if s.has(`,"attributes":{`) {
		p.Attributes = map[string]string{}
		for {
			k := s.str()
			s.lit(`:`)
			p.Attributes[k] = s.str()
			if s.bad || !s.next(',') {
				break
			}
		}
		s.lit(`}`)
	}
	if s.has(`,"name":`) {
		p.Name = s.str()
	}
	if s.has(`,"email":`) {
		p.Email = s.str()
	}
	s.lit(`,"timestamp":`)
	p.Timestamp = s.time()
	s.lit(`}}`)
	if s.bad || len(s.b) != 0 {
		return Statement{}, false
	}
	return st, true
}

// positive consumes a positive decimal integer without leading zeros that
// fits an int64, or marks the scan bad.
func (s *entryScanner) positive() int64 {
	i := 0
	for i < len(s.b) && s.b[i] >= '0' && s.b[i] <= '9' {
		i++
	}
	if s.bad || i == 0 || s.b[0] == '0' || i > 18 {
		s.bad = true
		return 0
	}
	n, err := strconv.ParseInt(string(s.b[:i]), 10, 64)
	if err != nil {
		s.bad = true
		return 0
	}
	s.b = s.b[i:]
	return n
}

// time consumes a JSON string holding a timestamp, read as encoding/json
// reads a time.Time (its UnmarshalJSON: RFC 3339), or marks the scan bad.
func (s *entryScanner) time() time.Time {
	start := s.b
	s.str()
	if s.bad {
		return time.Time{}
	}
	var t time.Time
	if err := t.UnmarshalJSON(start[:len(start)-len(s.b)]); err != nil {
		s.bad = true
		return time.Time{}
	}
	return t
}
