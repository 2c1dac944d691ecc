package ledgerclient

import (
	"encoding/binary"
	"sync"

	"golang.org/x/mod/sumdb/note"
)

// maxRememberedSigs bounds the signatures the process remembers: past it
// the memory starts over. A client sees a handful of distinct notes at a
// time (the stored checkpoint, the ledger's latest, a map root or two).
const maxRememberedSigs = 64

// accepted holds the (verifier, message, signature) triples that a ledger or
// witness verifier of this process accepted.
var accepted struct {
	mu   sync.Mutex
	sigs map[string]struct{}
}

// memoVerifier is the ledger's note verifier, or a witness's cosignature/v1
// verifier, remembering the signatures it accepted. A verify checks the
// same notes several times: the stored checkpoint before each lookup and
// again under the state lock, the same checkpoint in the statement lookup's
// answer and in the revocation lookup's, the same map root in both, and
// with a witness policy the same cosignatures in each answer, once by the
// client and once by Tessera's quorum (issue 14: a verify made eight
// Ed25519 checks of two distinct notes, ~80 µs each here, and the first in a
// process also builds the curve's tables, ~1 ms; a 2-of-3 witness policy
// added about ten more). Both kinds of verification are a pure function of
// the verifier's kind and key, the message and the signature, and all of
// them are in what is remembered, so a remembered acceptance is exactly
// what checking again would answer. A refusal is not remembered: it is
// checked again, and refused again.
type memoVerifier struct {
	note.Verifier
	// id names the verifier exactly: its kind and its whole key
	// (noteVerifier or cosignatureV1, then the verifier key text).
	id string
}

// noteVerifier qualifies a ledger key in the process's memory of accepted
// signatures: a note verifier of the key (note.NewVerifier).
const noteVerifier = "note "

// newMemoVerifier wraps v, whose kind and key id names exactly.
func newMemoVerifier(v note.Verifier, id string) *memoVerifier {
	return &memoVerifier{Verifier: v, id: id}
}

// Verify reports whether sig is the key's signature of msg.
func (m *memoVerifier) Verify(msg, sig []byte) bool {
	// Each part but the last after its length: no two triples share a key.
	k := make([]byte, 0, 2*binary.MaxVarintLen64+len(m.id)+len(sig)+len(msg))
	k = binary.AppendUvarint(k, uint64(len(m.id)))
	k = append(k, m.id...)
	k = binary.AppendUvarint(k, uint64(len(sig)))
	k = append(append(k, sig...), msg...)
	accepted.mu.Lock()
	_, seen := accepted.sigs[string(k)]
	accepted.mu.Unlock()
	if seen {
		return true
	}
	if !m.Verifier.Verify(msg, sig) {
		return false
	}
	accepted.mu.Lock()
	if accepted.sigs == nil || len(accepted.sigs) >= maxRememberedSigs {
		accepted.sigs = make(map[string]struct{})
	}
	accepted.sigs[string(k)] = struct{}{}
	accepted.mu.Unlock()
	return true
}
