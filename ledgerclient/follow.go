package ledgerclient

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"

	"github.com/notarize/docker-notarize/notarize"
)

// DefaultFollowBatch is the number of entries a Follower reads per batch
// (64 full entry bundles) unless configured otherwise.
const DefaultFollowBatch = 64 * layout.EntryBundleWidth

// maxParallelBundles bounds the entry bundles a Follower fetches at once.
const maxParallelBundles = 8

// ErrReplicaDiverged is returned (wrapped) when the entries a replica has
// already verified hash to another root than the ledger's verified
// checkpoint of the same or a larger tree: the ledger rewrote the history
// the replica holds. The replica's state must then be kept, not advanced.
var ErrReplicaDiverged = errors.New("SECURITY ERROR: replica and ledger disagree on the log's history")

// FollowState is a replica's position in a log: how many entries it has
// verified, and the compact Merkle range over them (the RFC 6962 hashes of
// the perfect subtrees covering [0, Size), left to right, as in package
// github.com/transparency-dev/merkle/compact). Size 0 with no hashes is the
// start of the log.
type FollowState struct {
	Size   uint64
	Hashes [][]byte
}

// FollowedEntry is one log entry read by a Follower. Its leaf hash is proven
// to be in the log either way; Err says why it holds nothing to believe (it
// does not parse, or its signature does not verify) and then Record is zero.
type FollowedEntry struct {
	Index  uint64
	Record notarize.Record
	Err    error
	// Leaf is the entry's bytes as logged (for a map-root entry,
	// notarize.IsMapRoot, and to audit the ledger's verifiable index).
	Leaf []byte
}

// FollowBatch is a run of consecutive log entries, proven to be the entries
// [From, State.Size) of the tree of Checkpoint.
type FollowBatch struct {
	// Checkpoint is the verified checkpoint the entries are proven against.
	Checkpoint Checkpoint
	// From is the index of the first entry.
	From uint64
	// Entries are the entries From, From+1, …, in order.
	Entries []FollowedEntry
	// State is the replica's position after the batch; persist it with the
	// entries, atomically, and pass it to the next call of Next.
	State FollowState
}

// Follower replicates a ledger entry by entry, believing nothing it has not
// proven: each batch is read from the ledger's entry bundles, its leaves are
// hashed into the replica's compact range, and the batch is accepted only
// when that range's root is the root of a verified checkpoint (or, for a
// batch that stops short of the checkpoint, when a consistency proof from
// the range's root to the checkpoint's verifies). Bundles and tiles are
// therefore never trusted, the replica's history can only be extended, and
// the ledger cannot hide an entry from it. Every entry's signature is then
// checked.
//
// A Follower keeps no replica state of its own (the caller persists
// FollowState) but caches proof material; it is not safe for concurrent use.
type Follower struct {
	c        *Client
	maxBatch uint64
	rf       compact.RangeFactory

	pbSize uint64 // tree size pb builds proofs for
	pb     *client.ProofBuilder

	// keys remembers the signer keys of entries checked so far: a log
	// holds thousands of entries per key, and each key's parse is paid
	// once (every entry's signature is still checked).
	keys *notarize.KeyCache
}

// NewFollower returns a Follower reading through c, maxBatch entries at a
// time at most (DefaultFollowBatch when 0; rounded up to whole bundles).
func NewFollower(c *Client, maxBatch uint64) *Follower {
	if maxBatch == 0 {
		maxBatch = DefaultFollowBatch
	}
	w := uint64(layout.EntryBundleWidth)
	maxBatch = (maxBatch + w - 1) / w * w
	return &Follower{c: c, maxBatch: maxBatch, rf: compact.RangeFactory{Hash: hasher.HashChildren}, keys: notarize.NewKeyCache(0)}
}

// Next fetches the ledger's latest checkpoint through the Client (verified,
// and consistent with the client's stored one) and returns the next batch of
// entries after st, proven against it. When st is already at the
// checkpoint's size the batch has no entries (and its State is st). Errors:
// a *ForkError from the Client, ErrReplicaDiverged when st itself is not a
// prefix of the verified tree, ErrBadProof when the ledger's bundles do not
// hash to its own checkpoint.
func (f *Follower) Next(ctx context.Context, st FollowState) (*FollowBatch, error) {
	ctx, cancel := f.c.withTimeout(ctx)
	defer cancel()
	b, err := f.next(ctx, st)
	if err != nil {
		return nil, fmt.Errorf("follow ledger: %w", err)
	}
	return b, nil
}

func (f *Follower) next(ctx context.Context, st FollowState) (*FollowBatch, error) {
	rng, err := f.rf.NewRange(0, st.Size, cloneHashes(st.Hashes))
	if err != nil {
		return nil, fmt.Errorf("replica state: %w", err)
	}
	cp, err := f.c.Latest(ctx)
	if err != nil {
		return nil, err
	}
	switch {
	case st.Size > cp.Size:
		return nil, fmt.Errorf("%w: the replica holds %d verified entries but the ledger's verified checkpoint has %d",
			ErrReplicaDiverged, st.Size, cp.Size)
	case st.Size == cp.Size:
		if err := f.checkRoot(rng, cp, ErrReplicaDiverged); err != nil {
			return nil, err
		}
		return &FollowBatch{Checkpoint: cp, From: st.Size, State: st}, nil
	}
	w := uint64(layout.EntryBundleWidth)
	to := min(cp.Size, (st.Size/w)*w+f.maxBatch)
	// Each bundle's entries are parsed and signature-checked as soon as it
	// arrives, overlapping the checks with the other bundles' reads; the
	// results count only once the whole batch is proven below.
	checked := make([]FollowedEntry, to-st.Size)
	leaves, err := f.readLeavesThen(ctx, st.Size, to, cp.Size, func(first uint64, entries [][]byte) {
		checkEntries(checked[first-st.Size:], first, entries, f.keys)
	})
	if err != nil {
		return nil, err
	}
	for _, l := range leaves {
		if err := rng.Append(hasher.HashLeaf(l), nil); err != nil {
			return nil, fmt.Errorf("replica range: %w", err)
		}
	}
	if to == cp.Size {
		err = f.checkRoot(rng, cp, ErrBadProof)
	} else {
		err = f.checkPrefix(ctx, rng, cp)
	}
	if err != nil {
		if st.Size > 0 {
			// Tell a rewritten history from a corrupt bundle: the replica's
			// own range must still be a prefix of the checkpoint's tree.
			if perr := f.checkStatePrefix(ctx, st, cp); perr != nil {
				return nil, perr
			}
		}
		return nil, err
	}
	return &FollowBatch{
		Checkpoint: cp,
		From:       st.Size,
		Entries:    checked,
		State:      FollowState{Size: to, Hashes: cloneHashes(rng.Hashes())},
	}, nil
}

// readLeaves returns the entries [from, to) of the tree of size treeSize,
// fetching their bundles a few at a time, in order.
func (f *Follower) readLeaves(ctx context.Context, from, to, treeSize uint64) ([][]byte, error) {
	return f.readLeavesThen(ctx, from, to, treeSize, nil)
}

// readLeavesThen is readLeaves that also hands each bundle's entries in
// [from, to) to then (unless nil) as soon as the bundle is read and holds
// as many entries as the tree puts in it, from the goroutine that read it:
// first is the index of entries[0]. Nothing then sees is proven yet.
func (f *Follower) readLeavesThen(ctx context.Context, from, to, treeSize uint64, then func(first uint64, entries [][]byte)) ([][]byte, error) {
	w := uint64(layout.EntryBundleWidth)
	first, last := from/w, (to-1)/w
	n := last - first + 1
	bundles := make([][][]byte, n)
	errs := make([]error, n)
	sem := make(chan struct{}, maxParallelBundles)
	var wg sync.WaitGroup
	for i := range n {
		idx := first + i
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			bundles[i], errs[i] = f.readBundle(ctx, idx, treeSize)
			if errs[i] == nil && then != nil {
				start := idx * w
				lo, hi := max(from, start)-start, min(to, start+uint64(len(bundles[i])))-start
				if lo < hi {
					then(start+lo, bundles[i][lo:hi])
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	leaves := make([][]byte, 0, to-from)
	for i, b := range bundles {
		start := (first + uint64(i)) * w
		for j, e := range b {
			if idx := start + uint64(j); idx >= from && idx < to {
				leaves = append(leaves, e)
			}
		}
	}
	if uint64(len(leaves)) != to-from {
		return nil, fmt.Errorf("%w: read %d entries for [%d, %d)", ErrBadProof, len(leaves), from, to)
	}
	return leaves, nil
}

// readBundle fetches entry bundle idx of a tree of size treeSize and
// returns its entries (bundleEntries).
func (f *Follower) readBundle(ctx context.Context, idx, treeSize uint64) ([][]byte, error) {
	p := layout.PartialTileSize(0, idx, treeSize)
	raw, err := f.c.ops.ReadEntryBundle(ctx, idx, p)
	if err != nil {
		return nil, fmt.Errorf("read entry bundle %d: %w", idx, err)
	}
	return bundleEntries(raw, idx, p)
}

// bundleEntries parses raw, entry bundle idx fetched at width p (0: full),
// and checks it holds as many entries as that width. A full bundle stands
// for a partial one as its first entries: Tessera removes a partial bundle
// once the bundle is full, and its fetcher then serves the full one to a
// reader of an older tree (the entries are proven by the caller either
// way).
func bundleEntries(raw []byte, idx uint64, p uint8) ([][]byte, error) {
	var b api.EntryBundle
	if err := b.UnmarshalText(raw); err != nil {
		return nil, fmt.Errorf("%w: entry bundle %d: %v", ErrBadProof, idx, err)
	}
	want := int(p)
	if p == 0 {
		want = layout.EntryBundleWidth
	}
	if n := len(b.Entries); n != want && (p == 0 || n != layout.EntryBundleWidth) {
		return nil, fmt.Errorf("%w: entry bundle %d holds %d entries, want %d", ErrBadProof, idx, n, want)
	}
	return b.Entries[:want], nil
}

// checkRoot checks that rng, a range from 0, hashes to cp's root.
func (f *Follower) checkRoot(rng *compact.Range, cp Checkpoint, sentinel error) error {
	root := hasher.EmptyRoot()
	if rng.End() > 0 {
		var err error
		if root, err = rng.GetRootHash(nil); err != nil {
			return fmt.Errorf("replica range: %w", err)
		}
	}
	if !bytes.Equal(root, cp.Hash) {
		return fmt.Errorf("%w: the %d entries hash to root %s, the ledger's checkpoint says %s",
			sentinel, cp.Size, b64(root), b64(cp.Hash))
	}
	return nil
}

// checkPrefix proves that rng, a range from 0 shorter than cp's tree, is a
// prefix of it, with a consistency proof built from the ledger's tiles and
// checked against cp's signed root.
func (f *Follower) checkPrefix(ctx context.Context, rng *compact.Range, cp Checkpoint) error {
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return fmt.Errorf("replica range: %w", err)
	}
	if f.pb == nil || f.pbSize != cp.Size {
		pb, err := client.NewProofBuilder(ctx, cp.Size, f.c.ops.ReadTile)
		if err != nil {
			return fmt.Errorf("consistency proof to %d: %w", cp.Size, err)
		}
		f.pb, f.pbSize = pb, cp.Size
	}
	p, err := f.pb.ConsistencyProof(ctx, rng.End(), cp.Size)
	if err != nil {
		f.pb = nil
		return fmt.Errorf("consistency proof %d→%d: %w", rng.End(), cp.Size, err)
	}
	if err := proof.VerifyConsistency(hasher, rng.End(), cp.Size, p, root, cp.Hash); err != nil {
		f.pb = nil
		return fmt.Errorf("%w: entries [0, %d) are not a prefix of the checkpoint's tree of size %d: %v", ErrBadProof, rng.End(), cp.Size, err)
	}
	return nil
}

// checkStatePrefix checks the replica's verified state against cp alone,
// to report ErrReplicaDiverged rather than a bad bundle when the ledger has
// rewritten what the replica already holds.
func (f *Follower) checkStatePrefix(ctx context.Context, st FollowState, cp Checkpoint) error {
	rng, err := f.rf.NewRange(0, st.Size, cloneHashes(st.Hashes))
	if err != nil {
		return err
	}
	if err := f.checkPrefix(ctx, rng, cp); err != nil && errors.Is(err, ErrBadProof) {
		return fmt.Errorf("%w: %v", ErrReplicaDiverged, err)
	}
	return nil
}

// checkEntries parses and verifies entries (entries from index first on)
// into out, spreading the signature checks over the available cores: each
// worker takes the next unchecked entry and writes its result at that
// entry's place, so the results are in log order whichever worker checked
// which.
func checkEntries(out []FollowedEntry, first uint64, entries [][]byte, keys *notarize.KeyCache) {
	workers := min(runtime.GOMAXPROCS(0), max(1, len(entries)/64))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(len(entries)) {
					return
				}
				out[i] = verifyLeafWith(first+uint64(i), entries[i], keys)
			}
		})
	}
	wg.Wait()
}

// verifyLeaf parses and checks the entry at index.
func verifyLeaf(index uint64, leaf []byte) FollowedEntry { return verifyLeafWith(index, leaf, nil) }

// verifyLeafWith parses and checks the entry at index, taking its signer's
// parsed key from keys (which may be nil) when it holds it. A map-root
// entry is no statement (a replica's MapAudit checks it); it is refused as
// an entry without being parsed as one.
func verifyLeafWith(index uint64, leaf []byte, keys *notarize.KeyCache) FollowedEntry {
	fe := FollowedEntry{Index: index, Leaf: leaf}
	if notarize.IsMapRoot(leaf) {
		fe.Err = fmt.Errorf("entry %d: %w: a map-root entry, not a statement", index, notarize.ErrBadEntry)
		return fe
	}
	e, err := notarize.ParseEntry(leaf)
	if err != nil {
		fe.Err = fmt.Errorf("entry %d: %w", index, err)
		return fe
	}
	v, err := e.VerifyLoggedWith(keys)
	if err != nil {
		fe.Err = fmt.Errorf("entry %d: %w", index, err)
		return fe
	}
	fe.Record = notarize.Record{Index: index, KeyID: v.KeyID, Statement: v.Statement}
	return fe
}

func cloneHashes(h [][]byte) [][]byte {
	out := make([][]byte, len(h))
	for i := range h {
		out[i] = bytes.Clone(h[i])
	}
	return out
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
