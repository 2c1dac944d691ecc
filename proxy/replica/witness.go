package replica

import (
	"bytes"
	"fmt"
	"time"

	"github.com/notarize/docker-notarize/ledgerclient"
)

// witnessed records cp as the replica's latest verified checkpoint and,
// with a witness policy, its quorum time (never moving backwards: a quorum
// completed at T says the witnesses' view was this checkpoint at T, and a
// later checkpoint cannot have been cosigned before it). r.mu is held.
func (r *Replica) witnessed(cp ledgerclient.Checkpoint) {
	if len(cp.Raw) > 0 {
		r.status.Checkpoint = bytes.Clone(cp.Raw)
	}
	if !cp.WitnessedAt.After(r.quorumAt) {
		return // no newer quorum: the same (possibly frozen) view
	}
	r.quorumAt = cp.WitnessedAt
	t := cp.WitnessedAt
	if now := r.cfg.Now(); t.After(now) {
		t = now // a witness clock slightly ahead vouches for when it was seen only
	}
	if t.After(r.status.WitnessedAt) {
		r.status.WitnessedAt = t
	}
}

// loadCheckpoint restores the stored checkpoint and, with a witness policy,
// its quorum time, checked again: a checkpoint stored without a quorum (or
// under another policy) leaves WitnessedAt zero, so the replica is stale
// until it verifies a cosigned one.
func (r *Replica) loadCheckpoint(raw []byte) {
	if len(raw) == 0 {
		return
	}
	r.status.Checkpoint = bytes.Clone(raw)
	if r.cfg.Witnesses == nil {
		return
	}
	if cp, err := r.cfg.Witnesses.Witnessed(ledgerclient.Checkpoint{Raw: bytes.Clone(raw)}); err == nil {
		if now := r.cfg.Now(); !cp.WitnessedAt.After(now.Add(ledgerclient.MaxWitnessClockSkew)) {
			r.quorumAt, r.status.WitnessedAt = cp.WitnessedAt, cp.WitnessedAt
			if cp.WitnessedAt.After(now) {
				r.status.WitnessedAt = now // a witness clock slightly ahead vouches for now only
			}
		}
	}
}

// witnessFresh is Fresh's check of a reported fork (ReportFork) and of the
// witness quorum's age, with a witness policy: the replica may have polled a second ago, but if the
// newest checkpoint a quorum cosigned is older than MaxStaleness, the ledger
// or a front before it may be holding back entries (a revocation).
func (r *Replica) witnessFresh(s Status) error {
	if s.Fork != "" {
		return fmt.Errorf("%w: %s", ErrStale, s.Fork)
	}
	if r.cfg.Witnesses == nil {
		return nil
	}
	if s.WitnessedAt.IsZero() {
		return fmt.Errorf("%w: no ledger checkpoint cosigned by a quorum of the witness policy has been verified yet (%s)", ErrStale, orNone(s.LastError))
	}
	if age := r.cfg.Now().Sub(s.WitnessedAt); age > r.cfg.MaxStaleness {
		return fmt.Errorf("%w: the newest ledger checkpoint cosigned by a quorum of the witness policy (size %d) was cosigned %s ago, at %s (max staleness %s): the ledger, or a front before it, may be holding back newer entries; last error: %s",
			ErrStale, s.CheckpointSize, age.Round(time.Second), s.WitnessedAt.UTC().Format(time.RFC3339), r.cfg.MaxStaleness, orNone(s.LastError))
	}
	return nil
}

// ReportFork records evidence that the ledger showed someone else (another
// proxy, see package proxy/peer) a history that the replica's own cannot
// extend. The replica then fails closed (ErrStale, with the evidence) until
// the process restarts: two histories signed by the ledger are an incident
// for an operator, not something a later poll can settle.
func (r *Replica) ReportFork(evidence error) {
	if evidence == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.status.Fork == "" {
		r.status.Fork = clip("SECURITY ERROR: the ledger shows another proxy a history inconsistent with this replica's: " + evidence.Error())
	}
}
