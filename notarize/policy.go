package notarize

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A trust policy says, per repository, whose statements count and what
// happens to a digest that is not trusted. It is a YAML document:
//
//	signers:
//	  release: {keys: [keys/release.pub]}   # PEM public keys; the caller resolves the references
//	  ci: {keys: [keys/ci.pub], revokers: [keys/security.pub]} # keys that may revoke ci's keys
//	rules:                                  # first match wins; patterns over "UPSTREAM/REPO"
//	  - match: "docker.io/library/**"
//	    require: [release]                  # trusted if one says TRUSTED and none UNTRUSTED/UNSUPPORTED
//	    mode: enforce                       # enforce (default) | audit | off
//
// Patterns are globs over slash-separated segments: "*" within a segment
// matches any characters but "/", a whole segment "**" matches any number
// of segments (zero included). Nothing else is special.
//
// The core does no I/O: key references are opaque strings here. The caller
// loads the keys and binds them with Policy.Evaluator.

// Limits on a policy document. ParsePolicy refuses anything larger.
const (
	MaxPolicySize    = 1 << 20
	MaxPolicyRules   = 1024
	MaxPolicySigners = 256
	MaxSignerKeys    = 64
	MaxPatternLen    = 512
	maxKeyRefLen     = 16 << 10
)

// ErrBadPolicy is returned (wrapped) for a policy that does not parse or
// does not validate.
var ErrBadPolicy = errors.New("bad policy")

// Mode is what a rule does with a digest that is not trusted.
type Mode string

// The rule modes.
const (
	// ModeEnforce serves only trusted digests. It is the default.
	ModeEnforce Mode = "enforce"
	// ModeAudit serves everything and records the decision.
	ModeAudit Mode = "audit"
	// ModeOff serves everything; the decision is still computed.
	ModeOff Mode = "off"
)

// Policy is a trust policy document.
type Policy struct {
	// Version is the document version: 0 (absent) or 1.
	Version int `yaml:"version,omitempty"`
	// Signers names sets of public keys.
	Signers map[string]PolicySigner `yaml:"signers"`
	// Rules are tried in order; the first whose Match matches applies.
	Rules []Rule `yaml:"rules"`
	// Access says which users may pull which targets (see AccessRule);
	// empty leaves pulls to the proxy's authentication alone.
	Access []AccessRule `yaml:"access,omitempty"`
}

// PolicySigner is a named signer: one or more public keys, any of which
// speaks for it.
type PolicySigner struct {
	// Keys are references to PEM public keys (for the proxy: file paths
	// relative to the policy file, or inline PEM).
	Keys []string `yaml:"keys"`
	// Revokers are references to PEM public keys (like Keys) that may
	// revoke this signer's keys (`docker notarize key revoke --revoker`),
	// besides each key itself. A revocation by any other key does not
	// count. Optional.
	Revokers []string `yaml:"revokers,omitempty"`
	// Email is the signer's email address (a bare addr-spec, see
	// ValidateEmail), shown with its name; optional. Like the name, the
	// policy's author vouches for it, not the statements.
	Email string `yaml:"email,omitempty"`
}

// Rule applies to the targets ("UPSTREAM/REPO") its Match pattern matches.
type Rule struct {
	// Match is a glob over "UPSTREAM/REPO".
	Match string `yaml:"match"`
	// Require lists the signer names whose statements count.
	Require []string `yaml:"require,omitempty"`
	// Mode is enforce, audit or off; empty means enforce.
	Mode Mode `yaml:"mode,omitempty"`
}

// EffectiveMode returns the rule's mode, ModeEnforce when it is empty.
func (r Rule) EffectiveMode() Mode {
	if r.Mode == "" {
		return ModeEnforce
	}
	return r.Mode
}

var signerNameRE = NameRule{Max: 64, Extra: "._-"} // ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$

// ParsePolicy decodes a YAML policy, refusing unknown fields, duplicate keys,
// more than one document and anything over MaxPolicySize, and validates it.
func ParsePolicy(b []byte) (*Policy, error) {
	if len(b) > MaxPolicySize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadPolicy, len(b), MaxPolicySize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var p Policy
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty document", ErrBadPolicy)
		}
		return nil, fmt.Errorf("%w: %v", ErrBadPolicy, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: want exactly one YAML document", ErrBadPolicy)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Validate checks the policy: a known version, well-formed signer names each
// with at least one key, at least one rule, valid patterns and modes, and
// every required signer defined. A rule other than "off" must require at
// least one signer.
func (p *Policy) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadPolicy, fmt.Sprintf(format, a...))
	}
	if p.Version != 0 && p.Version != 1 {
		return bad("version %d, want 1", p.Version)
	}
	if len(p.Signers) > MaxPolicySigners {
		return bad("%d signers, at most %d", len(p.Signers), MaxPolicySigners)
	}
	for _, name := range sortedKeys(p.Signers) {
		s := p.Signers[name]
		if !signerNameRE.MatchString(name) {
			return bad("signer name %q: want letters, digits, '.', '_' or '-' (at most 64)", truncate(name, 80))
		}
		if len(s.Keys) == 0 {
			return bad("signer %q has no keys", name)
		}
		if s.Email != "" {
			if err := ValidateEmail(s.Email); err != nil {
				return bad("signer %q: %v", name, err)
			}
		}
		if len(s.Keys) > MaxSignerKeys {
			return bad("signer %q has %d keys, at most %d", name, len(s.Keys), MaxSignerKeys)
		}
		for _, k := range s.Keys {
			if strings.TrimSpace(k) == "" || len(k) > maxKeyRefLen {
				return bad("signer %q: empty or oversized key reference", name)
			}
		}
		if len(s.Revokers) > MaxSignerKeys {
			return bad("signer %q has %d revokers, at most %d", name, len(s.Revokers), MaxSignerKeys)
		}
		for _, k := range s.Revokers {
			if strings.TrimSpace(k) == "" || len(k) > maxKeyRefLen {
				return bad("signer %q: empty or oversized revoker key reference", name)
			}
		}
	}
	if len(p.Rules) == 0 {
		return bad("no rules: nothing would be served")
	}
	if len(p.Rules) > MaxPolicyRules {
		return bad("%d rules, at most %d", len(p.Rules), MaxPolicyRules)
	}
	for i, r := range p.Rules {
		if err := validatePattern(r.Match); err != nil {
			return bad("rule %d: match %q: %v", i+1, truncate(r.Match, 80), err)
		}
		switch r.EffectiveMode() {
		case ModeEnforce, ModeAudit, ModeOff:
		default:
			return bad("rule %d (%s): mode %q, want enforce, audit or off", i+1, r.Match, truncate(string(r.Mode), 40))
		}
		if len(r.Require) == 0 && r.EffectiveMode() != ModeOff {
			return bad("rule %d (%s): require names no signer", i+1, r.Match)
		}
		for _, name := range r.Require {
			if _, ok := p.Signers[name]; !ok {
				return bad("rule %d (%s): signer %q is not defined under signers", i+1, r.Match, truncate(name, 80))
			}
		}
	}
	return validateAccess(p.Access)
}

// Match returns the first rule whose pattern matches target ("UPSTREAM/REPO")
// and its position, or -1 and false when none does.
func (p *Policy) Match(target string) (int, Rule, bool) {
	for i, r := range p.Rules {
		if globMatch(r.Match, target) {
			return i, r, true
		}
	}
	return -1, Rule{}, false
}

// validatePattern checks a rule pattern: non-empty segments of letters,
// digits, '.', '_', '-', ':' and '*', where "**" stands only as a whole
// segment.
func validatePattern(pat string) error {
	if pat == "" {
		return errors.New("empty pattern")
	}
	if len(pat) > MaxPatternLen {
		return fmt.Errorf("longer than %d characters", MaxPatternLen)
	}
	for _, seg := range strings.Split(pat, "/") {
		if seg == "" {
			return errors.New("empty path segment")
		}
		if seg != "**" && strings.Contains(seg, "**") {
			return errors.New(`"**" must be a whole path segment`)
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._-:*", c) >= 0) {
				return fmt.Errorf("character %q not allowed", c)
			}
		}
	}
	return nil
}

// globMatch reports whether target matches pat (see the package comment on
// policies). It runs in time proportional to the product of the segment
// counts, whatever the pattern.
func globMatch(pat, target string) bool {
	ps, ts := strings.Split(pat, "/"), strings.Split(target, "/")
	// m[i][j]: ps[i:] matches ts[j:].
	m := make([][]bool, len(ps)+1)
	for i := range m {
		m[i] = make([]bool, len(ts)+1)
	}
	m[len(ps)][len(ts)] = true
	for i := len(ps) - 1; i >= 0; i-- {
		for j := len(ts); j >= 0; j-- {
			if ps[i] == "**" {
				m[i][j] = m[i+1][j] || j < len(ts) && m[i][j+1]
				continue
			}
			m[i][j] = j < len(ts) && segmentMatch(ps[i], ts[j]) && m[i+1][j+1]
		}
	}
	return m[0][0]
}

// segmentMatch matches one segment where '*' stands for any run of
// characters (a segment never holds '/').
func segmentMatch(pat, s string) bool {
	// Classic linear wildcard matching with one backtrack point.
	p, i, star, mark := 0, 0, -1, 0
	for i < len(s) {
		switch {
		case p < len(pat) && pat[p] != '*' && pat[p] == s[i]:
			p++
			i++
		case p < len(pat) && pat[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pat) && pat[p] == '*' {
		p++
	}
	return p == len(pat)
}

// Evaluator is a policy whose signers are bound to public keys: it turns
// records about a digest into an Evaluation. It is immutable and safe for
// concurrent use.
type Evaluator struct {
	policy   *Policy
	keyIDs   map[string][]string // signer name → key IDs
	names    map[string]string   // key ID → signer name (the first, by name)
	revokers map[string][]string // key ID → key IDs that may revoke it (its signers' revokers)
}

// Evaluator binds the policy's signer names to keys: keys[name] holds the
// public keys loaded for Signers[name].Keys. Every signer must have at least
// one key. A policy whose signers name revokers needs
// EvaluatorWithRevokers: here it is an error, never revokers left out.
func (p *Policy) Evaluator(keys map[string][]crypto.PublicKey) (*Evaluator, error) {
	return p.EvaluatorWithRevokers(keys, nil)
}

// EvaluatorWithRevokers is Evaluator with revokers[name] holding the public
// keys loaded for Signers[name].Revokers: each signer that names revokers
// must have them loaded, and no other.
func (p *Policy) EvaluatorWithRevokers(keys, revokers map[string][]crypto.PublicKey) (*Evaluator, error) {
	ev, err := p.bindKeys(keys)
	if err != nil {
		return nil, err
	}
	ev.revokers = map[string][]string{}
	for _, name := range sortedKeys(p.Signers) {
		if len(p.Signers[name].Revokers) == 0 {
			continue
		}
		pubs := revokers[name]
		if len(pubs) == 0 {
			return nil, fmt.Errorf("%w: signer %q names revokers, but none were loaded", ErrBadPolicy, name)
		}
		var ids []string
		for _, pub := range pubs {
			id, err := KeyID(pub)
			if err != nil {
				return nil, fmt.Errorf("%w: signer %q: revoker: %v", ErrBadPolicy, name, err)
			}
			ids = append(ids, id)
		}
		for _, k := range ev.keyIDs[name] {
			ev.revokers[k] = append(ev.revokers[k], ids...)
		}
	}
	for name, pubs := range revokers {
		if s, ok := p.Signers[name]; !ok || len(s.Revokers) == 0 && len(pubs) > 0 {
			return nil, fmt.Errorf("%w: revoker keys given for signer %q, which names no revokers", ErrBadPolicy, name)
		}
	}
	for k, ids := range ev.revokers {
		slices.Sort(ids)
		ev.revokers[k] = slices.Compact(ids)
	}
	return ev, nil
}

// bindKeys binds the signer names to keys (see Evaluator).
func (p *Policy) bindKeys(keys map[string][]crypto.PublicKey) (*Evaluator, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	ev := &Evaluator{policy: p, keyIDs: map[string][]string{}, names: map[string]string{}}
	for _, name := range sortedKeys(p.Signers) {
		pubs := keys[name]
		if len(pubs) == 0 {
			return nil, fmt.Errorf("%w: signer %q has no loaded keys", ErrBadPolicy, name)
		}
		for _, pub := range pubs {
			id, err := KeyID(pub)
			if err != nil {
				return nil, fmt.Errorf("%w: signer %q: %v", ErrBadPolicy, name, err)
			}
			ev.keyIDs[name] = append(ev.keyIDs[name], id)
			if _, ok := ev.names[id]; !ok {
				ev.names[id] = name
			}
		}
	}
	for name := range keys {
		if _, ok := p.Signers[name]; !ok {
			return nil, fmt.Errorf("%w: keys given for undefined signer %q", ErrBadPolicy, name)
		}
	}
	return ev, nil
}

// Policy returns the policy the evaluator was built from. Do not modify it.
func (e *Evaluator) Policy() *Policy { return e.policy }

// SignerName returns the policy's name for a key ID, or a short key ID when
// no signer of the policy holds that key.
func (e *Evaluator) SignerName(keyID string) string {
	if n, ok := e.names[keyID]; ok {
		return n
	}
	if len(keyID) > 12 {
		return "key " + keyID[:12]
	}
	return "key " + keyID
}

// Revokers returns the key IDs that may revoke keyID besides itself: the
// revokers of every policy signer that holds keyID.
func (e *Evaluator) Revokers(keyID string) []string { return slices.Clone(e.revokers[keyID]) }

// Keys returns the key IDs of every policy signer, sorted, each once.
func (e *Evaluator) Keys() []string {
	ids := sortedKeys(e.names)
	return ids
}

// Revocations returns the counting revocation of each policy key found
// among records (FindKeyRevocation with the key's revokers): records are
// the verified records about the keys' revocation digests
// (KeyRevocationDigest), all of them, from a complete source.
func (e *Evaluator) Revocations(records []Record) Revocations {
	rv := Revocations{}
	for id := range e.names {
		if r, ok := FindKeyRevocation(records, id, e.revokers[id]); ok {
			rv[id] = r
		}
	}
	return rv
}

// AcceptedKeys returns the key IDs of the signers rule requires.
func (e *Evaluator) AcceptedKeys(r Rule) []string {
	var ids []string
	for _, name := range r.Require {
		ids = append(ids, e.keyIDs[name]...)
	}
	return ids
}

// Parent is an image index that lists the digest being evaluated, with the
// records about the index itself. The caller names as parents only
// documents that ClassifyManifest read as an index (KindIndex): the bytes
// served are an index, whatever their statements say.
type Parent struct {
	Digest  Digest
	Records []Record
}

// Evaluation is the outcome of applying the policy to one digest at one
// target.
type Evaluation struct {
	// Target is "UPSTREAM/REPO".
	Target string
	// Digest is the digest evaluated.
	Digest Digest
	// RuleIndex is the position of the rule that applied, -1 when none did.
	RuleIndex int
	// Rule is the rule that applied (zero when none did).
	Rule Rule
	// Mode is the applied rule's effective mode (enforce when none applied).
	Mode Mode
	// Decision is the verdict from the statements about Digest itself.
	Decision Decision
	// Via is the decision about a trusted index that lists Digest, when the
	// digest has no statement of its own and the trust comes from it.
	Via *Decision
	// Verdict is the effective verdict: Decision's, or Trusted through Via.
	Verdict Verdict
	// Allow says whether the content may be served: the verdict is Trusted,
	// or the mode is audit or off.
	Allow bool
	// Err says why the verdict is Unverifiable; nil otherwise.
	Err error

	names func(string) string
}

// Evaluate applies the policy to digest d at target ("UPSTREAM/REPO") given
// the verified records about d and the image indexes known to list d. Only
// records by signers the matching rule requires count. A digest with no
// statement of its own is trusted when one of its parents is trusted by a
// statement that says it is an index (kind "index" or an index media type);
// an explicit UNTRUSTED or UNSUPPORTED on d is never overridden by a parent.
// With no matching rule, nothing is allowed. It knows of no key
// revocation: see EvaluateWithRevocations.
func (e *Evaluator) Evaluate(target string, d Digest, records []Record, parents []Parent) Evaluation {
	return e.EvaluateWithRevocations(target, d, records, parents, nil)
}

// EvaluateWithRevocations is Evaluate under the key revocations revs (see
// Evaluator.Revocations and DecideWithRevocations): a revoked key's
// statements after its revocation count neither about d nor about its
// parents, and records must hold all of the key's statements before it.
func (e *Evaluator) EvaluateWithRevocations(target string, d Digest, records []Record, parents []Parent, revs Revocations) Evaluation {
	ev := Evaluation{Target: target, Digest: d, RuleIndex: -1, Mode: ModeEnforce, Verdict: Unknown,
		Decision: Decision{Digest: d, Verdict: Unknown}, names: e.SignerName}
	i, rule, ok := e.policy.Match(target)
	if !ok {
		return ev
	}
	ev.RuleIndex, ev.Rule, ev.Mode = i, rule, rule.EffectiveMode()
	accepted := e.AcceptedKeys(rule)
	ev.Decision = DecideWithRevocations(records, d, accepted, revs)
	ev.Verdict = ev.Decision.Verdict
	if ev.Verdict == Unknown {
		for _, p := range parents {
			pd := DecideWithRevocations(p.Records, p.Digest, accepted, revs)
			// Trust covers what an index lists only when the statement that
			// decided it says it is an index: one signed as an image
			// manifest vouches for those bytes alone, even if they also
			// read as an index (CVE-2021-41190).
			if pd.Verdict == Trusted && saysIndex(pd.Deciding.Statement.Predicate) {
				ev.Via, ev.Verdict = &pd, Trusted
				break
			}
		}
	}
	ev.Allow = ev.Verdict == Trusted || ev.Mode != ModeEnforce
	return ev
}

// Unverifiable is the evaluation of digest d at target when the statements
// about it could not be verified (err says why): the verdict is
// Unverifiable, which an enforcing rule never serves (fail closed) and an
// audit or off rule serves and reports. With no matching rule, nothing is
// allowed.
func (e *Evaluator) Unverifiable(target string, d Digest, err error) Evaluation {
	ev := Evaluation{Target: target, Digest: d, RuleIndex: -1, Mode: ModeEnforce, Verdict: Unverifiable,
		Decision: Decision{Digest: d, Verdict: Unverifiable}, Err: err, names: e.SignerName}
	if i, rule, ok := e.policy.Match(target); ok {
		ev.RuleIndex, ev.Rule, ev.Mode = i, rule, rule.EffectiveMode()
		ev.Allow = ev.Mode != ModeEnforce
	}
	return ev
}

// Signer returns the policy name of the signer whose statement decided the
// verdict (through the index for a trusted child), or "" when none did.
func (ev Evaluation) Signer() string {
	d := ev.Decision
	if ev.Via != nil {
		d = *ev.Via
	}
	if d.Deciding == nil || ev.names == nil {
		return ""
	}
	return ev.names(d.Deciding.KeyID)
}

// Reason explains the verdict in one line, naming signers by their policy
// names, e.g. "sha256:… is UNTRUSTED by release (2026-…)" or
// "sha256:… is UNKNOWN: no statement from release".
func (ev Evaluation) Reason() string {
	names := ev.names
	if names == nil {
		names = func(id string) string { return id }
	}
	switch {
	case ev.Verdict == Unverifiable:
		return fmt.Sprintf("%s cannot be verified: %v", ev.Digest, ev.Err)
	case ev.RuleIndex < 0:
		return fmt.Sprintf("%s: no policy rule matches %s", ev.Digest, ev.Target)
	case ev.Via != nil:
		return fmt.Sprintf("%s is TRUSTED as a manifest listed by index %s", ev.Digest, ev.Via.Reason(names))
	case ev.Decision.Deciding == nil:
		if len(ev.Rule.Require) == 0 {
			return fmt.Sprintf("%s is UNKNOWN: the rule for %s requires no signer", ev.Digest, ev.Rule.Match)
		}
		return fmt.Sprintf("%s is UNKNOWN: no statement from %s", ev.Digest, strings.Join(ev.Rule.Require, ", ")) + revokedNote(ev.Decision.Revoked, names)
	}
	return ev.Decision.Reason(names)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
