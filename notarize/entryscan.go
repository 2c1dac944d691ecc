package notarize

import (
	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// scanCanonicalEntry reads b in the one layout Entry.Marshal writes,
//
//	{"envelope":{"payloadType":S,"payload":S,"signatures":[{"keyid":S,"sig":S},…]},"publicKey":S}
//
// with at least one signature, where each S is a JSON string whose only
// escape is \n (base64 and PEM text need no other). It is ParseEntry's
// fast path: a replica reads every entry of a log, and encoding/json's
// decoder costs as much as the rest of the parse. ok is false for anything
// else, which ParseEntry then decodes the general way. ParseEntry accepts
// what it returns only when Marshal gives b back byte for byte, so a
// mistake here can only send an entry to the general path, never accept
// a spelling the general path would refuse (FuzzScanCanonicalEntry checks
// that it agrees with encoding/json).
func scanCanonicalEntry(b []byte) (e Entry, ok bool) {
	s := entryScanner{b: b}
	s.lit(`{"envelope":{"payloadType":`)
	e.Envelope.PayloadType = s.str()
	s.lit(`,"payload":`)
	e.Envelope.Payload = s.str()
	s.lit(`,"signatures":[`)
	for {
		var sig ssldsse.Signature
		s.lit(`{"keyid":`)
		sig.KeyID = s.str()
		s.lit(`,"sig":`)
		sig.Sig = s.str()
		s.lit(`}`)
		e.Envelope.Signatures = append(e.Envelope.Signatures, sig)
		if s.bad || !s.next(',') {
			break
		}
	}
	s.lit(`]},"publicKey":`)
	e.PublicKey = s.str()
	s.lit(`}`)
	if s.bad || len(s.b) != 0 {
		return Entry{}, false
	}
	return e, true
}

// entryScanner consumes b from the front; bad is sticky.
type entryScanner struct {
	b   []byte
	bad bool
}

// has consumes lit if it comes next, and reports whether it did.
func (s *entryScanner) has(lit string) bool {
	if s.bad || len(s.b) < len(lit) || string(s.b[:len(lit)]) != lit {
		return false
	}
	s.b = s.b[len(lit):]
	return true
}

// lit consumes lit, or marks the scan bad.
func (s *entryScanner) lit(lit string) {
	if !s.has(lit) {
		s.bad = true
	}
}

// next consumes c if it comes next.
func (s *entryScanner) next(c byte) bool {
	if s.bad || len(s.b) == 0 || s.b[0] != c {
		return false
	}
	s.b = s.b[1:]
	return true
}

// str consumes a JSON string whose only escape is \n and returns its value,
// or marks the scan bad.
func (s *entryScanner) str() string {
	if !s.next('"') {
		s.bad = true
		return ""
	}
	escapes := 0
	i := 0
	for ; i < len(s.b) && s.b[i] != '"'; i++ {
		switch c := s.b[i]; {
		case c < 0x20:
			s.bad = true
			return ""
		case c == '\\':
			if i+1 >= len(s.b) || s.b[i+1] != 'n' {
				s.bad = true
				return ""
			}
			escapes++
			i++
		}
	}
	if i == len(s.b) {
		s.bad = true
		return ""
	}
	raw := s.b[:i]
	s.b = s.b[i+1:]
	if escapes == 0 {
		return string(raw)
	}
	out := make([]byte, 0, len(raw)-escapes)
	for j := 0; j < len(raw); j++ {
		if raw[j] == '\\' {
			out = append(out, '\n')
			j++
			continue
		}
		out = append(out, raw[j])
	}
	return string(out)
}
