package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/bits"
	"sync"

	"github.com/notarize/docker-notarize/ledger/storage"
)

// topNodes keeps the top levels of a map that this process alone updates
// (a local map: pebble's LOCK or bbolt's file lock keeps other processes
// out), as stored at one position, so that a fold reads them from memory
// rather than from the store. Folds of 1,024 keys into a map of
// 1,000,000 read about 20 node IDs a statement from the store's snapshot
// (a path's node and its sibling a level, the top levels shared by the
// batch); with depths 0-16 kept here and warm, about 9 (BenchmarkFoldCommit,
// store-ids/op).
//
// A hit is handed out as a copy, as the stores' readers do: a caller that
// wrote into one would otherwise change what every later fold reads.
//
// It holds exactly what the store holds at pos, for the IDs it holds:
// nodes enter it only from a snapshot read at pos (over, with the
// generation the reader was made at), and it moves to a new position only
// by the writes of a commit from pos that the store stored (committed).
// Anything else (a failed or uncertain update, a snapshot at another
// position) empties it. Nothing in it is trusted beyond that: the roots
// it helps compute are the roots the store's nodes give.
type topNodes struct {
	mu    sync.Mutex
	valid bool
	pos   uint64            // the stored map's position the nodes are of
	gen   uint64            // bumped at every change of pos or reset: readers of an older one fill nothing
	depth int               // nodes at depths up to depth are kept
	nodes map[string][]byte // by node ID bytes; a nil value: none stored

	hits, misses int // IDs answered from memory, and read from the store (kept ones only); tests
}

// topDepth is the deepest level kept for a map at position pos: eight
// levels above pathsEnd, about four above the depth where most of its
// leaves are, so that each kept node is read by many folds; at most 17
// (2^18 IDs, ~38 MiB). At 1,000,000 entries it keeps depths 0-16.
func topDepth(pos uint64) int {
	return min(maxTopDepth, max(0, bits.Len64(pos)-4))
}

const maxTopDepth = 17

// idDepth returns the depth of a node ID in its Bytes form, and false for
// an ID too short to hold one.
func idDepth(id []byte) (int, bool) {
	if len(id) < 2 {
		return 0, false
	}
	return int(binary.BigEndian.Uint16(id)), true
}

// over returns r, a snapshot of the stored map at position pos, read
// through t: the kept levels' nodes from memory, the others (and the kept
// ones not yet read) from r, which fill t while it is still at pos. A nil
// t reads r alone.
func (t *topNodes) over(r storage.MapNodeReader, pos uint64) storage.MapNodeReader {
	if t == nil {
		return r
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.valid || t.pos != pos {
		t.valid, t.pos, t.depth, t.nodes = true, pos, topDepth(pos), make(map[string][]byte)
		t.gen++
	}
	return &topReader{t: t, r: r, gen: t.gen}
}

// committed moves t to the map that commit c, stored over t's position,
// made: its writes at the kept levels replace what t holds. A commit from
// another position empties t.
func (t *topNodes) committed(c *storage.MapCommit) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gen++
	if !t.valid || c.From != t.pos {
		t.valid, t.nodes = false, nil
		return
	}
	for _, w := range c.Writes {
		d, ok := idDepth(w.ID)
		switch {
		case !ok:
			t.valid, t.nodes = false, nil
			return
		case d > t.depth:
		case w.Delete:
			t.nodes[string(w.ID)] = nil
		default:
			t.nodes[string(w.ID)] = bytes.Clone(w.Node)
		}
	}
	t.pos, t.depth = c.Position, topDepth(c.Position)
}

// reset empties t: an update failed, and what the store holds is not known.
func (t *topNodes) reset() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.valid, t.nodes = false, nil
	t.gen++
}

// topReader reads a snapshot through t (topNodes.over).
type topReader struct {
	t   *topNodes
	r   storage.MapNodeReader
	gen uint64
}

// MapNodes implements storage.MapNodeReader.
func (tr *topReader) MapNodes(ctx context.Context, ids [][]byte) ([][]byte, error) {
	t := tr.t
	out := make([][]byte, len(ids))
	rest, at := make([][]byte, 0, len(ids)), make([]int, 0, len(ids))
	t.mu.Lock()
	live := t.gen == tr.gen
	for i, id := range ids {
		if d, ok := idDepth(id); live && ok && d <= t.depth {
			if v, held := t.nodes[string(id)]; held {
				out[i] = bytes.Clone(v)
				t.hits++
				continue
			}
		}
		rest, at = append(rest, id), append(at, i)
	}
	t.mu.Unlock()
	got, err := readRest(ctx, tr.r, out, rest, at)
	if err != nil {
		return nil, err
	}
	if len(got) == 0 {
		return out, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	live = t.gen == tr.gen
	for j := range rest {
		if d, ok := idDepth(rest[j]); live && ok && d <= t.depth {
			t.nodes[string(rest[j])] = bytes.Clone(got[j])
			t.misses++
		}
	}
	return out, nil
}
