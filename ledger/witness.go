package ledger

// Witnessing: the ledger asks independent witnesses (C2SP tlog-witness) to
// cosign each checkpoint (C2SP tlog-cosignature) before it is published,
// following a witness policy file (Config.WitnessPolicy) read by Tessera's
// NewWitnessGroupFromPolicy. A witness cosigns a checkpoint only if it is
// consistent with every checkpoint of the same log it cosigned before, so
// a quorum of honest witnesses will not cosign two different histories:
// a ledger cannot show one history to some clients and another to others
// without a quorum of witnesses colluding.
//
// While the quorum is unreachable (witnesses down, partitioned, or
// refusing), no new checkpoint can be published:
//   - submissions are still verified, sequenced and indexed (nothing that
//     was accepted is dropped), but their receipt needs a published
//     checkpoint covering them, so each is answered ErrUnavailable (HTTP
//     503, Retry-After) once Config.ReceiptTimeout has passed;
//   - publication is retried every checkpoint interval; once the quorum
//     answers again, the next checkpoint covers every entry sequenced
//     meanwhile, and a resubmission of the same statement gets its receipt
//     (it is a duplicate of the sequenced entry);
//   - lookups keep answering from the last published checkpoint, so an
//     entry sequenced but not yet published is not served yet;
//   - a new POSIX ledger cannot start (its first checkpoint must be
//     witnessed), and Close waits (up to its context) for the entries in
//     flight to be published.
// Checkpoints are republished and witnessed again every
// Config.CheckpointRepublishInterval even when the log has not grown, so
// the newest cosignature's timestamp tells a client how fresh the
// checkpoint is.

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	f_note "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/tessera"
	"golang.org/x/mod/sumdb/note"

	"github.com/notarize/docker-notarize/internal/witnesspolicy"
)

// MaxWitnessPolicySize bounds a witness policy file.
const MaxWitnessPolicySize = 64 << 10

// Witnessed reports whether the ledger's checkpoints are witnessed: a
// policy is configured and its quorum names at least one witness.
func (l *Ledger) Witnessed() bool { return l.witnessed }

// witnessPolicy parses c.WitnessPolicy. ok is false when there is none.
func (c *Config) witnessPolicy() (p witnesspolicy.Policy, ok bool, err error) {
	if len(c.WitnessPolicy) == 0 {
		return witnesspolicy.Policy{}, false, nil
	}
	if len(c.WitnessPolicy) > MaxWitnessPolicySize {
		return witnesspolicy.Policy{}, false, fmt.Errorf("witness policy: %d bytes, at most %d", len(c.WitnessPolicy), MaxWitnessPolicySize)
	}
	// One witness key named twice, or reached twice within a group, would
	// count twice towards the quorum, which Tessera's parser allows; the
	// ledger's clients read the policy alike (ledgerclient.ParseWitnessPolicy).
	p, err = witnesspolicy.Parse(c.WitnessPolicy)
	if err != nil {
		return witnesspolicy.Policy{}, false, err
	}
	return p, true, nil
}

// validateWitnessing reports witnessing and freshness fields that cannot be used.
func (c *Config) validateWitnessing() []error {
	var errs []error
	if _, _, err := c.witnessPolicy(); err != nil {
		errs = append(errs, err)
	}
	for name, d := range map[string]time.Duration{
		"WitnessTimeout":              c.WitnessTimeout,
		"CheckpointRepublishInterval": c.CheckpointRepublishInterval,
		"ReceiptTimeout":              c.ReceiptTimeout,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", name, d))
		}
	}
	if c.ReceiptTimeout > claimStale {
		errs = append(errs, fmt.Errorf("ReceiptTimeout %v is above %v, after which a claim on an append expires", c.ReceiptTimeout, claimStale))
	}
	ci := c.CheckpointInterval
	if ci == 0 {
		ci = DefaultCheckpointInterval
	}
	if r := c.CheckpointRepublishInterval; r > 0 && r < ci {
		errs = append(errs, fmt.Errorf("CheckpointRepublishInterval %v is below CheckpointInterval %v", r, ci))
	}
	return errs
}

// withWitnesses adds the witness policy, the witness timeout and the
// republish interval to opts. It returns the cosignature verifiers of the
// policy's witnesses (none without a policy).
func (c *Config) withWitnesses(opts *tessera.AppendOptions) ([]note.Verifier, error) {
	opts.WithCheckpointRepublishInterval(c.CheckpointRepublishInterval)
	p, ok, err := c.witnessPolicy()
	if err != nil || !ok {
		return nil, err
	}
	g := p.Group
	opts.WithWitnesses(g, &tessera.WitnessOptions{Timeout: c.WitnessTimeout})
	var vs []note.Verifier
	for _, v := range g.Endpoints() {
		vs = append(vs, v)
	}
	return vs, nil
}

// newestCosignature returns the time of the newest valid witness
// cosignature on the checkpoint note raw; ok is false if there is none.
func (l *Ledger) newestCosignature(raw []byte) (newest time.Time, ok bool) {
	for _, v := range l.witnesses {
		n, err := note.Open(raw, note.VerifierList(v))
		if err != nil {
			continue
		}
		for _, s := range n.Sigs {
			if ts, err := f_note.CoSigV1Timestamp(s); err == nil && ts.After(newest) {
				newest, ok = ts, true
			}
		}
	}
	return newest, ok
}

// witnessCollectors are the witnessing metrics: the published size (the
// log size minus it is what waits for the quorum) and, when witnessed,
// the age of the newest cosignature on the published checkpoint (it grows
// past the republish interval once the quorum is lost).
func (l *Ledger) witnessCollectors() []prometheus.Collector {
	published := func() (raw []byte, size uint64, ok bool) {
		raw, cp, err := l.latestCheckpoint(context.Background())
		if err != nil {
			return nil, 0, false
		}
		return raw, cp.Size, true
	}
	cs := []prometheus.Collector{prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "notarize_ledger_published_size",
		Help: "Entries covered by the published checkpoint; notarize_ledger_log_size minus it waits for publication (and the witness quorum).",
	}, func() float64 {
		_, size, _ := published()
		return float64(size)
	})}
	if l.witnessed {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "notarize_ledger_witness_cosignature_age_seconds",
			Help: "Seconds since the newest witness cosignature on the published checkpoint; above the republish interval, the witness quorum is not answering.",
		}, func() float64 {
			raw, _, ok := published()
			if !ok {
				return 0
			}
			newest, ok := l.newestCosignature(raw)
			if !ok {
				return 0
			}
			return time.Since(newest).Seconds()
		}))
	}
	return cs
}

// errNotPublished explains a receipt that timed out: the entry is
// sequenced but no checkpoint covering it was published in time.
func (l *Ledger) errNotPublished(err error) error {
	if l.witnessed {
		return fmt.Errorf("%w: entry sequenced but not covered by a published checkpoint in %v: "+
			"the witness quorum may be unreachable; it will be published once the quorum answers "+
			"(submit the same statement again to get its receipt): %w", ErrUnavailable, l.cfg.ReceiptTimeout, err)
	}
	return fmt.Errorf("%w: entry not integrated in %v: %w", ErrUnavailable, l.cfg.ReceiptTimeout, err)
}
