package ledger

import (
	"context"
	"fmt"
	"sync"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	tapi "github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
)

// maxProofNodes bounds proofNodes: about 6 MiB. Past it the set starts
// again from empty; the nodes the next proofs need cost one tile's
// hashing per tile level to find again.
const maxProofNodes = 1 << 16

// proofNodes builds inclusion proofs from the log's hash tiles, remembering
// the hash of every complete subtree it computed. A complete subtree's hash
// never changes as an append-only log grows, so, unlike Tessera's
// client.ProofBuilder, which is built for one tree size and hashes a
// tile's leaves again for every node it is asked for inside that tile (up
// to 255 hashes per node, about as much CPU per receipt as checking its
// signature), the nodes are computed once per tile read, for every tree
// size. It is safe for concurrent use.
type proofNodes struct {
	read func(ctx context.Context, level, index uint64, p uint8) ([]byte, error)

	mu    sync.Mutex
	nodes map[compact.NodeID][]byte // complete subtrees' hashes
}

func newProofNodes(read func(ctx context.Context, level, index uint64, p uint8) ([]byte, error)) *proofNodes {
	return &proofNodes{read: read, nodes: make(map[compact.NodeID][]byte)}
}

// inclusion returns the inclusion proof of the leaf at index in the tree of
// the given size.
func (pn *proofNodes) inclusion(ctx context.Context, index, size uint64) ([][]byte, error) {
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	hashes := make([][]byte, 0, len(nodes.IDs))
	pn.mu.Lock()
	defer pn.mu.Unlock()
	for _, id := range nodes.IDs {
		h, err := pn.node(ctx, id, size)
		if err != nil {
			return nil, err
		}
		hashes = append(hashes, h)
	}
	return nodes.Rehash(hashes, rfc6962.DefaultHasher.HashChildren)
}

// reset forgets every node (after a proof that did not verify).
func (pn *proofNodes) reset() {
	pn.mu.Lock()
	pn.nodes = make(map[compact.NodeID][]byte)
	pn.mu.Unlock()
}

// node returns the hash of the complete subtree id of the tree of the
// given size, reading and hashing its tile if it is not known. pn.mu is
// held.
func (pn *proofNodes) node(ctx context.Context, id compact.NodeID, size uint64) ([]byte, error) {
	if h, ok := pn.nodes[id]; ok {
		return h, nil
	}
	if _, end := id.Coverage(); end > size {
		return nil, fmt.Errorf("node %d/%d is not complete in a tree of size %d", id.Level, id.Index, size)
	}
	tileLevel, tileIndex, _, _ := layout.NodeCoordsToTileAddress(uint64(id.Level), id.Index)
	p := layout.PartialTileSize(tileLevel, tileIndex, size)
	raw, err := pn.read(ctx, tileLevel, tileIndex, p)
	if err != nil {
		return nil, fmt.Errorf("read tile %d/%d: %w", tileLevel, tileIndex, err)
	}
	var tile tapi.HashTile
	if err := tile.UnmarshalText(raw); err != nil {
		return nil, fmt.Errorf("tile %d/%d: %w", tileLevel, tileIndex, err)
	}
	width := int(p)
	if p == 0 {
		width = layout.TileWidth
	}
	if len(tile.Nodes) < width {
		return nil, fmt.Errorf("tile %d/%d holds %d hashes, want %d", tileLevel, tileIndex, len(tile.Nodes), width)
	}
	if len(pn.nodes) >= maxProofNodes {
		pn.nodes = make(map[compact.NodeID][]byte)
	}
	// Every complete subtree inside the tile's first width leaves: level 0
	// of the tile is tree level 8*tileLevel.
	row := tile.Nodes[:width]
	base := uint(tileLevel * layout.TileHeight)
	first := tileIndex * layout.TileWidth
	for lvl := uint(0); lvl < layout.TileHeight && len(row) > 0; lvl++ {
		for i, h := range row {
			pn.nodes[compact.NewNodeID(base+lvl, first+uint64(i))] = h
		}
		next := make([][]byte, len(row)/2)
		for i := range next {
			next[i] = rfc6962.DefaultHasher.HashChildren(row[2*i], row[2*i+1])
		}
		row, first = next, first/2
	}
	h, ok := pn.nodes[id]
	if !ok {
		return nil, fmt.Errorf("node %d/%d is not in tile %d/%d of width %d", id.Level, id.Index, tileLevel, tileIndex, width)
	}
	return h, nil
}

// receiptProof returns the inclusion proof of entry, at index, in the
// checkpoint cp (checkedProofs).
func (l *Ledger) receiptProof(ctx context.Context, cp *log.Checkpoint, index uint64, entry []byte) ([][]byte, error) {
	proofs, err := l.checkedProofs(ctx, cp, []uint64{index}, [][]byte{entry})
	if err != nil {
		return nil, err
	}
	return proofs[0], nil
}

// checkedProofs returns the inclusion proofs of entries, at indices, in the
// checkpoint cp, each checked against cp's root before it is handed out
// (a receipt's or a lookup's): a remembered node that was wrong (a tile
// misread) would otherwise be in every proof that uses it until it is
// forgotten. On a proof that does not verify the nodes are forgotten and
// the proofs built once more from the tiles.
func (l *Ledger) checkedProofs(ctx context.Context, cp *log.Checkpoint, indices []uint64, entries [][]byte) ([][][]byte, error) {
	var verr error
	for range 2 {
		proofs, err := l.inclusionProofs(ctx, cp.Size, indices...)
		if err != nil {
			return nil, err
		}
		verr = nil
		for k, idx := range indices {
			leaf := rfc6962.DefaultHasher.HashLeaf(entries[k])
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, idx, cp.Size, leaf, proofs[k], cp.Hash); err != nil {
				verr = fmt.Errorf("inclusion proof for %d in %d does not verify against the checkpoint: %w", idx, cp.Size, err)
				break
			}
		}
		if verr == nil {
			return proofs, nil
		}
		l.proofs.reset()
	}
	return nil, verr
}
