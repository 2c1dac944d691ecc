package ledgerclient

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"
)

// MaxCheckpointSize bounds a checkpoint (a signed note) read from a ledger or
// from the client's state.
const MaxCheckpointSize = 16 << 10

var hasher = rfc6962.DefaultHasher

// Checkpoint is a verified C2SP tlog-checkpoint: the log's origin, tree size
// and root hash, and the signed note they were read from.
type Checkpoint struct {
	Origin string
	Size   uint64
	Hash   []byte
	// Raw is the signed note text, as served by the ledger.
	Raw []byte
	// WitnessedAt is, with a witness policy, the newest time at which the
	// cosignatures made at or after it satisfy the policy's quorum (see
	// WitnessPolicy.Witnessed); the checkpoint's age counts from it. Zero
	// without a witness policy, and for the stored checkpoint.
	WitnessedAt time.Time
}

// errUnverifiedNote marks a well-formed note that carries no signature by the
// pinned key; the client turns it into ErrKeyMismatch when the ledger signs
// with another key.
type errUnverifiedNote struct {
	sigs []note.Signature
	err  error
}

func (e *errUnverifiedNote) Error() string { return e.err.Error() }
func (e *errUnverifiedNote) Unwrap() error { return e.err }

// verifyCheckpoint parses raw as a checkpoint for origin signed by v. It is
// pure: every checkpoint from the ledger or the state file goes through it
// (or through tessera's FetchCheckpoint and checkedCheckpoint) before
// anything else looks at it.
func verifyCheckpoint(raw []byte, origin string, v note.Verifier) (Checkpoint, error) {
	if len(raw) > MaxCheckpointSize {
		return Checkpoint{}, fmt.Errorf("%w: %d bytes, at most %d", ErrBadCheckpoint, len(raw), MaxCheckpointSize)
	}
	cp, _, _, err := log.ParseCheckpoint(raw, origin, v)
	if err != nil {
		return Checkpoint{}, checkpointError(raw, v, err)
	}
	return checkedCheckpoint(cp, raw)
}

// checkpointError explains why raw did not verify under v: an
// *errUnverifiedNote when it is a well-formed note without a signature by v.
func checkpointError(raw []byte, v note.Verifier, err error) error {
	if len(raw) <= MaxCheckpointSize {
		if _, oerr := note.Open(raw, note.VerifierList(v)); oerr != nil {
			var unverified *note.UnverifiedNoteError
			if errors.As(oerr, &unverified) {
				return &errUnverifiedNote{
					sigs: unverified.Note.UnverifiedSigs,
					err:  fmt.Errorf("%w: not signed by the pinned key %q", ErrBadCheckpoint, v.Name()),
				}
			}
		}
	}
	return fmt.Errorf("%w: %v", ErrBadCheckpoint, err)
}

// checkedCheckpoint checks what the checkpoint format leaves open about a
// signature-verified checkpoint and returns it with its raw note.
func checkedCheckpoint(cp *log.Checkpoint, raw []byte) (Checkpoint, error) {
	if len(raw) > MaxCheckpointSize {
		return Checkpoint{}, fmt.Errorf("%w: %d bytes, at most %d", ErrBadCheckpoint, len(raw), MaxCheckpointSize)
	}
	if len(cp.Hash) != hasher.Size() {
		return Checkpoint{}, fmt.Errorf("%w: root hash of %d bytes, want %d", ErrBadCheckpoint, len(cp.Hash), hasher.Size())
	}
	if cp.Size == 0 && !bytes.Equal(cp.Hash, hasher.EmptyRoot()) {
		return Checkpoint{}, fmt.Errorf("%w: empty tree with a non-empty root hash", ErrBadCheckpoint)
	}
	return Checkpoint{Origin: cp.Origin, Size: cp.Size, Hash: bytes.Clone(cp.Hash), Raw: bytes.Clone(raw)}, nil
}

// errRollback is the cause inside a ForkError for a rollback.
var errRollback = errors.New("the ledger answered with a smaller tree than it had shown before")

// checkConsistency proves that small is a prefix of big with a consistency
// proof built from the ledger's tiles at big's size. It returns a *ForkError
// (with stored as the Stored side) when the ledger's own tiles, which hash to
// big's signed root, show a history that does not extend small; ErrBadProof
// when the tiles do not even hash to big's root; another error when the tiles
// could not be fetched.
func checkConsistency(ctx context.Context, tiles client.TileFetcherFunc, small, big Checkpoint, storedIsSmall bool) error {
	fork := func(err error) error {
		if storedIsSmall {
			return &ForkError{Stored: small, Got: big, Err: err}
		}
		return &ForkError{Stored: big, Got: small, Err: err}
	}
	switch {
	case small.Size > big.Size:
		return fmt.Errorf("consistency: size %d > %d", small.Size, big.Size)
	case small.Size == big.Size:
		if !bytes.Equal(small.Hash, big.Hash) {
			return fork(fmt.Errorf("two root hashes for tree size %d", small.Size))
		}
		return nil
	case small.Size == 0:
		return nil // the empty tree is a prefix of every tree
	}
	pbTiles := tiles
	if nodes, err := proof.Consistency(small.Size, big.Size); err == nil {
		pbTiles = prefetchTiles(ctx, tiles, big.Size, nodes.IDs)
	}
	pb, err := client.NewProofBuilder(ctx, big.Size, pbTiles)
	if err != nil {
		return fmt.Errorf("consistency proof %d→%d: %w", small.Size, big.Size, err)
	}
	p, err := pb.ConsistencyProof(ctx, small.Size, big.Size)
	if err != nil {
		return fmt.Errorf("consistency proof %d→%d from the ledger's tiles: %w", small.Size, big.Size, err)
	}
	perr := proof.VerifyConsistency(hasher, small.Size, big.Size, p, small.Hash, big.Hash)
	if perr == nil {
		return nil
	}
	// The proof failed. Either the ledger's tiles are corrupt or they are a
	// faithful picture of a tree that does not extend the smaller one: a
	// fork. It is a fork when the tiles hash to the ledger's own signed root
	// for the larger tree and show another root for the smaller size.
	bigRoot, err := rangeRoot(ctx, tiles, big.Size)
	if err != nil {
		return fmt.Errorf("%w: consistency proof %d→%d does not verify (%v) and the tiles of tree size %d are unusable: %v",
			ErrBadProof, small.Size, big.Size, perr, big.Size, err)
	}
	if !bytes.Equal(bigRoot, big.Hash) {
		return fmt.Errorf("%w: the ledger's tiles do not hash to its signed root for tree size %d", ErrBadProof, big.Size)
	}
	smallRoot, err := rangeRoot(ctx, tiles, small.Size)
	if err != nil {
		return fmt.Errorf("%w: consistency proof %d→%d does not verify (%v) and the tiles of tree size %d are unusable: %v",
			ErrBadProof, small.Size, big.Size, perr, small.Size, err)
	}
	if bytes.Equal(smallRoot, small.Hash) {
		return fmt.Errorf("%w: the ledger's tiles give no valid consistency proof from tree size %d to %d (%v) although they hash to both roots",
			ErrBadProof, small.Size, big.Size, perr)
	}
	return fork(fmt.Errorf("the ledger's tree of size %d, which hashes to its signed root, had root %s at size %d, not the signed %s: %v",
		big.Size, base64.StdEncoding.EncodeToString(smallRoot), small.Size, base64.StdEncoding.EncodeToString(small.Hash), perr))
}

// rangeRoot computes the root hash of the tree of the given size from the
// ledger's tiles.
func rangeRoot(ctx context.Context, tiles client.TileFetcherFunc, size uint64) ([]byte, error) {
	nodes, err := client.FetchRangeNodes(ctx, size, tiles)
	if err != nil {
		return nil, err
	}
	rf := compact.RangeFactory{Hash: hasher.HashChildren}
	r, err := rf.NewRange(0, size, nodes)
	if err != nil {
		return nil, err
	}
	return r.GetRootHash(nil)
}

// verifyInclusion checks that leaf is the entry at index in cp's tree.
func verifyInclusion(cp Checkpoint, index uint64, leaf []byte, p [][]byte) error {
	if index >= cp.Size {
		return fmt.Errorf("%w: index %d is outside the checkpoint's tree of size %d", ErrBadProof, index, cp.Size)
	}
	if len(p) > 64 {
		return fmt.Errorf("%w: inclusion proof of %d hashes", ErrBadProof, len(p))
	}
	if err := proof.VerifyInclusion(hasher, index, cp.Size, hasher.HashLeaf(leaf), p, cp.Hash); err != nil {
		return fmt.Errorf("%w: inclusion of entry %d in tree size %d: %v", ErrBadProof, index, cp.Size, err)
	}
	return nil
}
