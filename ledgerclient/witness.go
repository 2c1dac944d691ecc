package ledgerclient

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/tessera"
	"golang.org/x/mod/sumdb/note"

	"github.com/notarize/docker-notarize/internal/boundedfile"
	"github.com/notarize/docker-notarize/internal/witnesspolicy"
)

// MaxWitnessPolicySize bounds a witness policy file.
const MaxWitnessPolicySize = 64 << 10

// MaxWitnessClockSkew is how far in the future the cosignatures completing
// a witness quorum may be dated (witness clocks slightly ahead); a quorum
// dated later is refused, since it would keep a frozen view fresh.
const MaxWitnessClockSkew = 10 * time.Minute

// ErrWitnessQuorum is matched (errors.Is) by a *WitnessQuorumError.
var ErrWitnessQuorum = errors.New("checkpoint not cosigned by a quorum of the witness policy")

// ErrStaleCheckpoint is matched (errors.Is) by a *StaleCheckpointError.
var ErrStaleCheckpoint = errors.New("witnessed checkpoint too old")

// WitnessPolicy is which witnesses must cosign a ledger checkpoint before a
// client believes it: a C2SP tlog-cosignature (cosignature/v1) quorum, read
// from a policy file in the format of Tessera's NewWitnessGroupFromPolicy
// (Sigsum's policy format: "witness NAME VKEY URL", "group NAME N|any|all
// MEMBER...", "quorum NAME"; "log VKEY [URL]" names the key of a log the
// policy is for: when the policy names any, the client takes no other key
// for its ledger, configured, pinned or announced at first use). Witnesses see every checkpoint the ledger publishes and
// cosign only one that extends the ones they cosigned before, so a quorum of
// cosignatures means that history is the one every client sees, and the
// newest cosignature timestamp completing the quorum says how fresh it is.
type WitnessPolicy struct {
	group     tessera.WitnessGroup
	witnesses []policyWitness // every witness the quorum reaches, once
	logs      []string        // the log keys the policy names (witnesspolicy.LogKeys)
}

// LogKeys returns the verifier keys of the logs the policy names ("log"
// lines), nil when it names none.
func (p *WitnessPolicy) LogKeys() []string {
	if p == nil {
		return nil
	}
	return slices.Clone(p.logs)
}

// checkLogKey refuses key for the ledger at url when p names logs and key
// is not one of them: a witness cosignature covers a checkpoint's text, not
// the ledger's signature, so a front re-signing witnessed checkpoints with
// its own key, announced at first use, would pass the quorum.
func (p *WitnessPolicy) checkLogKey(url, key, what string) error {
	if p == nil || len(p.logs) == 0 || slices.Contains(p.logs, key) {
		return nil
	}
	return fmt.Errorf("%w: the %s key %q of the ledger at %s is not a log key the witness policy names (%s)",
		ErrKeyMismatch, what, clip(key, 200), url, strings.Join(p.logs, ", "))
}

// policyWitness is one witness of a policy: its label in the policy file and
// its cosignature/v1 verifier.
type policyWitness struct {
	label string
	key   note.Verifier
}

// name is how errors name the witness: its policy label and its key name.
func (w policyWitness) name() string {
	if w.label == "" || w.label == w.key.Name() {
		return w.key.Name()
	}
	return w.label + " (" + w.key.Name() + ")"
}

// keyID is how a signed note names a key: its key name and key hash.
type keyID = witnesspolicy.KeyID

func idOf(v note.Verifier) keyID { return witnesspolicy.IDOf(v) }

// ParseWitnessPolicy parses a witness policy file with Tessera's parser and
// refuses what would make a quorum mean less than it says: a quorum of
// "none" or a group of threshold 0, one witness key named twice
// (witnesspolicy.Lines), a group reaching one witness through two of its
// members (witnesspolicy.Groups), and a policy too large.
func ParseWitnessPolicy(b []byte) (*WitnessPolicy, error) {
	if len(b) > MaxWitnessPolicySize {
		return nil, fmt.Errorf("witness policy of %d bytes, at most %d", len(b), MaxWitnessPolicySize)
	}
	wp, err := witnesspolicy.Parse(b)
	if err != nil {
		return nil, err
	}
	g, lines := wp.Group, wp.Lines
	if g.N == 0 {
		return nil, errors.New(`witness policy: the quorum requires no witness ("none" or a threshold of 0); leave the policy out instead`)
	}
	p := &WitnessPolicy{group: g, logs: wp.Logs}
	seen := map[keyID]bool{}
	var walk func(c any) error
	walk = func(c any) error {
		switch c := c.(type) {
		case tessera.Witness:
			if id := idOf(c.Key); !seen[id] {
				seen[id] = true
				p.witnesses = append(p.witnesses, policyWitness{label: lines[id].Label, key: c.Key})
			}
			return nil
		case tessera.WitnessGroup:
			for i, m := range c.Components {
				if w, ok := m.(tessera.Witness); ok {
					// Every check of this witness's cosignatures, ours and
					// Tessera's quorum, through the process's memory of
					// accepted signatures (memo.go): a verify checks the same
					// checkpoint's cosignatures in each lookup's answer.
					// The verifier is made again from the line's text, so
					// that the memory's name for it is its key by
					// construction (witnesspolicy.Lines refuses one key ID
					// for two keys, so the line found is this witness's).
					// Groups refused any component reached twice, so each
					// is wrapped once.
					if l, ok := lines[idOf(w.Key)]; ok {
						v, err := fnote.NewVerifierForCosignatureV1(l.VKey)
						if err != nil || idOf(v) != idOf(w.Key) {
							return fmt.Errorf("witness policy: witness %q: its key reads differently here and in Tessera's parser", l.Label)
						}
						w.Key = newMemoVerifier(v, cosignatureV1+l.VKey)
						c.Components[i], m = w, w
					}
				}
				if err := walk(m); err != nil {
					return err
				}
			}
			return nil
		default:
			return fmt.Errorf("witness policy: unknown component %T", c)
		}
	}
	if err := walk(g); err != nil {
		return nil, err
	}
	return p, nil
}

// cosignatureV1 qualifies a witness key in the process's memory of accepted
// signatures: a cosignature/v1 verifier of the key, not a note verifier.
const cosignatureV1 = "cosignature/v1 "

// Witnesses returns the names of the policy's witnesses ("NAME (key name)").
func (p *WitnessPolicy) Witnesses() []string {
	out := make([]string, len(p.witnesses))
	for i, w := range p.witnesses {
		out[i] = w.name()
	}
	return out
}

// WitnessQuorumError refuses a checkpoint signed by the ledger's key but not
// cosigned by a quorum of the witness policy: the witnesses did not see (or
// did not accept) the history it commits to — a split view shown to this
// client only — or too many of them are down. It keeps the checkpoint as
// served, with its signatures, as evidence.
type WitnessQuorumError struct {
	// Checkpoint is the ledger-signed checkpoint that was refused; its Raw
	// is the note as served.
	Checkpoint Checkpoint
	// Cosigned names the policy's witnesses whose cosignature verified.
	Cosigned []string
	// Missing names the policy's witnesses without a valid cosignature.
	Missing []string
	// Forged names those of Missing with a cosignature line under their key
	// that does not verify.
	Forged []string
}

// Error names the checkpoint and the missing, forged and present cosigners.
func (e *WitnessQuorumError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "SECURITY ERROR: ledger %q checkpoint size %d root %s is not cosigned by a quorum of the witness policy: missing %s",
		e.Checkpoint.Origin, e.Checkpoint.Size, base64.StdEncoding.EncodeToString(e.Checkpoint.Hash), list(e.Missing))
	if len(e.Forged) > 0 {
		fmt.Fprintf(&b, " (forged cosignature by %s)", list(e.Forged))
	}
	fmt.Fprintf(&b, "; cosigned by %s. The ledger shows a history its witnesses did not cosign (a split view), or too many witnesses are down", list(e.Cosigned))
	return b.String()
}

// Is matches ErrWitnessQuorum and ErrBadCheckpoint.
func (e *WitnessQuorumError) Is(target error) bool {
	return target == ErrWitnessQuorum || target == ErrBadCheckpoint
}

// StaleCheckpointError refuses a checkpoint whose witness quorum was
// completed longer ago than the client accepts: the ledger, or a front
// before it, may be holding back newer entries (a revocation).
type StaleCheckpointError struct {
	// Checkpoint is the refused checkpoint, WitnessedAt set.
	Checkpoint Checkpoint
	// Age is how long ago the quorum was completed; MaxAge the bound.
	Age, MaxAge time.Duration
}

// Error names the checkpoint, its age and the bound.
func (e *StaleCheckpointError) Error() string {
	return fmt.Sprintf("ledger %q checkpoint size %d was last cosigned by a witness quorum %s ago (at %s), more than the accepted %s: the ledger or a front before it may be holding back newer entries",
		e.Checkpoint.Origin, e.Checkpoint.Size, e.Age.Round(time.Second), e.Checkpoint.WitnessedAt.UTC().Format(time.RFC3339), e.MaxAge)
}

// Is matches ErrStaleCheckpoint.
func (e *StaleCheckpointError) Is(target error) bool { return target == ErrStaleCheckpoint }

func list(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// Witnessed checks cp (already verified under the ledger's key) against the
// policy and returns it with WitnessedAt set: the newest time at which the
// cosignatures made at or after it still satisfy the quorum. It refuses a
// checkpoint without a quorum with a *WitnessQuorumError.
func (p *WitnessPolicy) Witnessed(cp Checkpoint) (Checkpoint, error) {
	at := map[keyID]time.Time{}
	var cosigned, missing, forged []string
	for _, w := range p.witnesses {
		t, err := cosignedAt(cp.Raw, w.key)
		switch {
		case err == nil:
			at[idOf(w.key)] = t
			cosigned = append(cosigned, w.name())
		default:
			missing = append(missing, w.name())
			var inv *note.InvalidSignatureError
			if errors.As(err, &inv) {
				forged = append(forged, w.name())
			}
		}
	}
	t, ok := quorumTime(p.group, at)
	// Tessera's own predicate must agree: a quorum counts only when both do.
	if !ok || !p.group.Satisfied(cp.Raw) {
		return Checkpoint{}, &WitnessQuorumError{Checkpoint: cp, Cosigned: cosigned, Missing: missing, Forged: forged}
	}
	cp.WitnessedAt = t
	return cp, nil
}

// cosignedAt verifies w's cosignature/v1 on the note raw and returns its
// timestamp. Only the first of several lines by one key counts (note.Open).
func cosignedAt(raw []byte, w note.Verifier) (time.Time, error) {
	n, err := note.Open(raw, note.VerifierList(w))
	if err != nil {
		return time.Time{}, err
	}
	if len(n.Sigs) != 1 {
		return time.Time{}, fmt.Errorf("%d cosignatures by %q", len(n.Sigs), w.Name())
	}
	return fnote.CoSigV1Timestamp(n.Sigs[0])
}

// quorumTime evaluates a policy component given each witness's verified
// cosignature time: whether it is satisfied and the newest time T such that
// the cosignatures made at or after T satisfy it (a group of threshold N
// takes the N-th newest of its satisfied members).
func quorumTime(c any, at map[keyID]time.Time) (time.Time, bool) {
	switch c := c.(type) {
	case tessera.Witness:
		t, ok := at[idOf(c.Key)]
		return t, ok
	case tessera.WitnessGroup:
		if c.N <= 0 {
			return time.Time{}, false
		}
		var ts []time.Time
		for _, m := range c.Components {
			if t, ok := quorumTime(m, at); ok {
				ts = append(ts, t)
			}
		}
		if len(ts) < c.N {
			return time.Time{}, false
		}
		slices.SortFunc(ts, func(a, b time.Time) int { return b.Compare(a) })
		return ts[c.N-1], true
	default:
		return time.Time{}, false
	}
}

// witnessed applies the client's witness policy and maximum age to a
// checkpoint the ledger showed (verified under its key, or err). Without a
// policy it returns cp as it is.
func (c *Client) witnessed(cp Checkpoint, err error) (Checkpoint, error) {
	if err != nil || c.witnesses == nil {
		return cp, err
	}
	cp, err = c.witnesses.Witnessed(cp)
	if err != nil {
		return Checkpoint{}, err
	}
	now := c.now()
	if cp.WitnessedAt.After(now.Add(MaxWitnessClockSkew)) {
		// A quorum dated in the future would keep a frozen view fresh until
		// that date: refused.
		return Checkpoint{}, fmt.Errorf("%w: ledger %q checkpoint size %d: its witness quorum is dated %s, more than %s ahead of this clock",
			ErrBadCheckpoint, cp.Origin, cp.Size, cp.WitnessedAt.UTC().Format(time.RFC3339), MaxWitnessClockSkew)
	}
	if age := now.Sub(cp.WitnessedAt); c.maxAge > 0 && age > c.maxAge {
		return Checkpoint{}, &StaleCheckpointError{Checkpoint: cp, Age: age, MaxAge: c.maxAge}
	}
	return cp, nil
}

// ReadWitnessPolicy reads and parses the witness policy file at path
// (at most MaxWitnessPolicySize bytes).
func ReadWitnessPolicy(path string) (*WitnessPolicy, error) {
	b, err := boundedfile.Read(path, MaxWitnessPolicySize)
	if err != nil {
		return nil, fmt.Errorf("witness policy: %w", err)
	}
	p, err := ParseWitnessPolicy(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// CompareCheckpoint checks raw, a checkpoint of this ledger that someone
// else was shown (another proxy's /notarize/v1/checkpoint), against what
// this client was shown: raw must verify under the pinned key (and, with a
// witness policy, carry a quorum of cosignatures; its age does not matter),
// and it must be consistent with the client's stored checkpoint, proven
// from the ledger's tiles. Two checkpoints signed by the ledger that cannot
// both be true are a *ForkError (Stored: this client's, Got: raw), or
// ErrBadProof when the ledger cannot prove them consistent: evidence that
// the ledger shows different histories to different clients. The stored
// state is never changed.
func (c *Client) CompareCheckpoint(ctx context.Context, raw []byte) (Checkpoint, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	cp, err := verifyCheckpoint(raw, c.Origin(), c.verifier)
	if err == nil && c.witnesses != nil {
		cp, err = c.witnesses.Witnessed(cp)
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("compare checkpoint: %w", err)
	}
	mine, err := c.stored()
	if err == nil && mine == nil {
		err = errors.New("no checkpoint of this ledger verified yet")
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("compare checkpoint: %w", err)
	}
	if cp.Size <= mine.Size {
		err = checkConsistency(ctx, c.ops.ReadTile, cp, *mine, false)
	} else {
		err = checkConsistency(ctx, c.ops.ReadTile, *mine, cp, true)
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("compare checkpoint of size %d with ours of size %d: %w", cp.Size, mine.Size, err)
	}
	return cp, nil
}
