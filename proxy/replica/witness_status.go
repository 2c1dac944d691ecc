package replica

import (
	"time"

	"github.com/notarize/docker-notarize/ledgerclient"
)

// WitnessHealth is what the replica knows of the witnesses of its witness
// policy, for the dashboard: the cosignatures on the last verified
// checkpoint and the quorum's age against MaxStaleness.
type WitnessHealth struct {
	// Policy is false when the replica has no witness policy (the rest is
	// then empty).
	Policy bool
	// QuorumN of QuorumOf top-level policy components must cosign.
	QuorumN, QuorumOf int
	// CheckpointSize is the size of the last verified checkpoint.
	CheckpointSize uint64
	// QuorumAt is when the newest verified checkpoint's quorum was completed
	// (Status.WitnessedAt; zero: none yet).
	QuorumAt time.Time
	// MaxStaleness is the age past which the replica fails closed.
	MaxStaleness time.Duration
	// Witnesses are the policy's witnesses with their cosignatures on the
	// last verified checkpoint.
	Witnesses []ledgerclient.WitnessCosignature
}

// Witnesses reports the witness policy's witnesses and their cosignatures
// on the last verified checkpoint.
func (r *Replica) Witnesses() WitnessHealth {
	s := r.Status()
	h := WitnessHealth{CheckpointSize: s.CheckpointSize, QuorumAt: s.WitnessedAt, MaxStaleness: r.cfg.MaxStaleness}
	p := r.cfg.Witnesses
	if p == nil {
		return h
	}
	h.Policy = true
	h.QuorumN, h.QuorumOf = p.Quorum()
	h.Witnesses = p.Cosignatures(s.Checkpoint)
	return h
}
