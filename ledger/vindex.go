package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/tessera"
	bolt "go.etcd.io/bbolt"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/vindex"
)

// The verifiable index (issue 11): a map from (subject digest, signer key
// ID) to a commitment to that key's statements about that digest (package
// vindex), derived from the log in log order and committed to by it. Every
// MapCommitEntries statements, or MapCommitInterval after the first one
// that is not yet committed, the ledger computes the map after the log's
// first S entries, appends a map-root entry (notarize.MapRoot: the root and
// S, signed by the checkpoint key) and, once that entry is published, keeps
// the new map. The stored map is therefore always the map of the newest
// committed root, and a current lookup proves each asked-for key against it
// (api.MapProof); the client reads the log after S itself, or takes it
// inline (api.TailInline), or, when the root is recent, proves its answer
// complete up to the root's time without it (api.TailAnchor, appendRoot).

// Defaults of the map's commitment cadence (Config.MapCommitEntries,
// Config.MapCommitInterval). A client reads the tail of the log after the
// newest root: about MapCommitEntries entries at most, plus what arrived
// while the root was being published.
const (
	DefaultMapCommitEntries  = 1024
	DefaultMapCommitInterval = 2 * time.Second
)

// mapPoll is how often the map follower looks for new entries.
const mapPoll = 50 * time.Millisecond

// mapBuildChunk bounds the entries folded into one commit while the map is
// being built (no root committed yet: a new map, a rebuild, an upgrade):
// the map is then stored in chunks, without a root, until it has caught
// up with the log, and the first root covers the whole log, never fewer
// entries than a root already in it. Once a root is committed, every
// commit folds everything waiting and commits a root.
const mapBuildChunk = 8192

// committedRoot is the newest map-root entry in the log.
type committedRoot = storage.MapRoot

// parsedRoot is a committed root with what its entry says
// (notarize.MapRoot), parsed and its signature checked once per root
// (mapFollower.parsed), not once per lookup.
type parsedRoot struct {
	committedRoot
	size uint64    // the log entries the root covers
	time time.Time // when the ledger read size (MapRoot.Time); zero for a root without it
}

// proofs returns the newest committed root and the proof of each of keyIDs
// (sorted) for d, read in one snapshot so that they agree; no root (nil)
// while the map is being built.
func proofs(ctx context.Context, m storage.MapStore, d notarize.Digest, keyIDs []string) (*committedRoot, []api.KeyMapProof, error) {
	var root *committedRoot
	out := make([]api.KeyMapProof, 0, len(keyIDs))
	err := m.MapView(ctx, func(st storage.MapState, r storage.MapNodeReader) error {
		if st.Root == nil {
			return nil
		}
		root = st.Root
		nodes := newProofCache(ctx, r, st.Position, len(keyIDs))
		keys := make([]vindex.Key, len(keyIDs))
		for i, k := range keyIDs {
			keys[i] = vindex.MapKey(d, k)
		}
		if err := nodes.prefetch(keys); err != nil {
			return err
		}
		for i, k := range keyIDs {
			p, value, err := vindex.Prove(nodes, keys[i])
			if err != nil {
				return err
			}
			out = append(out, keyMapProof(k, p, value))
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("map proofs: %w", err)
	}
	return root, out, nil
}

// keyMapProof is p and value on the wire.
func keyMapProof(keyID string, p *vindex.Proof, value []byte) api.KeyMapProof {
	kp := api.KeyMapProof{KeyID: keyID, Value: value, Depth: p.Depth, Bitmap: p.Bitmap}
	for _, s := range p.Siblings {
		kp.Siblings = append(kp.Siblings, slices.Clone(s[:]))
	}
	if p.LeafKey != nil {
		kp.LeafKey, kp.LeafValueHash = slices.Clone(p.LeafKey[:]), slices.Clone(p.LeafValueHash[:])
	}
	return kp
}

// mapFollower folds the log into the map and commits its roots.
type mapFollower struct {
	l       *Ledger
	m       storage.MapStore
	close   func() error     // closes m, when the ledger opened it
	tap     *rowTap          // the index's rows not yet folded (fold_rows.go); nil: none
	shared  bool             // m is the storage's, shared by several instances
	top     *topNodes        // the map's top levels in memory (mapstore_top.go); nil for a shared map
	now     func() time.Time // the ledger's clock (clock); nil: time.Now
	entries int
	every   time.Duration
	cancel  context.CancelFunc
	done    chan struct{}

	roots    atomic.Int64 // roots committed by this instance
	rootTime atomic.Int64 // their MapUpdate time, in nanoseconds
	foldTime atomic.Int64 // the part of it spent folding (advance, before the root's append)

	aheadUsed   atomic.Int64 // updates that continued a fold ahead (fold_ahead.go)
	preFolds    atomic.Int64 // folds ahead between updates (preFold)
	aheadCapped atomic.Int64 // folds ahead that stopped at their bound (aheadEnd)

	newest     atomic.Pointer[parsedRoot] // the newest root parsed (parsed)
	rootParses atomic.Int64               // root entries parsed: once per root, not per lookup

	// Used by run's goroutine alone.
	ahead       *folded       // the fold ahead of the stored map (fold_ahead.go)
	preFoldAt   time.Time     // when preFold last folded
	nextAhead   *folded       // the fold ahead of the commit in progress
	seen        uint64        // the map's position as last read
	seenAt      time.Time     // when
	pendingFrom uint64        // the position from which pendingSince counts
	backoff     time.Duration // the wait after the next error
}

// mapPath returns where the map's file is when the storage keeps no map of
// its own: in Config.MapDir, else in the storage's data directory (POSIX);
// "" when there is neither.
func (l *Ledger) mapPath() string {
	if l.cfg.MapDir != "" {
		return filepath.Join(l.cfg.MapDir, mapFileName)
	}
	if d, ok := l.st.(interface{ Dir() string }); ok {
		return filepath.Join(d.Dir(), mapFileName)
	}
	return ""
}

// mapRebuildCommand returns the command that drops the map of this
// ledger's own (mapPath) while it is stopped, for the messages that ask
// an operator to: map-rebuild finds the map where the ledger does, in
// --map-dir when it has one.
func (l *Ledger) mapRebuildCommand() string {
	cmd := "notarize-ledger map-rebuild --data DIR"
	if d, ok := l.st.(interface{ Dir() string }); ok {
		cmd = "notarize-ledger map-rebuild --data " + shellQuote(d.Dir())
	}
	if l.cfg.MapDir != "" {
		cmd += " --map-dir " + shellQuote(l.cfg.MapDir)
	}
	return cmd
}

// shellQuote returns s as one word of a POSIX shell command: as it is when
// it holds nothing a shell would read, else in single quotes.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// startMap opens the map, the storage's (shared) or a bbolt file or pebble
// directory of the ledger's own (openLocalMapStore), and starts its follower; it stops when ctx is done, and
// closeMap waits for it.
func (l *Ledger) startMap(ctx context.Context) error {
	if l.cfg.noMap {
		return nil
	}
	f := &mapFollower{l: l, m: l.st.Map(), close: func() error { return nil }, shared: l.st.Map() != nil,
		entries: l.cfg.mapCommitEntries(), every: l.cfg.mapCommitInterval(), done: make(chan struct{}), backoff: mapPoll,
		tap: l.rowTapOf(), now: l.cfg.clock}
	switch {
	case f.shared && l.cfg.MapDir != "":
		l.log.WarnContext(ctx, "--map-dir is deprecated and ignored: the verifiable index lives in the database, one map shared by every instance; the directory may be deleted",
			slog.String("map_dir", l.cfg.MapDir))
	case !f.shared:
		path := l.mapPath()
		if path == "" {
			return nil // New refused this storage: ErrNoMapDir
		}
		m, closeMap, err := openLocalMapStore(filepath.Dir(path), l.st)
		if err != nil {
			return err
		}
		if err := l.checkMapOfLog(ctx, m, filepath.Dir(path)); err != nil {
			return errors.Join(err, closeMap())
		}
		f.m, f.close, f.top = m, closeMap, &topNodes{}
	}
	f.loadRoot(ctx)
	ctx, f.cancel = context.WithCancel(ctx)
	l.vmap = f
	go f.run(ctx)
	return nil
}

// ErrMapNotOfLog is the error of a ledger whose map (kept in a directory
// of its own) is not the map of its log: ahead of it (the data directory
// restored from an older backup, the map not), or another ledger's (a
// --map-dir copied from another host). Folding onto it would sign map
// roots the log does not recompute (a fork).
var ErrMapNotOfLog = errors.New("the verifiable index is not the map of this ledger's log")

// checkMapOfLog refuses a map kept in dir whose stored state its log does
// not back: a position beyond the log's published size, or a committed
// root entry that is not the log's entry at its index (read from the
// digest index's entry bytes; a root at an index the digest index has not
// reached yet is checked by position only).
func (l *Ledger) checkMapOfLog(ctx context.Context, m storage.MapStore, dir string) error {
	st, err := m.MapState(ctx)
	if err != nil {
		return fmt.Errorf("open map: %w", err)
	}
	if st.Position == 0 && st.Root == nil {
		return nil
	}
	todo := fmt.Sprintf("if %s is this ledger's, delete it (%s, or rm: it is rebuilt from the log); if it is another ledger's, give this one its own --map-dir", dir, l.mapRebuildCommand())
	var size uint64 // no checkpoint yet: an empty log
	switch raw, err := l.reader.ReadCheckpoint(ctx); {
	case err == nil:
		if size, err = parseCheckpointSize(raw); err != nil {
			return fmt.Errorf("open map: %w", err)
		}
	case !errors.Is(err, os.ErrNotExist): // not a map to delete: a log that cannot be read
		return fmt.Errorf("open map: read checkpoint: %w", err)
	}
	if st.Position > size {
		return fmt.Errorf("%w: the map in %s covers %d entries, the log holds %d; %s", ErrMapNotOfLog, dir, st.Position, size, todo)
	}
	if st.Root == nil {
		return nil
	}
	if st.Root.Index >= size {
		return fmt.Errorf("%w: the map's root entry in %s is at %d, the log holds %d; %s", ErrMapNotOfLog, dir, st.Root.Index, size, todo)
	}
	if st.Root.Index >= l.store.Processed() {
		return nil
	}
	var logged []byte
	if err := l.store.entries(ctx, []uint64{st.Root.Index}, func(_ uint64, data []byte) bool {
		logged = bytes.Clone(data)
		return false
	}); err != nil {
		return fmt.Errorf("open map: %w", err)
	}
	if !bytes.Equal(logged, st.Root.Entry) {
		return fmt.Errorf("%w: the map's root entry in %s is not the log's entry %d; %s", ErrMapNotOfLog, dir, st.Root.Index, todo)
	}
	return nil
}

// closeMap stops the map follower, waits for it and closes the map. It is
// called before the log shuts down: a root appended meanwhile is then
// sequenced, and the follower stops waiting for its publication.
func (l *Ledger) closeMap() error {
	if l.vmap == nil {
		return nil
	}
	l.vmap.cancel()
	<-l.vmap.done
	return l.vmap.close()
}

func (c Config) mapCommitEntries() int {
	if c.MapCommitEntries > 0 {
		return c.MapCommitEntries
	}
	return DefaultMapCommitEntries
}

func (c Config) mapCommitInterval() time.Duration {
	if c.MapCommitInterval > 0 {
		return c.MapCommitInterval
	}
	return DefaultMapCommitInterval
}

// mapIdleRead is how often the follower reads the map's state while the
// index has nothing it has not seen folded: a shared map reset by
// map-rebuild is noticed within it. mapMaxBackoff bounds the wait after
// errors (a database outage).
const (
	mapIdleRead   = time.Second
	mapMaxBackoff = 2 * time.Second
)

// run commits map roots until ctx is done.
func (f *mapFollower) run(ctx context.Context) {
	defer close(f.done)
	var pendingSince time.Time // when entries after the map's position were first seen
	wait := mapPoll
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		since, err := f.step(ctx, pendingSince)
		pendingSince = since
		wait = mapPoll
		if err != nil && ctx.Err() == nil {
			f.l.log.WarnContext(ctx, "verifiable index", slog.Any("error", err), slog.Duration("retry_in", f.backoff))
			wait, f.backoff = f.backoff, min(2*f.backoff, mapMaxBackoff)
		} else {
			f.backoff = mapPoll
		}
	}
}

// step advances the map over the entries after its position, once
// MapCommitEntries entries wait or the first waited MapCommitInterval. It
// returns when the waiting entries were first seen (zero when none wait).
// Another instance updating the shared map meanwhile is no error: its
// commit covers these entries, or the next step does; the wait starts
// again from the position it stored.
func (f *mapFollower) step(ctx context.Context, pendingSince time.Time) (time.Time, error) {
	size := f.l.store.Processed()
	if size <= f.seen && time.Since(f.seenAt) < mapIdleRead {
		return pendingSince, nil // nothing new to the map as last read
	}
	st, err := f.m.MapState(ctx)
	if err != nil {
		return pendingSince, fmt.Errorf("read map state: %w", err)
	}
	f.seen, f.seenAt = st.Position, time.Now()
	if f.tap != nil {
		f.tap.forget(st.Position)
	}
	if size <= st.Position {
		return time.Time{}, nil
	}
	if pendingSince.IsZero() || st.Position != f.pendingFrom {
		pendingSince, f.pendingFrom = time.Now(), st.Position
	}
	if size-st.Position < uint64(f.entries) && time.Since(pendingSince) < f.every {
		f.preFold(ctx, st, size) // fold_ahead.go
		return pendingSince, nil
	}
	var done *storage.MapCommit
	start := time.Now()
	f.nextAhead = nil
	err = f.m.MapUpdate(ctx, func(st storage.MapState, r storage.MapNodeReader) (*storage.MapCommit, error) {
		c, err := f.advance(ctx, st, f.top.over(r, st.Position))
		done = c
		return c, err
	})
	switch {
	case err != nil:
		f.top.reset() // the update may or may not be stored
	case done != nil:
		f.top.committed(done)
		f.ahead = f.nextAhead // continued by the next update if the map is still at done.Position
	}
	f.nextAhead = nil
	switch {
	case errors.Is(err, storage.ErrMapBusy):
		return pendingSince, nil
	case err != nil:
		return pendingSince, err
	case done == nil:
		return pendingSince, nil
	}
	if f.tap != nil {
		f.tap.forget(done.Position)
	}
	if done.Root != nil {
		f.roots.Add(1)
		f.rootTime.Add(int64(time.Since(start)))
		f.l.log.DebugContext(ctx, "map root committed", slog.Uint64("size", done.Position), slog.Uint64("index", done.Root.Index))
	}
	return time.Time{}, nil
}

// advance folds the entries after the stored map's position (st, read
// under the map's update lock) into the map, continuing the fold ahead
// when it starts there (fold_ahead.go), and, when any was a statement,
// appends the new root to the log and waits for its publication, folding
// ahead meanwhile. It returns the commit that stores them.
func (f *mapFollower) advance(ctx context.Context, st storage.MapState, r storage.MapNodeReader) (*storage.MapCommit, error) {
	to, at, err := f.target(ctx)
	if err != nil || to <= st.Position {
		return nil, err
	}
	chunk := uint64(mapBuildChunk)
	if f.l.cfg.mapBuildChunk > 0 {
		chunk = uint64(f.l.cfg.mapBuildChunk)
	}
	building, final := st.Root == nil, true
	if building && to-st.Position > chunk {
		to, final = st.Position+chunk, false
	}
	start := time.Now()
	fd := f.takeAhead(st) // what was folded ahead of st, if anything
	if err := f.foldTo(ctx, fd, nil, r, max(to, fd.to)); err != nil {
		return nil, err
	}
	foldTook := time.Since(start)
	c := &storage.MapCommit{From: st.Position, Position: fd.to, Writes: fd.commitWrites()}
	if !final || fd.root == vindex.Empty || fd.stmts == 0 && !building {
		// The map is being built in chunks, or holds nothing yet, or the
		// entries were only map roots or no statements: the root stays.
		return c, nil
	}
	stop := f.foldAhead(ctx, r, fd)
	c.Root, err = f.appendRoot(ctx, fd.to, fd.root, at) // fd.to >= to: entries folded ahead were indexed before at
	f.nextAhead = stop()
	if err != nil {
		return nil, err
	}
	f.foldTime.Add(int64(foldTook))
	return c, nil
}

// target returns how many entries the map may cover now: those the index
// covers, and the time at which it read that, just before: every entry
// indexed before it is among them. On a map shared by several instances,
// it first waits for the index to cover every entry already sequenced, a
// root entry another instance appended and did not commit (it failed or
// died) among them, so that the root this instance commits covers at least
// as many entries as any root before it in the log (the proxy's audit
// fails closed on a root covering fewer).
func (f *mapFollower) target(ctx context.Context) (uint64, time.Time, error) {
	// The clock is read first: an entry indexed before it, by this
	// instance or (on a shared map) another one, was sequenced before it,
	// so it is below the next index read below, which the index covers
	// before Processed is read (review 3: read after the wait, an entry
	// another instance indexed meanwhile could be claimed and left out).
	at := f.clock()
	if f.shared {
		n, err := f.l.reader.NextIndex(ctx)
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("read the log's next index: %w", err)
		}
		wctx, cancel := context.WithTimeout(ctx, indexWait)
		defer cancel()
		if err := f.l.store.WaitProcessed(wctx, n); err != nil {
			return 0, time.Time{}, fmt.Errorf("wait for the index to cover %d entries: %w", n, err)
		}
	}
	return f.l.store.Processed(), at, nil
}

// mapStatement returns the statement of a log entry that the map folds,
// as vindex.Batch.Add decides: one that parses and verifies as logged;
// false for any other entry, a map root among them.
func mapStatement(data []byte) (*notarize.Verified, bool) {
	return mapStatementWith(data, nil)
}

// mapStatementWith is mapStatement with signer keys from keys (nil: each
// parsed), the index follower's cache: the same check, with a key parsed
// once and, for a busy key, its table of multiples.
func mapStatementWith(data []byte, keys *notarize.KeyCache) (*notarize.Verified, bool) {
	if notarize.IsMapRoot(data) {
		return nil, false
	}
	e, err := notarize.ParseEntry(data)
	if err != nil {
		return nil, false
	}
	v, err := e.VerifyLoggedWith(keys)
	return v, err == nil
}

// fold computes the map after the entries [from, to) (from being the
// stored map's position, nodes reading it): its root, the writes that
// store it and the number of statements among the entries, taken from the
// index's rows where the tap keeps them (fold_rows.go). The paths of the
// keys the statements update are read first, a level at a time.
func (f *mapFollower) fold(ctx context.Context, nodes *nodeCache, from, to uint64) (root vindex.Hash, writes []vindex.NodeWrite, stmts int, err error) {
	found, err := f.l.foldStatements(ctx, f.tap, from, to)
	if err != nil {
		return root, nil, 0, err
	}
	keys := make([]vindex.Key, len(found))
	for i, s := range found {
		keys[i] = vindex.MapKey(s.d, s.keyID)
	}
	slices.SortFunc(keys, func(a, b vindex.Key) int { return bytes.Compare(a[:], b[:]) })
	keys = slices.Compact(keys) // one signer's statements about one digest share a key
	nodes.reserve(from, len(keys))
	if err := nodes.prefetch(keys); err != nil {
		return root, nil, 0, err
	}
	batch := vindex.NewBatch(nodes)
	for _, s := range found {
		if err := batch.AddStatement(s.index, s.d, s.keyID, s.ts, s.leaf); err != nil {
			return root, nil, 0, err
		}
	}
	root, writes, err = vindex.Apply(nodes, batch.Updates())
	return root, writes, len(found), err
}

// appendRoot appends the map-root entry of root after the log's first
// size entries, whose size the ledger read at the time at, and waits until
// a published checkpoint covers it.
//
// The root's time (notarize.MapRoot.Time) is at, truncated to the second:
// every entry indexed before it is below size. target read the index's
// size after taking at, so it counts every entry indexed before at; size
// is at least that, the entries folded ahead beyond it (fold_ahead.go)
// having been indexed earlier still; on a map shared by several instances
// target first waited for the index to cover every entry sequenced. A
// client that finds the root recent takes the answer proven against it as
// complete up to its time, without reading the log after it
// (api.TailAnchor). A zero at, or one before 1970 or after 9999, signs a
// root without a time, as roots were before the line existed.
func (f *mapFollower) appendRoot(ctx context.Context, size uint64, root vindex.Hash, at time.Time) (*committedRoot, error) {
	mr := &notarize.MapRoot{Origin: f.l.Origin(), Size: size, Root: root}
	if at.Unix() > 0 && at.Year() <= 9999 { // what notarize.ParseMapRoot accepts
		mr.Time = time.Unix(at.Unix(), 0).UTC()
	}
	entry, err := mr.Sign(f.l.id.Signer)
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, receiptTimeout)
	defer cancel()
	idx, _, err := f.l.awaiter.Await(actx, f.l.add(actx, tessera.NewEntry(entry)))
	if err != nil {
		return nil, fmt.Errorf("append map root for %d entries: %w", size, err)
	}
	c := &committedRoot{Index: idx.Index, Entry: entry}
	f.newest.Store(&parsedRoot{committedRoot: *c, size: size, time: mr.Time}) // signed here: no parse
	return c, nil
}

// clock returns the time by the ledger's clock (Config.clock, for tests).
func (f *mapFollower) clock() time.Time {
	if f.now != nil {
		return f.now()
	}
	return time.Now()
}

// parsed returns r with what its entry says. Only a root other than the
// newest one seen is parsed and its signature checked: the newest is kept
// from this instance's commits (appendRoot), from the stored root read at
// start (loadRoot), and from the first lookup that proves against a root
// another instance committed to a shared map.
func (f *mapFollower) parsed(r *committedRoot) (*parsedRoot, error) {
	if p := f.newest.Load(); p != nil && p.Index == r.Index && bytes.Equal(p.Entry, r.Entry) {
		return p, nil
	}
	f.rootParses.Add(1)
	mr, err := notarize.ParseMapRoot(r.Entry, f.l.id.Verifier)
	if err != nil {
		return nil, fmt.Errorf("map root entry %d: %w", r.Index, err)
	}
	p := &parsedRoot{committedRoot: committedRoot{Index: r.Index, Entry: slices.Clone(r.Entry)}, size: mr.Size, time: mr.Time}
	f.newest.Store(p)
	return p, nil
}

// loadRoot parses the stored root, if any, as the ledger starts, so that
// lookups find it parsed. A map that cannot be read, or a root that does
// not parse, is left to the follower and to lookups, which report it.
func (f *mapFollower) loadRoot(ctx context.Context) {
	st, err := f.m.MapState(ctx)
	if err != nil || st.Root == nil {
		return
	}
	if _, err := f.parsed(st.Root); err != nil {
		f.l.log.WarnContext(ctx, "verifiable index: the stored map root", slog.Any("error", err))
	}
}

// mapProof returns the map proof of a current lookup for d by keyIDs, or
// nil when the ledger keeps no map or has committed no root yet. It is
// read before the answer's checkpoint, so that the checkpoint covers the
// root entry: a root is stored only once a published checkpoint covers
// its entry, and the stored map is always the map of the stored root.
func (l *Ledger) mapProof(ctx context.Context, d notarize.Digest, keyIDs []string) (*api.MapProof, *parsedRoot, error) {
	if l.vmap == nil {
		return nil, nil, nil
	}
	ids := slices.Clone(keyIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	root, keys, err := proofs(ctx, l.vmap.m, d, ids)
	if err != nil || root == nil {
		return nil, nil, err
	}
	pr, err := l.vmap.parsed(root)
	if err != nil {
		return nil, nil, fmt.Errorf("map proofs: %w", err)
	}
	return &api.MapProof{Keys: keys}, pr, nil
}

// proveMapRoot adds the committed root entry and its inclusion proof under
// the checkpoint cp (checked against it, checkedProofs) to mp.
func (l *Ledger) proveMapRoot(ctx context.Context, mp *api.MapProof, root *parsedRoot, cp *log.Checkpoint) error {
	if mp == nil || root == nil {
		return nil
	}
	if root.Index >= cp.Size {
		return fmt.Errorf("%w: map root entry %d is not yet in the checkpoint of %d entries", ErrUnavailable, root.Index, cp.Size)
	}
	proofs, err := l.checkedProofs(ctx, cp, []uint64{root.Index}, [][]byte{root.Entry})
	if err != nil {
		return err
	}
	idx := root.Index
	mp.RootIndex, mp.RootEntry, mp.RootInclusionProof = &idx, root.Entry, proofs[0]
	return nil
}

// ErrNoMapDir is returned by New for a storage that keeps neither a map of
// its own (storage.Storage.Map) nor a data directory, when Config.MapDir
// is empty: without a map, every lookup's completeness proof would be
// missing and clients would fail closed once the log outgrows what they
// read themselves, so the ledger refuses to start instead. (MySQL keeps
// the map in its database: it needs no directory.)
var ErrNoMapDir = errors.New("this storage keeps no verifiable index and has no data directory: give the ledger a directory for it (notarize-ledger --map-dir DIR; any empty directory, derived data rebuilt from the log)")

// ErrMapInUse is returned by RebuildMap while a ledger holds the map.
var ErrMapInUse = errors.New("the verifiable index is in use by a running ledger; stop it first")

// RebuildMap drops the verifiable index kept in dir (a POSIX ledger's
// data directory, or its --map-dir), both engines' files, so that the
// ledger folds it again from the whole log when it next starts, and
// commits a new root (the map is derived data:
// every committed root can be recomputed from the log, by the ledger or by
// anyone following it). It refuses while a ledger holds the map.
func RebuildMap(dir string) error {
	if err := rebuildPebbleMap(filepath.Join(dir, mapDirName)); err != nil {
		return err
	}
	path := filepath.Join(dir, mapFileName)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 500 * time.Millisecond})
	if errors.Is(err, bolt.ErrTimeout) {
		return fmt.Errorf("rebuild map %s: %w", path, ErrMapInUse)
	}
	if err != nil {
		return fmt.Errorf("rebuild map %s: %w", path, err)
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("rebuild map %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("rebuild map: %w", err)
	}
	return nil
}

// mapResetWait bounds RebuildSharedMap's wait for the instances' map
// updates, each of which holds the update lock until its root is published.
const mapResetWait = 2 * time.Minute

// RebuildSharedMap drops the verifiable index kept in st, a storage shared
// by several instances (MySQL), so that the instances fold it again from
// the whole log: in chunks of mapBuildChunk entries, then one root that
// covers the whole log. Instances may keep running: until that root is
// committed, their lookups carry no map proof (clients read the whole log
// as the tail, and refuse one longer than they read). It waits for an
// update in progress (storage.ErrMapBusy) up to mapResetWait.
func RebuildSharedMap(ctx context.Context, st Storage) error {
	m := st.Map()
	if m == nil {
		return fmt.Errorf("rebuild map: %s keeps no shared map (POSIX: notarize-ledger map-rebuild --data DIR)", st)
	}
	deadline := time.Now().Add(mapResetWait)
	for {
		err := m.MapReset(ctx)
		if !errors.Is(err, storage.ErrMapBusy) || time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("rebuild map: %w", err)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rebuild map: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
