package plugin

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/notarize/docker-notarize/notarize"
)

// ErrBadAttribute is returned (wrapped) for an --attr that is not a valid k=v.
var ErrBadAttribute = errors.New("bad attribute")

var attrKeyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*$`)

// parseAttrs turns repeated --attr k=v flags into a map. Keys are letters,
// digits, '.', '_', '/' and '-' (starting with a letter or digit); values are
// UTF-8 without control characters; both are bounded as notarize requires and
// a key may appear once.
func parseAttrs(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	if len(kvs) > notarize.MaxAttributes {
		return nil, fmt.Errorf("%w: %d attributes, at most %d", ErrBadAttribute, len(kvs), notarize.MaxAttributes)
	}
	attrs := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		switch {
		case !ok:
			return nil, fmt.Errorf("%w %q: want key=value", ErrBadAttribute, kv)
		case len(k) > notarize.MaxAttributeKey || !attrKeyRE.MatchString(k):
			return nil, fmt.Errorf("%w %q: key must be 1-%d letters, digits, '.', '_', '/' or '-', starting with a letter or digit", ErrBadAttribute, kv, notarize.MaxAttributeKey)
		case len(v) > notarize.MaxAttributeVal:
			return nil, fmt.Errorf("%w %q: value longer than %d bytes", ErrBadAttribute, k, notarize.MaxAttributeVal)
		case !utf8.ValidString(v) || strings.IndexFunc(v, unicode.IsControl) >= 0:
			return nil, fmt.Errorf("%w %q: value must be UTF-8 without control characters", ErrBadAttribute, k)
		}
		if _, dup := attrs[k]; dup {
			return nil, fmt.Errorf("%w %q: given twice", ErrBadAttribute, k)
		}
		attrs[k] = v
	}
	return attrs, nil
}
