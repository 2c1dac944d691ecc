package notarize

import (
	"fmt"
	"sort"
	"strings"
)

// Verdict is the answer about a digest under a set of accepted signers, or
// Unverifiable when no answer could be reached. It is not an exit code:
// the CLI maps verdicts to its exit codes (package plugin).
type Verdict int

// The verdicts.
const (
	Trusted     Verdict = 0 // an accepted signer says trusted and none says otherwise
	Untrusted   Verdict = 1 // an accepted signer's current status is untrusted
	Unknown     Verdict = 2 // no statement by any accepted signer
	Unsupported Verdict = 3 // an accepted signer's current status is unsupported (and none untrusted)
	// Unverifiable: no verdict could be reached, because the statements
	// could not be verified (a stale replica, a forked ledger, a bad
	// proof). It is never served under an enforcing rule.
	Unverifiable Verdict = 4
)

// ExitCouldNotVerify is the CLI exit code when no verdict could be reached
// (ledger unreachable, bad proof, forked ledger, bad signature).
//
// Deprecated: the CLI's exit codes belong to package plugin.
const ExitCouldNotVerify = 4

// String returns the verdict in capitals, as printed by the CLI and logged
// by the proxy.
func (v Verdict) String() string {
	switch v {
	case Trusted:
		return "TRUSTED"
	case Untrusted:
		return "UNTRUSTED"
	case Unknown:
		return "UNKNOWN"
	case Unsupported:
		return "UNSUPPORTED"
	case Unverifiable:
		return "UNVERIFIABLE"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// ExitCode returns the CLI exit code for v.
//
// Deprecated: the CLI's exit codes belong to package plugin.
func (v Verdict) ExitCode() int { return int(v) }

// Record is a verified log entry: its index in the ledger, the signer's key
// ID and the statement.
type Record struct {
	Index     uint64
	KeyID     string
	Statement *Statement
}

// Status returns the record's status.
func (r Record) Status() Status { return r.Statement.Predicate.Status }

// newer reports whether a is more recent than b: greater signed timestamp,
// ties broken by the greater log index.
func newer(a, b Record) bool {
	ta, tb := a.Statement.Predicate.Timestamp, b.Statement.Predicate.Timestamp
	if !ta.Equal(tb) {
		return ta.After(tb)
	}
	return a.Index > b.Index
}

// Current returns the current statement of keyID about digest d among records:
// the one with the greatest signed timestamp, ties broken by log index. A
// replayed older "trusted" therefore cannot undo a later "untrusted".
func Current(records []Record, d Digest, keyID string) (Record, bool) {
	var best Record
	found := false
	for _, r := range records {
		if r.KeyID != keyID || r.Statement.Digest() != d {
			continue
		}
		if !found || newer(r, best) {
			best, found = r, true
		}
	}
	return best, found
}

// SignerStatus is one accepted signer's current statement about a digest.
type SignerStatus struct {
	KeyID  string
	Record Record
}

// Decision is a verdict with the statements that led to it.
type Decision struct {
	Digest  Digest
	Verdict Verdict
	// Deciding is the statement that decided the verdict; nil for Unknown.
	Deciding *Record
	// Signers holds the current statement of each accepted signer that made one,
	// sorted by key ID.
	Signers []SignerStatus
	// Revoked holds the revocations of accepted keys (DecideWithRevocations),
	// sorted by key ID: those keys' statements after their revocation did
	// not count.
	Revoked []KeyRevocation
}

// Reason returns a one-line explanation, naming the signer with name(keyID).
// A revoked accepted key is named with the index of its revocation.
func (d Decision) Reason(name func(keyID string) string) string {
	if d.Deciding == nil {
		return fmt.Sprintf("%s: no statement from an accepted signer", d.Digest) + revokedNote(d.Revoked, name)
	}
	p := d.Deciding.Statement.Predicate
	return fmt.Sprintf("%s is %s by %s (%s)", d.Digest, d.Verdict, name(d.Deciding.KeyID), p.Timestamp.UTC().Format("2006-01-02T15:04:05Z")) + revokedNote(d.Revoked, name)
}

// Decide folds records into a verdict for digest d under the accepted signer
// key IDs: UNTRUSTED if any accepted signer's current status is untrusted,
// else UNSUPPORTED if any is unsupported, else TRUSTED if any is trusted,
// else UNKNOWN. Records by other keys or about other digests are ignored.
// It knows of no key revocation: see DecideWithRevocations.
func Decide(records []Record, d Digest, accepted []string) Decision {
	return DecideWithRevocations(records, d, accepted, nil)
}

// DecideWithRevocations is Decide under the key revocations revs: a
// revoked key's records at or after its revocation's log index do not
// count, whatever their signed timestamps, and its current statement is
// chosen among the records before it. For a revoked key, records must
// hold all its statements about d before the revocation (a complete
// lookup by that key), not only the ledger's current one, which may be a
// thief's later statement. The decision lists the accepted keys' revocations.
func DecideWithRevocations(records []Record, d Digest, accepted []string, revs Revocations) Decision {
	dec := decide(revs.Filter(records), d, accepted)
	dec.Revoked = revs.Of(accepted)
	return dec
}

func decide(records []Record, d Digest, accepted []string) Decision {
	dec := Decision{Digest: d, Verdict: Unknown}
	seen := map[string]bool{}
	for _, k := range accepted {
		if seen[k] {
			continue
		}
		seen[k] = true
		if r, ok := Current(records, d, k); ok {
			dec.Signers = append(dec.Signers, SignerStatus{KeyID: k, Record: r})
		}
	}
	sort.Slice(dec.Signers, func(i, j int) bool { return strings.Compare(dec.Signers[i].KeyID, dec.Signers[j].KeyID) < 0 })
	for _, want := range []struct {
		s Status
		v Verdict
	}{{StatusUntrusted, Untrusted}, {StatusUnsupported, Unsupported}, {StatusTrusted, Trusted}} {
		for i := range dec.Signers {
			if dec.Signers[i].Record.Status() == want.s {
				r := dec.Signers[i].Record
				dec.Verdict, dec.Deciding = want.v, &r
				return dec
			}
		}
	}
	return dec
}
