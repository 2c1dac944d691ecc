package notarize

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// MaxEmailLen bounds an email address (RFC 5321's 254-octet path limit).
const MaxEmailLen = 254

// MaxSignersFileSize bounds a signers identities file.
const MaxSignersFileSize = 1 << 20

// Errors of signer identities; callers branch on them with errors.Is.
var (
	// ErrBadEmail is returned (wrapped) for an email that is not one bare,
	// canonically spelled addr-spec.
	ErrBadEmail = errors.New("bad email")
	// ErrBadIdentity is returned (wrapped) for a signer identity, or a
	// signers file, that does not follow the rules.
	ErrBadIdentity = errors.New("bad signer identity")
	// ErrIdentityMismatch is returned (wrapped, as an *IdentityMismatchError)
	// when a statement claims a name or email its key is not enrolled with.
	ErrIdentityMismatch = errors.New("claimed identity does not match the key's enrolled identity")
)

// ValidateEmail checks s is one bare RFC 5322 addr-spec (local@domain) of
// at most MaxEmailLen bytes of printable ASCII, spelled as net/mail reads
// it back: no display name, no angle brackets, no comments, no quoting
// that net/mail would spell otherwise, no spaces or control characters.
// One address has then one spelling, so that what is signed is what is
// shown and compared; ASCII only (an internationalized domain in its
// xn-- form), so that no look-alike letter or case folding (the Kelvin
// sign folds to k) makes two addresses compare or read the same.
func ValidateEmail(s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty", ErrBadEmail)
	}
	if len(s) > MaxEmailLen {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrBadEmail, len(s), MaxEmailLen)
	}
	for _, r := range s {
		if r > unicode.MaxASCII {
			return fmt.Errorf("%w: %q: not ASCII (write an internationalized domain in its xn-- form)", ErrBadEmail, truncate(s, 80))
		}
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == '<' || r == '>' || r == '"' || r == '(' || r == ')' || r == ',' || r == ';' {
			return fmt.Errorf("%w: %q: want a bare address such as alice@example.com (no display name, angle brackets, quotes, comments or spaces)", ErrBadEmail, truncate(s, 80))
		}
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrBadEmail, truncate(s, 80), err)
	}
	if a.Name != "" || a.Address != s {
		return fmt.Errorf("%w: %q: want the bare address %q", ErrBadEmail, truncate(s, 80), truncate(a.Address, 80))
	}
	if i := strings.LastIndexByte(s, '@'); i <= 0 || i == len(s)-1 {
		return fmt.Errorf("%w: %q: want local@domain", ErrBadEmail, truncate(s, 80))
	}
	return nil
}

// ValidateDisplayName checks a signer's display name as an enrolment or a
// key store records it: 1 to MaxNameLen bytes of UTF-8, without control
// characters and without leading or trailing space. (A statement's Name is
// only bounded, so that statements logged before this rule stay valid.)
func ValidateDisplayName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty name", ErrBadIdentity)
	case len(s) > MaxNameLen:
		return fmt.Errorf("%w: name of %d bytes, at most %d", ErrBadIdentity, len(s), MaxNameLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: name not UTF-8", ErrBadIdentity)
	case strings.TrimSpace(s) != s:
		return fmt.Errorf("%w: name %q has leading or trailing space", ErrBadIdentity, truncate(s, 80))
	}
	for _, r := range s {
		// Format characters (Unicode Cf: zero-width spaces and joiners,
		// bidirectional marks and overrides, soft hyphen, BOM, tags) are
		// invisible: "security\u200b-team" would read as another enrolled
		// name (TestRedteam3DisplayNameLookAlikes).
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("%w: name %q holds a control, invisible or bidirectional formatting character", ErrBadIdentity, truncate(s, 80))
		}
	}
	return nil
}

// Identity is who a signer is: a display name and an optional email. In a
// statement it is the signer's claim (Predicate.Name and Email); in a
// ledger's --signers file or a proxy policy it is an enrolment, which the
// file's owner vouches for.
type Identity struct {
	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
}

// Validate checks the identity: a valid display name and, when set, a
// valid email.
func (id Identity) Validate() error {
	if err := ValidateDisplayName(id.Name); err != nil {
		return err
	}
	if id.Email != "" {
		if err := ValidateEmail(id.Email); err != nil {
			return err
		}
	}
	return nil
}

// Claimed returns the identity a statement claims (its predicate's Name and
// Email), which may be empty.
func (s *Statement) Claimed() Identity {
	return Identity{Name: s.Predicate.Name, Email: s.Predicate.Email}
}

// IdentityMismatchError is a claim refused by CheckClaim: the key, what the
// statement claims and what the key is enrolled as.
type IdentityMismatchError struct {
	KeyID    string
	Claimed  Identity
	Enrolled Identity
}

func (e *IdentityMismatchError) Error() string {
	what := "name " + fmt.Sprintf("%q", truncate(e.Claimed.Name, 80))
	if e.Claimed.Name == "" || e.Claimed.Name == e.Enrolled.Name {
		what = "email " + fmt.Sprintf("%q", truncate(e.Claimed.Email, 80))
	}
	enrolled := fmt.Sprintf("%q", e.Enrolled.Name)
	if e.Enrolled.Email != "" {
		enrolled += fmt.Sprintf(" <%s>", e.Enrolled.Email)
	}
	return fmt.Sprintf("%v: key %s claims %s, but is enrolled as %s", ErrIdentityMismatch, e.KeyID, what, enrolled)
}

// Unwrap makes errors.Is(err, ErrIdentityMismatch) true.
func (e *IdentityMismatchError) Unwrap() error { return ErrIdentityMismatch }

// CheckClaim checks what a statement by keyID claims against the identity
// the key is enrolled with. A claim may leave out the name, the email or
// both (nothing is claimed then: the enrolment alone says who signed); what
// it does say must match: the name exactly, the email ignoring ASCII case. An
// email claimed by a key enrolled without one is refused.
func CheckClaim(keyID string, claimed, enrolled Identity) error {
	nameOK := claimed.Name == "" || claimed.Name == enrolled.Name
	emailOK := claimed.Email == "" || (enrolled.Email != "" && asciiEqualFold(claimed.Email, enrolled.Email))
	if nameOK && emailOK {
		return nil
	}
	return &IdentityMismatchError{KeyID: keyID, Claimed: claimed, Enrolled: enrolled}
}

// asciiEqualFold reports whether a and b are equal ignoring the case of
// ASCII letters only (strings.EqualFold also folds other letters: the
// Kelvin sign to k).
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// SignersFile is a ledger's enrolled identities (notarize-ledger
// --signers FILE in YAML), in the shape of a policy's signers: each
// display name with an optional email and the keys that speak for it.
//
//	signers:
//	  release-bot:
//	    email: release@example.com
//	    keys: [keys/release.pub]
//	  Alice Example:
//	    keys:
//	      - |
//	        -----BEGIN PUBLIC KEY-----
//	        …
type SignersFile struct {
	Signers map[string]SignerIdentity `yaml:"signers"`
}

// SignerIdentity is one enrolled signer of a SignersFile: its keys are
// references to PEM public keys (inline PEM, or file paths that the
// caller resolves, relative to the file), as a policy's signer keys are.
type SignerIdentity struct {
	Email string   `yaml:"email,omitempty"`
	Keys  []string `yaml:"keys"`
}

// ParseSignersFile decodes a YAML signers file, refusing unknown fields,
// more than one document and anything over MaxSignersFileSize, and
// validates it: at least one signer, each with a valid identity and 1 to
// MaxSignerKeys key references. That no key is enrolled under two names
// is checked once the keys are resolved (IdentitiesByKey).
func ParseSignersFile(b []byte) (*SignersFile, error) {
	if len(b) > MaxSignersFileSize {
		return nil, fmt.Errorf("%w: signers file of %d bytes, at most %d", ErrBadIdentity, len(b), MaxSignersFileSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f SignersFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty signers file", ErrBadIdentity)
		}
		return nil, fmt.Errorf("%w: %v", ErrBadIdentity, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: want exactly one YAML document", ErrBadIdentity)
	}
	if len(f.Signers) == 0 {
		return nil, fmt.Errorf("%w: no signers", ErrBadIdentity)
	}
	if len(f.Signers) > MaxPolicySigners {
		return nil, fmt.Errorf("%w: %d signers, at most %d", ErrBadIdentity, len(f.Signers), MaxPolicySigners)
	}
	for _, name := range f.Names() {
		s := f.Signers[name]
		if err := (Identity{Name: name, Email: s.Email}).Validate(); err != nil {
			return nil, fmt.Errorf("signer %q: %w", truncate(name, 80), err)
		}
		if len(s.Keys) == 0 || len(s.Keys) > MaxSignerKeys {
			return nil, fmt.Errorf("%w: signer %q has %d keys, want 1 to %d", ErrBadIdentity, truncate(name, 80), len(s.Keys), MaxSignerKeys)
		}
		for _, k := range s.Keys {
			if strings.TrimSpace(k) == "" || len(k) > maxKeyRefLen {
				return nil, fmt.Errorf("%w: signer %q: empty or oversized key reference", ErrBadIdentity, truncate(name, 80))
			}
		}
	}
	return &f, nil
}

// Names returns the file's signer names, sorted.
func (f *SignersFile) Names() []string {
	names := make([]string, 0, len(f.Signers))
	for n := range f.Signers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// IsInlineKey reports whether a key reference (of a policy or a signers
// file) is inline PEM rather than a file path.
func IsInlineKey(ref string) bool {
	return strings.HasPrefix(strings.TrimSpace(ref), "-----BEGIN")
}

// IdentitiesByKey maps each key ID to its signer's identity, given each
// signer's resolved key IDs (by signer name). A key under two names is an
// error: its statements would have two authors.
func (f *SignersFile) IdentitiesByKey(keyIDs map[string][]string) (map[string]Identity, error) {
	out := map[string]Identity{}
	for _, name := range f.Names() {
		for _, id := range keyIDs[name] {
			if prev, ok := out[id]; ok && prev.Name != name {
				return nil, fmt.Errorf("%w: key %s is enrolled as both %q and %q", ErrBadIdentity, id, prev.Name, name)
			}
			out[id] = Identity{Name: name, Email: f.Signers[name].Email}
		}
	}
	return out, nil
}
