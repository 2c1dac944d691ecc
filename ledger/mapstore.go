package ledger

import (
	"context"
	"fmt"
	"math/bits"

	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/vindex"
)

// The verifiable index is kept in a storage.MapStore: the driver's, shared
// by every instance on the storage (MySQL: tables beside the log), or,
// for a storage used by one process (POSIX), a bbolt file in its data
// directory (boltMapStore). Both read nodes through nodeCache, which turns
// the tree's one-node-at-a-time reads into a few batched reads per level.

// nodeCache is a vindex.NodeReader over a storage.MapNodeReader, for one
// fold or one lookup. prefetch reads the nodes on the paths of the keys
// about to be read or updated, and their siblings, one batched read per
// tree level; any other node is read on demand. Every node read is kept.
// A node below a stored leaf or below an empty subtree is known absent
// without a read (the tree is compressed: nothing is stored under them).
type nodeCache struct {
	ctx   context.Context
	r     storage.MapNodeReader
	nodes map[vindex.NodeID]cachedNode
	reads int // batched reads from r, for tests and benchmarks
	ids   int // node IDs read from r, for tests and benchmarks

	// expect is the depth by which most paths end in the map read (a
	// proof's: pathsEnd of the map's position), or 0 when unknown (a
	// fold). prefetch reads a few keys' paths down to it in one read,
	// rather than 32 levels (63 node IDs) of which a map of a million keys
	// holds about 21; past it, as it would without it.
	expect int
}

type cachedNode struct {
	n  vindex.Node
	ok bool
}

func newNodeCache(ctx context.Context, r storage.MapNodeReader) *nodeCache {
	return &nodeCache{ctx: ctx, r: r, nodes: make(map[vindex.NodeID]cachedNode)}
}

// newProofCache returns a nodeCache for the proofs of nkeys keys in a map
// folded from the log's first position entries: it expects their paths to
// end by pathsEnd(position), and holds the nodes of a lookup of a few keys
// without growing (the paths of many share their top levels: not sized for
// all of them).
func newProofCache(ctx context.Context, r storage.MapNodeReader, position uint64, nkeys int) *nodeCache {
	expect := pathsEnd(position)
	return &nodeCache{ctx: ctx, r: r, expect: expect, nodes: make(map[vindex.NodeID]cachedNode, 2*min(nkeys, 4)*expect)}
}

// reserve sizes an empty cache for the fold of nkeys distinct keys into a
// map folded from position log entries, so that its table is not rebuilt
// as it fills: about two node IDs (a path's node and its sibling) per key
// and level below the levels the keys share, where paths end
// (pathsEnd), and the shared levels' nodes once. The hint is allocated at
// once, so it is capped (maxReserve); a larger fold grows the table.
func (c *nodeCache) reserve(position uint64, nkeys int) {
	if len(c.nodes) > 0 || nkeys == 0 {
		return
	}
	below := max(1, pathsEnd(position)-bits.Len(uint(nkeys)))
	c.nodes = make(map[vindex.NodeID]cachedNode, min(2*nkeys*(below+1), maxReserve))
}

// maxReserve caps reserve's hint: 2^18 nodes, ~40 MiB, what a fold of
// 8,192 keys into a map of 1,000,000 reads (~180,000).
const maxReserve = 1 << 18

// pathsEnd returns the depth by which the path of a key ends, in all but
// about one case in 16, in a map folded from n log entries: a path ends
// above depth d unless another of the map's leaves (at most n) shares the
// key's first d bits, which happens with probability about leaves/2^d.
func pathsEnd(n uint64) int {
	return min(bits.Len64(n)+4, vindex.KeyBits+1)
}

// pathID returns the ID of the node at depth on key's path.
func pathID(key vindex.Key, depth int) vindex.NodeID {
	id := vindex.NodeID{Depth: depth}
	full := depth / 8
	copy(id.Prefix[:full], key[:full])
	if r := depth % 8; r != 0 {
		id.Prefix[full] = key[full] & byte(0xff<<(8-r))
	}
	return id
}

// siblingID returns the ID of the sibling of the node at depth (>= 1) on
// key's path.
func siblingID(key vindex.Key, depth int) vindex.NodeID {
	id := pathID(key, depth)
	i := depth - 1
	id.Prefix[i/8] ^= 1 << (7 - uint(i%8))
	return id
}

// ReadNode implements vindex.NodeReader.
func (c *nodeCache) ReadNode(id vindex.NodeID) (vindex.Node, bool, error) {
	if cn, ok := c.nodes[id]; ok {
		return cn.n, cn.ok, nil
	}
	for d := id.Depth - 1; d >= 0; d-- { // the nearest known ancestor
		if cn, ok := c.nodes[pathID(id.Prefix, d)]; ok {
			if !cn.ok || cn.n.Leaf {
				c.nodes[id] = cachedNode{}
				return vindex.Node{}, false, nil
			}
			break
		}
	}
	if err := c.fetch([]vindex.NodeID{id}); err != nil {
		return vindex.Node{}, false, err
	}
	cn := c.nodes[id]
	return cn.n, cn.ok, nil
}

// fetch reads ids (none of them cached) in one batched read and keeps them.
func (c *nodeCache) fetch(ids []vindex.NodeID) error {
	if len(ids) == 0 {
		return nil
	}
	raw := make([][]byte, len(ids))
	for i, id := range ids {
		raw[i] = id.Bytes()
	}
	vals, err := c.r.MapNodes(c.ctx, raw)
	if err != nil {
		return fmt.Errorf("read map nodes: %w", err)
	}
	c.reads++
	c.ids += len(ids)
	if len(vals) != len(ids) {
		return fmt.Errorf("read map nodes: %d answers for %d nodes", len(vals), len(ids))
	}
	for i, id := range ids {
		if vals[i] == nil {
			c.nodes[id] = cachedNode{}
			continue
		}
		n, err := vindex.UnmarshalNode(vals[i])
		if err != nil {
			return fmt.Errorf("map node %d/%x: %w", id.Depth, raw[i][2:], err)
		}
		c.nodes[id] = cachedNode{n: n, ok: true}
	}
	return nil
}

// prefetchIDs is about how many node IDs prefetch asks for at once: a
// few keys' paths are read several levels at a time (a lookup's one key:
// 32 levels, its path and siblings, in one read), many keys' one level at
// a time.
const prefetchIDs = 64

// expectIDs bounds the first read of a cache that knows where paths end
// (nodeCache.expect): up to it, the few keys of a lookup are read to that
// depth at once, however many levels it is.
const expectIDs = 4 * prefetchIDs

// prefetch reads, from the root down, the nodes on the paths of keys and
// their siblings, down to where each path ends (an empty subtree or a
// leaf): what vindex.Get, vindex.Apply and vindex.Prove read for them. A
// read covers as many levels as keep it near prefetchIDs node IDs, or,
// when c knows where paths end (expect), the first read covers the levels
// down to there and the reads after it as many as without it (a path made
// deep on purpose, by grinding keys, costs at most one read more). What it
// does not read, ReadNode reads when asked: the levels a read covers change
// how many reads there are, never what is read.
func (c *nodeCache) prefetch(keys []vindex.Key) error {
	frontier := keys
	for d := 0; len(frontier) > 0 && d <= vindex.KeyBits; {
		levels := max(1, min(32, prefetchIDs/(2*len(frontier))))
		var ids []vindex.NodeID
		var seen map[vindex.NodeID]bool
		if c.expect > d && 2*len(frontier)*(c.expect-d) <= expectIDs {
			levels = c.expect - d // a lookup's few keys: about 2×levels IDs each
			ids = make([]vindex.NodeID, 0, 2*len(frontier)*levels)
			seen = make(map[vindex.NodeID]bool, cap(ids))
		}
		end := min(d+levels, vindex.KeyBits+1)
		if seen == nil { // a fold's many keys: at most two IDs a key and level, and 2^(d+1) at depth d
			seen = make(map[vindex.NodeID]bool, min(2*len(frontier)*levels, 2<<min(end, 20)))
		}
		want := func(id vindex.NodeID) {
			if _, cached := c.nodes[id]; !cached && !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		for _, k := range frontier {
			for dd := d; dd < end; dd++ {
				want(pathID(k, dd))
				if dd > 0 {
					want(siblingID(k, dd))
				}
			}
		}
		if err := c.fetch(ids); err != nil {
			return err
		}
		var next []vindex.Key
	keys:
		for _, k := range frontier {
			for dd := d; dd < end; dd++ {
				if cn := c.nodes[pathID(k, dd)]; !cn.ok || cn.n.Leaf {
					continue keys // the path ends here
				}
			}
			next = append(next, k)
		}
		frontier, d = next, end
	}
	return nil
}
