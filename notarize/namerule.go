package notarize

// NameRule is the rule of a name (a signer in a policy, a key in a key
// store): 1 to Max bytes of ASCII letters, digits and the bytes of Extra,
// starting with a letter or a digit. It matches what the regexp
// ^[A-Za-z0-9][A-Za-z0-9<Extra>]{0,Max-1}$ matches, without compiling a
// regexp in package initialisation: a compiled {0,63} repetition is 64
// copies of the class, which cost every run of the plugin ~1.5 % of a
// verify's CPU per pattern (issue 14).
type NameRule struct {
	// Max is the largest length, in bytes.
	Max int
	// Extra are the punctuation bytes allowed after the first.
	Extra string
}

// MatchString reports whether s follows the rule.
func (r NameRule) MatchString(s string) bool {
	if len(s) == 0 || len(s) > r.Max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if i == 0 || !r.allows(c) {
			return false
		}
	}
	return true
}

func (r NameRule) allows(c byte) bool {
	for i := 0; i < len(r.Extra); i++ {
		if r.Extra[i] == c {
			return true
		}
	}
	return false
}
