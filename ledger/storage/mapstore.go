package storage

import (
	"context"
	"errors"
)

// The verifiable index (package ledger, vindex.go; the tree is package
// vindex) is a sparse Merkle map derived from the log. A storage shared by
// several ledger instances keeps it beside the log, so that the instances
// produce one map, whose updates are ordered by log index; a storage used
// by one process returns nil from Storage.Map and the ledger keeps the map
// in a bbolt file in its data directory. Node IDs and nodes are the bytes
// of vindex.NodeID.Bytes and vindex.Node.Marshal: drivers do not import
// vindex.

// Errors of MapStore.MapUpdate (wrapped).
var (
	// ErrMapStale: the commit was folded from a position that is no
	// longer the stored one (another writer advanced the map, or the
	// commit lies about where it starts); nothing was written.
	ErrMapStale = errors.New("map position moved: the commit was folded from a stale position")
	// ErrMapBusy: another writer holds the map's update lock; try again
	// later (its commit advances the map meanwhile).
	ErrMapBusy = errors.New("map update in progress elsewhere")
)

// MapRoot is the newest map-root entry committed to the log: its log
// index and its bytes (a notarize.MapRoot note).
type MapRoot struct {
	Index uint64
	Entry []byte
}

// MapState is what the stored map covers: Position, how many log entries
// (from 0) are folded into it, and Root, the newest committed map-root
// entry, whose root is the stored map's (nil before the first).
type MapState struct {
	Position uint64
	Root     *MapRoot
}

// MapNodeWrite stores Node at ID, or, with Delete set, removes the node
// stored there.
type MapNodeWrite struct {
	ID     []byte
	Node   []byte
	Delete bool
}

// MapCommit advances the map from position From to Position: the node
// writes and the new root entry (nil: the root does not change, as when
// the entries folded held no statement) are stored at once, and only if
// the stored position is still From.
type MapCommit struct {
	From     uint64
	Position uint64
	Writes   []MapNodeWrite
	Root     *MapRoot
}

// MapNodeReader reads stored map nodes, all from one snapshot of the map.
type MapNodeReader interface {
	// MapNodes returns the node stored at each of ids, in order; nil
	// where none is stored.
	MapNodes(ctx context.Context, ids [][]byte) ([][]byte, error)
}

// MapStore keeps the verifiable index: its nodes by ID, its position and
// its newest committed root. Every change is one MapCommit, atomic.
type MapStore interface {
	// MapState returns the stored state.
	MapState(ctx context.Context) (MapState, error)
	// MapView calls fn with the state and a reader of the nodes of one
	// consistent snapshot: they agree while fn runs.
	MapView(ctx context.Context, fn func(MapState, MapNodeReader) error) error
	// MapUpdate takes the map's update lock, shared by every instance
	// (ErrMapBusy at once when another holds it), and calls fn with the
	// stored state and a reader of its nodes. fn folds entries, commits
	// their root to the log and returns the commit (nil: nothing to
	// store). The commit is stored only if c.From is still the stored
	// position (else ErrMapStale, nothing written). The lock is held
	// until the commit is stored or refused.
	MapUpdate(ctx context.Context, fn func(MapState, MapNodeReader) (*MapCommit, error)) error
	// MapReset drops the whole map (a rebuild): the next update folds the
	// log from entry 0. It takes the update lock like MapUpdate.
	MapReset(ctx context.Context) error
}
