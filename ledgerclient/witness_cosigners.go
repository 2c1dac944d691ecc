package ledgerclient

import (
	"errors"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// WitnessCosignature is what one checkpoint shows of one witness of a
// policy: when it cosigned, or that it did not (or that a line under its
// key does not verify).
type WitnessCosignature struct {
	// Name is the witness as the policy names it ("NAME (key name)").
	Name string
	// CosignedAt is the timestamp of its verified cosignature/v1; zero when
	// the checkpoint holds none.
	CosignedAt time.Time
	// Forged is set when the checkpoint holds a line under the witness's
	// name and key hash that does not verify.
	Forged bool
}

// Cosignatures reports, for every witness of the policy in the policy's
// order, its verified cosignature on the signed checkpoint note raw, for a
// dashboard: which witnesses vouched for the checkpoint and when. It
// decides nothing; Witnessed is the check that counts.
func (p *WitnessPolicy) Cosignatures(raw []byte) []WitnessCosignature {
	out := make([]WitnessCosignature, len(p.witnesses))
	for i, w := range p.witnesses {
		out[i].Name = w.name()
		t, err := cosignedAt(raw, w.key)
		if err == nil {
			out[i].CosignedAt = t
			continue
		}
		var inv *note.InvalidSignatureError
		out[i].Forged = errors.As(err, &inv)
	}
	return out
}

// Quorum returns how many of the policy's top-level components must be
// satisfied, and how many there are ("2 of 3").
func (p *WitnessPolicy) Quorum() (n, of int) {
	return p.group.N, len(p.group.Components)
}
