package notarize

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// A key revocation is how a stolen signing key is taken out of the trust
// path (`docker notarize key revoke`). It is an ordinary statement:
//
//	subject:   sha256:<KeyID of the revoked key>   (name: informational)
//	predicate: kind "key", status "untrusted", attributes {"reason": ...}
//
// signed by the revoked key itself or by a revoker key that the verifier
// designates for it (a policy signer's revokers, or verify's --revoker). A
// revocation by any other key does not count.
//
// The revocation of key K that counts is the one at the LOWEST log index,
// R(K). Every statement by K at a log index greater than R(K) stops
// counting, whatever its signed timestamp says: the log index is assigned
// by the ledger and cannot be backdated, while the signer's clock (the
// statement's timestamp) is whatever the thief wants it to be. This
// includes K's own later statements about sha256:K, so a thief holding K
// cannot "un-revoke" it. Statements by K before R(K) still count (what was
// approved before the theft stays approved), and K's current statement
// about a digest is chosen among those only.

// KindKey is the predicate kind of a key revocation: the subject is a
// signer's public key, by its key ID.
const KindKey = "key"

// RevocationReasonAttribute is the predicate attribute that carries a
// revocation's free-text reason (informational, never interpreted).
const RevocationReasonAttribute = "reason"

// KeyRevocationDigest returns sha256:<keyID>, the subject digest of a
// revocation of keyID (a KeyID: 64 lowercase hex characters).
func KeyRevocationDigest(keyID string) (Digest, error) {
	d, err := ParseDigest("sha256:" + keyID)
	if err != nil {
		return "", fmt.Errorf("key ID %q: want 64 lowercase hex characters: %w", truncate(keyID, 80), err)
	}
	return d, nil
}

// NewKeyRevocation returns the statement that revokes keyID, dated at:
// subject sha256:<keyID> with the informational subject name name (e.g.
// the key's name in the store), kind "key", status untrusted, the signer's
// display name signer, and reason as the "reason" attribute when not empty.
func NewKeyRevocation(keyID, name, signer, reason string, at time.Time) (*Statement, error) {
	d, err := KeyRevocationDigest(keyID)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadStatement, err)
	}
	p := Predicate{Status: StatusUntrusted, Kind: KindKey, Name: signer, Timestamp: at.UTC()}
	if reason != "" {
		p.Attributes = map[string]string{RevocationReasonAttribute: reason}
	}
	st := NewStatement(d, name, p)
	if err := st.Validate(); err != nil {
		return nil, err
	}
	return st, nil
}

// IsKeyRevocation reports whether st is a key revocation: kind "key" and
// status untrusted. Who signed it, and so whether it counts, is for
// FindKeyRevocation.
func IsKeyRevocation(st *Statement) bool {
	return st != nil && st.Predicate.Kind == KindKey && st.Predicate.Status == StatusUntrusted
}

// validateKeyPredicate checks the rule of kind "key": the only status is
// untrusted (a key is revoked, never re-trusted: a revocation is final).
func validateKeyPredicate(p Predicate) error {
	if p.Kind == KindKey && p.Status != StatusUntrusted {
		return fmt.Errorf("kind %q allows only status %q (a key revocation is final), got %q", KindKey, StatusUntrusted, truncate(string(p.Status), 40))
	}
	return nil
}

// KeyRevocation is the revocation that counts for a key: the one at the
// lowest log index signed by the key itself or by one of its revokers.
type KeyRevocation struct {
	// KeyID is the revoked key.
	KeyID string
	// Index is R: the log index of the revocation. The key's statements
	// at greater indexes do not count.
	Index uint64
	// By is the key ID that signed the revocation: KeyID itself or a
	// revoker's.
	By string
	// Timestamp is the revocation's signed timestamp (informational: only
	// Index decides).
	Timestamp time.Time
	// Reason is the revocation's reason attribute, if any.
	Reason string
}

// FindKeyRevocation returns keyID's counting revocation among records (any
// records; those that are not revocations of keyID are ignored): the key
// revocation about sha256:<keyID> at the lowest log index signed by keyID
// itself or by one of revokers. A revocation signed by any other key does
// not count, nor does anything signed after the lowest one (a thief's
// "trusted" about sha256:<keyID> included).
func FindKeyRevocation(records []Record, keyID string, revokers []string) (KeyRevocation, bool) {
	d, err := KeyRevocationDigest(keyID)
	if err != nil {
		return KeyRevocation{}, false
	}
	var best KeyRevocation
	found := false
	for _, r := range records {
		if r.Statement == nil || r.Statement.Digest() != d || !IsKeyRevocation(r.Statement) {
			continue
		}
		if r.KeyID != keyID && !slices.Contains(revokers, r.KeyID) {
			continue
		}
		if found && r.Index >= best.Index {
			continue
		}
		best, found = KeyRevocation{
			KeyID: keyID, Index: r.Index, By: r.KeyID,
			Timestamp: r.Statement.Predicate.Timestamp,
			Reason:    r.Statement.Predicate.Attributes[RevocationReasonAttribute],
		}, true
	}
	return best, found
}

// Revocations maps a revoked key ID to its counting revocation. The nil
// map revokes nothing.
type Revocations map[string]KeyRevocation

// Counts reports whether record r counts under rv: its key is not
// revoked, or r comes before the key's revocation in the log.
func (rv Revocations) Counts(r Record) bool {
	k, revoked := rv[r.KeyID]
	return !revoked || r.Index < k.Index
}

// Filter returns the records that count under rv, in their order.
func (rv Revocations) Filter(records []Record) []Record {
	if len(rv) == 0 {
		return records
	}
	out := make([]Record, 0, len(records))
	for _, r := range records {
		if rv.Counts(r) {
			out = append(out, r)
		}
	}
	return out
}

// Of returns the revocations of keyIDs (each once), sorted by key ID.
func (rv Revocations) Of(keyIDs []string) []KeyRevocation {
	var out []KeyRevocation
	seen := map[string]bool{}
	for _, k := range keyIDs {
		if r, ok := rv[k]; ok && !seen[k] {
			seen[k] = true
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].KeyID < out[j].KeyID })
	return out
}

// revokedNote explains revocations in a reason: "; key 0123456789ab
// (NAME) revoked at log index R: its statements after it do not count",
// one clause per key.
func revokedNote(revoked []KeyRevocation, name func(string) string) string {
	var b strings.Builder
	for _, r := range revoked {
		fmt.Fprintf(&b, "; key %s (%s) revoked at log index %d: its statements after it do not count", truncate(r.KeyID, 12), name(r.KeyID), r.Index)
	}
	return b.String()
}
