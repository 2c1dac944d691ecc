package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/vindex"
)

// Folding ahead. A root is committed (stored, so that lookups prove
// against it) only once a published checkpoint covers its entry: about a
// second under ingest, the update lock held throughout. Meanwhile the
// entries after the root's range are folded, over the map as the commit
// will store it, so that the next update, which must wait for the lock
// and for this commit, finds most of its fold done and appends its root
// sooner: the root's latency, and the tail of the log that every client
// reads after the newest root, shrink by about a fold.
//
// Folding ahead appends nothing to the log and stores nothing: roots are
// still appended only under the lock, after the previous commit, so they
// stay in log order, each covering at least as many entries as the one
// before. The next update uses the fold only if the stored position is
// the one it was folded from (another instance sharing the map may have
// advanced it; a rebuild may have reset it). The map after the log's first
// P entries is one tree whatever folded it (the tree is canonical), so
// nodes read under the next lock, with the writes folded ahead over them,
// are the nodes the fold ahead read.

// Between updates, while entries accumulate towards the next commit
// (Config.MapCommitEntries or MapCommitInterval), preFold folds them too,
// over a snapshot of the stored map (MapView): a quarter of the cadence at
// a time, so that the update, under the lock, folds only what arrived
// since. The same position check applies.

// aheadEnd returns where a fold ahead from from may end when size entries
// are indexed: at most a build chunk of entries (mapBuildChunk), since its
// writes are kept in memory until an update stores them. While updates
// fail (a database outage, a root that is not published) it stops
// growing, and the update folds the rest itself.
func (f *mapFollower) aheadEnd(from, size uint64) uint64 {
	chunk := uint64(mapBuildChunk)
	if f.l.cfg.mapBuildChunk > 0 {
		chunk = uint64(f.l.cfg.mapBuildChunk)
	}
	if size > from+chunk {
		f.aheadCapped.Add(1)
		return from + chunk
	}
	return size
}

// aheadPoll is how often the fold ahead looks for new entries while the
// root's append waits.
const aheadPoll = 100 * time.Millisecond

// folded is a fold in progress: the map after the entries [from, to), as
// writes over the stored map at from.
type folded struct {
	from, to uint64
	root     vindex.Hash
	stmts    int
	writes   map[string]storage.MapNodeWrite // by node ID bytes; the last write of each node
}

func newFolded(at uint64) *folded {
	return &folded{from: at, to: at, writes: make(map[string]storage.MapNodeWrite)}
}

// commitWrites returns fd's writes for a storage.MapCommit.
func (fd *folded) commitWrites() []storage.MapNodeWrite {
	out := make([]storage.MapNodeWrite, 0, len(fd.writes))
	for _, w := range fd.writes {
		out = append(out, w)
	}
	return out
}

// layeredNodes reads nodes from the writes of layers, the first that holds
// a node winning, and from base for the others.
type layeredNodes struct {
	layers []map[string]storage.MapNodeWrite
	base   storage.MapNodeReader
}

// MapNodes implements storage.MapNodeReader.
func (l layeredNodes) MapNodes(ctx context.Context, ids [][]byte) ([][]byte, error) {
	out := make([][]byte, len(ids))
	var rest [][]byte
	var at []int
ids:
	for i, id := range ids {
		for _, layer := range l.layers {
			if w, ok := layer[string(id)]; ok {
				if !w.Delete {
					out[i] = w.Node
				}
				continue ids
			}
		}
		rest, at = append(rest, id), append(at, i)
	}
	if _, err := readRest(ctx, l.base, out, rest, at); err != nil {
		return nil, err
	}
	return out, nil
}

// readRest reads the nodes rest from r into out, the one of rest[j] at
// out[at[j]], and returns what r answered; an answer of another length
// than rest is an error.
func readRest(ctx context.Context, r storage.MapNodeReader, out, rest [][]byte, at []int) ([][]byte, error) {
	if len(rest) == 0 {
		return nil, nil
	}
	got, err := r.MapNodes(ctx, rest)
	if err != nil {
		return nil, err
	}
	if len(got) != len(rest) {
		return nil, fmt.Errorf("read map nodes: %d answers for %d nodes", len(got), len(rest))
	}
	for j, i := range at {
		out[i] = got[j]
	}
	return got, nil
}

// foldTo folds the entries [fd.to, to) into fd, reading the map's nodes
// from fd's writes, then below (writes folded before fd's range and not
// stored yet; may be nil), then base. On error fd is unchanged.
func (f *mapFollower) foldTo(ctx context.Context, fd *folded, below map[string]storage.MapNodeWrite, base storage.MapNodeReader, to uint64) error {
	if to <= fd.to {
		return nil
	}
	layers := []map[string]storage.MapNodeWrite{fd.writes}
	if below != nil {
		layers = append(layers, below)
	}
	root, writes, stmts, err := f.fold(ctx, newNodeCache(ctx, layeredNodes{layers: layers, base: base}), fd.to, to)
	if err != nil {
		return fmt.Errorf("fold entries [%d, %d): %w", fd.to, to, err)
	}
	for _, w := range writes {
		id := w.ID.Bytes()
		fd.writes[string(id)] = storage.MapNodeWrite{ID: id, Node: w.Node.Marshal(), Delete: w.Delete}
	}
	fd.to, fd.root, fd.stmts = to, root, fd.stmts+stmts
	return nil
}

// aheadAt returns the fold ahead if it continues the stored state st: it
// starts at st's position, where a root is stored. Otherwise it returns an
// empty fold at st's position, and false.
func (f *mapFollower) aheadAt(st storage.MapState) (*folded, bool) {
	if a := f.ahead; a != nil && st.Root != nil && a.from == st.Position {
		return a, true
	}
	return newFolded(st.Position), false
}

// takeAhead returns the fold for an update of the stored state st to
// continue (aheadAt); the fold ahead is used once.
func (f *mapFollower) takeAhead(st storage.MapState) *folded {
	fd, ok := f.aheadAt(st)
	f.ahead = nil
	if ok {
		f.aheadUsed.Add(1)
	}
	return fd
}

// foldAhead folds, until stop is called, the entries after done's range
// over the map as done's commit will store it (done's writes over base),
// and stop returns that fold (nil when nothing was folded). base is read
// by this goroutine alone until stop returns: the caller does not read it
// meanwhile (it waits for the root's publication). stop lets a fold in
// progress finish rather than cancel its reads: a MySQL read cancelled
// mid-query closes its connection, and with it the update's transaction.
func (f *mapFollower) foldAhead(ctx context.Context, base storage.MapNodeReader, done *folded) (stop func() *folded) {
	quit := make(chan struct{})
	out := make(chan *folded, 1)
	go func() {
		fd := newFolded(done.to)
		fd.root = done.root
		defer func() { out <- fd }()
		for {
			select {
			case <-quit:
				return
			case <-ctx.Done():
				return
			case <-time.After(aheadPoll):
			}
			if n := f.aheadEnd(fd.from, f.l.store.Processed()); n > fd.to {
				if err := f.foldTo(ctx, fd, done.writes, base, n); err != nil {
					return // keep what was folded; the next update folds the rest
				}
			}
		}
	}()
	return func() *folded {
		close(quit)
		fd := <-out
		if fd.to == fd.from {
			return nil
		}
		return fd
	}
}

// errMapMoved ends a preFold whose snapshot is not at the fold's position.
var errMapMoved = errors.New("the stored map moved")

// preFold folds the entries after the stored map's position st, up to
// size, while they wait for the next update: continuing the fold ahead if
// it starts at st's position, from st's position otherwise. It folds once
// a quarter of MapCommitEntries entries, or of MapCommitInterval, has
// passed since it last did, and only past a committed root (not while the
// map is being built in chunks). An error leaves the update to fold those
// entries itself: it is not reported.
func (f *mapFollower) preFold(ctx context.Context, st storage.MapState, size uint64) {
	if st.Root == nil {
		return
	}
	fd, _ := f.aheadAt(st)
	size = f.aheadEnd(fd.from, size)
	if size <= fd.to || size-fd.to < uint64(max(1, f.entries/4)) && time.Since(f.preFoldAt) < f.every/4 {
		return
	}
	f.preFoldAt = time.Now()
	err := f.m.MapView(ctx, func(vst storage.MapState, r storage.MapNodeReader) error {
		if vst.Position != fd.from || vst.Root == nil {
			return errMapMoved
		}
		return f.foldTo(ctx, fd, nil, f.top.over(r, vst.Position), size)
	})
	if err == nil {
		f.ahead = fd
		f.preFolds.Add(1)
	}
}
