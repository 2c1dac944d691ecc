package ledger

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/notarize/docker-notarize/ledger/api"
)

// appendReceipt appends the JSON of r to b: exactly json.Marshal(r)'s
// bytes, without its reflection (a receipt is answered for every
// statement; json.Marshal was the largest cost of a submission's handler
// after the signature check).
func appendReceipt(b []byte, r *api.Receipt) []byte {
	b = append(b, `{"index":`...)
	b = strconv.AppendUint(b, r.Index, 10)
	if r.Duplicate {
		b = append(b, `,"duplicate":true`...)
	}
	b = append(b, `,"entry":`...)
	b = appendJSONBytes(b, r.Entry)
	b = append(b, `,"checkpoint":`...)
	b = appendJSONString(b, r.Checkpoint)
	b = append(b, `,"inclusionProof":`...)
	if r.InclusionProof == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, h := range r.InclusionProof {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONBytes(b, h)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// appendJSONBytes appends p as encoding/json encodes a []byte: standard
// base64 in a string, null for nil.
func appendJSONBytes(b, p []byte) []byte {
	if p == nil {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, p)
	return append(b, '"')
}

// appendJSONString appends s as encoding/json encodes a string. The common
// case (printable ASCII, newlines, valid UTF-8 such as a checkpoint's
// signature lines) is copied here; anything else encoding/json escapes in
// its own way (other control characters, <, >, &, U+2028, U+2029, invalid
// UTF-8) is left to it.
func appendJSONString(b []byte, s string) []byte {
	start := len(b)
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\n':
			b = append(b, `\n`...)
			i++
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
			i++
		case c < 0x20 || c == '<' || c == '>' || c == '&':
			return appendMarshalled(b[:start], s)
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError || r == '\u2028' || r == '\u2029' {
				return appendMarshalled(b[:start], s)
			}
			b = append(b, s[i:i+size]...)
			i += size
		}
	}
	return append(b, '"')
}

// appendMarshalled appends encoding/json's encoding of s.
func appendMarshalled(b []byte, s string) []byte {
	j, _ := json.Marshal(s) // a string always marshals
	return append(b, j...)
}

// writeReceipt answers with the JSON of rec, as writeJSON would.
func writeReceipt(w http.ResponseWriter, status int, rec *api.Receipt) {
	b := appendReceipt(make([]byte, 0, 512+len(rec.Checkpoint)+4*len(rec.Entry)/3+48*len(rec.InclusionProof)), rec)
	w.Header().Set("Content-Type", api.MediaTypeJSON)
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
