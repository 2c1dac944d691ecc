package ledgerclient

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/transparency-dev/merkle/compact"
	tapi "github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// tailBundleFetches bounds the entry bundles a tail read has in flight, or
// being checked, at once: an honest tail (a few entry bundles, the map
// commits a root every thousand entries) is fetched in one round, while a
// hostile ledger serving bundles of 256 entries of 64 KiB each holds at
// most this many bundles' bytes in memory (~16 MiB each), as a Follower.
// The few hash tiles of the tail's left edge (one per tile level, at most
// eight) are fetched beside them, unbounded by it.
const tailBundleFetches = maxParallelBundles

// tailHit is a statement about the looked-up digest, by an asked-for key,
// found in the log's tail after the map root.
type tailHit struct {
	keyID string
	index uint64
	ts    time.Time
}

// readTail reads the log entries [from, cp.Size) (from < cp.Size), proves
// them to be exactly the entries of cp's tree there, and returns the tail's
// statements about d by the keys for which asked is true, in log order.
//
// Every fetch the proof needs is issued at once: the entry bundles holding
// the tail (the first from its bundle's start), at most tailBundleFetches
// in flight, and the hash tiles holding the compact range of [0, start),
// start the first bundle's first index. Each bundle is checked as it
// arrives, whatever the order: it must hold as many entries as cp's tree
// puts in it (a full bundle stands for a partial one only as its first
// entries, as a ledger serves once the partial is gone); its entries are
// hashed into its own slot, by its index, and those from from on that may
// concern d (subjectTest) are parsed strictly, and their signatures checked
// when they name an asked-for key and d (tailStatement).
// The tail counts only once the compact range of [0, start) from the tiles,
// extended by every bundle's leaf hashes in index order, hashes to cp's
// signed root: a bundle served for another index, twice, short, reordered
// or altered, or a tile that lies, fails the read with ErrBadProof. The
// first failure cancels the other fetches. A resource the lookup's answer
// carried inline (pushed, by key) is taken from it instead of fetched, and
// proven the same way; the others are read through the Client's fetch
// cache (fetchcache.go), shared with its other lookups, which never holds
// pushed bytes; a failed read drops what it read from it.
func (c *Client) readTail(ctx context.Context, cp Checkpoint, from uint64, q tailAsk, pushed tailResources) ([]tailHit, error) {
	if from >= cp.Size {
		return nil, fmt.Errorf("%w: a tail from %d in a tree of %d entries", ErrBadProof, from, cp.Size)
	}
	w := uint64(layout.EntryBundleWidth)
	start := api.TailStart(from)
	first, last := start/w, (cp.Size-1)/w
	tiles := leftTiles(start, cp.Size)

	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		once sync.Once
		ferr error
	)
	fail := func(err error) {
		once.Do(func() {
			ferr = err
			cancel()
		})
	}
	var (
		wg     sync.WaitGroup
		left   = make([][][]byte, len(tiles))
		hashes = make([][][]byte, last-first+1)
		hits   = make([][]tailHit, last-first+1)
	)
	for i, t := range tiles {
		wg.Go(func() {
			h, err := c.tileRange(fctx, t, pushed)
			if err != nil {
				fail(err)
				return
			}
			left[i] = h
		})
	}
	subject := newSubjectTest(q.d)
	sem := make(chan struct{}, tailBundleFetches)
issue:
	for i := range hashes {
		select {
		case sem <- struct{}{}:
		case <-fctx.Done():
			break issue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			h, found, err := c.tailBundle(fctx, first+uint64(i), cp.Size, from, subject, q, pushed)
			if err != nil {
				fail(err)
				return
			}
			hashes[i], hits[i] = h, found
		})
	}
	wg.Wait()
	err := ferr
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		err = proveTailRange(cp, start, tiles, left, hashes)
	}
	if err != nil {
		// Whatever failed, the next lookup fetches the tail afresh.
		keys := make([]fetchKey, 0, len(tiles)+len(hashes))
		for _, t := range tiles {
			keys = append(keys, fetchKey{t.level, t.index, t.p})
		}
		for i := range hashes {
			idx := first + uint64(i)
			keys = append(keys, fetchKey{bundleLevel, idx, layout.PartialTileSize(0, idx, cp.Size)})
		}
		c.fetches.forget(keys)
		return nil, err
	}
	var out []tailHit
	for _, h := range hits {
		out = append(out, h...)
	}
	return out, nil
}

// tailAsk is what a tail read looks for: statements about d by keys for
// which asked is true. ids, when not nil, lists those keys' IDs (hex):
// an entry holding none of them is no statement by an asked-for key.
type tailAsk struct {
	d     notarize.Digest
	asked func(keyID string) bool
	ids   [][]byte
}

// tailBundle fetches entry bundle idx of cp's tree of size size (or takes
// it from pushed), checks it holds the entries the tree puts in it, and
// returns their leaf hashes and the statements about d by asked-for keys
// among those from from on. Nothing it returns is proven yet.
func (c *Client) tailBundle(ctx context.Context, idx, size, from uint64, subject subjectTest, q tailAsk, pushed tailResources) ([][]byte, []tailHit, error) {
	p := layout.PartialTileSize(0, idx, size)
	raw, ok := pushed[fetchKey{bundleLevel, idx, p}]
	if !ok {
		var err error
		if raw, err = c.readBundle(ctx, idx, p); err != nil {
			return nil, nil, fmt.Errorf("entry bundle %d: %w", idx, err)
		}
	}
	entries, err := bundleEntries(raw, idx, p)
	if err != nil {
		return nil, nil, err
	}
	base := idx * uint64(layout.EntryBundleWidth)
	hashes := make([][]byte, len(entries))
	var hits []tailHit
	for j, leaf := range entries {
		i := base + uint64(j)
		hashes[j] = hasher.HashLeaf(leaf)
		if i < from || notarize.IsMapRoot(leaf) || !subject.mayConcern(leaf) {
			continue
		}
		if h, ok := tailStatement(i, leaf, q); ok {
			hits = append(hits, h)
		}
	}
	return hashes, hits, nil
}

// tailStatement returns the statement of the tail's entry leaf at index i
// when it is one about q.d by an asked-for key whose signature verifies
// (verifyLeaf), as the tail has always counted it. The cheap checks come
// first. The entry must hold an asked-for key's ID (q.ids): one that
// verifies names its key's ID in its signature's keyid member, 64
// lowercase hex characters that its one canonical JSON encoding spells
// verbatim. Then, on the entry parsed strictly but not yet verified, the
// key ID its signature names must be asked for (verifyLeaf refuses an
// entry whose signature names another key than its public key's), and its
// statement must be about q.d; only then is the signature checked, on
// that parsed entry (VerifyLoggedWith), not on a second parse. An
// entry that fails any check is not a statement of the tail, as before.
func tailStatement(i uint64, leaf []byte, q tailAsk) (tailHit, bool) {
	if notarize.IsMapRoot(leaf) || q.ids != nil && !slices.ContainsFunc(q.ids, func(id []byte) bool { return bytes.Contains(leaf, id) }) {
		return tailHit{}, false
	}
	e, err := notarize.ParseEntry(leaf)
	if err != nil || len(e.Envelope.Signatures) != 1 || !q.asked(e.Envelope.Signatures[0].KeyID) {
		return tailHit{}, false
	}
	payload, err := base64.StdEncoding.DecodeString(e.Envelope.Payload) // as lenient as Verify: it skips nothing Verify accepts
	if err != nil {
		return tailHit{}, false
	}
	if st, err := notarize.ParseStatement(payload); err != nil || st.Digest() != q.d {
		return tailHit{}, false
	}
	v, err := e.VerifyLoggedWith(nil) // the entry parsed above, checked as verifyLeaf checks it
	if err != nil || v.Statement.Digest() != q.d || !q.asked(v.KeyID) {
		return tailHit{}, false
	}
	return tailHit{v.KeyID, i, v.Statement.Predicate.Timestamp}, true
}

// leftTile is a hash tile holding part of the compact range of [0, start):
// the first k hashes of its bottom row (tree level 8·level) are the
// leaves of the range's perfect subtrees at levels 8·level to 8·level+7.
type leftTile struct {
	level, index uint64
	p            uint8 // the tile's width in the tree (0: full), as fetched
	k            uint64
}

// leftTiles lists the tiles holding the compact range of [0, start) in a
// tree of size size, start a multiple of the entry bundle width (so tile
// level 0 holds none of it), lowest level first (api.TailTiles, the
// tiles a ledger carries inline).
func leftTiles(start, size uint64) []leftTile {
	var ts []leftTile
	for _, id := range api.TailTiles(start, size) {
		k := (start >> (id.Level * layout.TileHeight)) % layout.TileWidth
		ts = append(ts, leftTile{level: id.Level, index: id.Index, p: id.Width, k: k})
	}
	return ts
}

// tileRange fetches tile t (or takes it from pushed) and returns the roots
// of the perfect subtrees covering the first t.k hashes of its bottom row,
// largest (leftmost) first. Nothing it returns is proven yet.
func (c *Client) tileRange(ctx context.Context, t leftTile, pushed tailResources) ([][]byte, error) {
	raw, ok := pushed[fetchKey{t.level, t.index, t.p}]
	if !ok {
		var err error
		if raw, err = c.readTile(ctx, t.level, t.index, t.p); err != nil {
			return nil, fmt.Errorf("tile %d/%d: %w", t.level, t.index, err)
		}
	}
	var ht tapi.HashTile
	if err := ht.UnmarshalText(raw); err != nil {
		return nil, fmt.Errorf("%w: tile %d/%d: %v", ErrBadProof, t.level, t.index, err)
	}
	want := int(t.p)
	if t.p == 0 {
		want = layout.TileWidth
	}
	if n := len(ht.Nodes); n != want && (t.p == 0 || n != layout.TileWidth) {
		return nil, fmt.Errorf("%w: tile %d/%d holds %d hashes, want %d", ErrBadProof, t.level, t.index, n, want)
	}
	var out [][]byte
	off := uint64(0)
	for b := layout.TileHeight - 1; b >= 0; b-- {
		if n := uint64(1) << b; t.k&n != 0 {
			out = append(out, subtreeRoot(ht.Nodes[off:off+n]))
			off += n
		}
	}
	return out, nil
}

// subtreeRoot returns the RFC 6962 root of the perfect subtree whose
// bottom row is row (a power of two long).
func subtreeRoot(row [][]byte) []byte {
	level := append([][]byte(nil), row...)
	for len(level) > 1 {
		for i := range len(level) / 2 {
			level[i] = hasher.HashChildren(level[2*i], level[2*i+1])
		}
		level = level[:len(level)/2]
	}
	return level[0]
}

// proveTailRange proves that bundles, the leaf hashes of the entries
// [start, cp.Size) bundle by bundle, are those of cp's tree: the compact
// range of [0, start), the tiles' subtree roots (left, per tile of tiles,
// highest level leftmost), extended by them, must hash to cp's signed root.
func proveTailRange(cp Checkpoint, start uint64, tiles []leftTile, left [][][]byte, bundles [][][]byte) error {
	var hs [][]byte
	for i := len(tiles) - 1; i >= 0; i-- {
		hs = append(hs, left[i]...)
	}
	rf := compact.RangeFactory{Hash: hasher.HashChildren}
	rng, err := rf.NewRange(0, start, hs)
	if err != nil {
		return fmt.Errorf("%w: the log before entry %d: %v", ErrBadProof, start, err)
	}
	for _, b := range bundles {
		for _, h := range b {
			if err := rng.Append(h, nil); err != nil {
				return fmt.Errorf("%w: %v", ErrBadProof, err)
			}
		}
	}
	if rng.End() != cp.Size {
		return fmt.Errorf("%w: %d entries for [%d, %d)", ErrBadProof, rng.End()-start, start, cp.Size)
	}
	root, err := rng.GetRootHash(nil)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadProof, err)
	}
	if !bytes.Equal(root, cp.Hash) {
		return fmt.Errorf("%w: the log's entries [%d, %d) and the tiles before them do not hash to the checkpoint's root", ErrBadProof, start, cp.Size)
	}
	return nil
}

// tailResources are the tail's resources a lookup's answer carried inline
// (api.InlineTail), by key: unproven bytes, scoped to the lookup that
// received them and never put in the Client's fetch cache, where another
// lookup could meet them.
type tailResources map[fetchKey][]byte

// maxInlineTailAnswer bounds what an answer's inline tail adds to it, in
// a framed answer (api.MarshalTailAnswer): its bytes, raw, and each
// item's header.
const maxInlineTailAnswer = api.MaxInlineTailBytes + (api.MaxInlineBundles+api.MaxInlineTiles)*64 + 64

// inlineResources checks that t, an answer's inline tail, is within the
// bounds a ledger keeps (api.MaxInlineBundles, api.MaxInlineTiles,
// api.MaxInlineTailBytes; a bundle or tile no larger than one served at
// its path) and names no resource twice, and returns its resources by key.
// Which of them a tail read takes, and whether they are the log's, is
// readTail's to decide: an item the read does not need is never read.
func inlineResources(t *api.InlineTail) (tailResources, error) {
	if t == nil {
		return nil, nil
	}
	if len(t.Bundles) > api.MaxInlineBundles || len(t.Tiles) > api.MaxInlineTiles {
		return nil, fmt.Errorf("%w: an inline tail of %d entry bundles and %d tiles, at most %d and %d", ErrBadProof, len(t.Bundles), len(t.Tiles), api.MaxInlineBundles, api.MaxInlineTiles)
	}
	out := make(tailResources, len(t.Bundles)+len(t.Tiles))
	total := 0
	add := func(k fetchKey, b []byte, most int, what string) error {
		if len(b) > most {
			return fmt.Errorf("%w: inline %s of %d bytes, at most %d", ErrBadProof, what, len(b), most)
		}
		if total += len(b); total > api.MaxInlineTailBytes {
			return fmt.Errorf("%w: an inline tail of more than %d bytes", ErrBadProof, api.MaxInlineTailBytes)
		}
		if _, dup := out[k]; dup {
			return fmt.Errorf("%w: inline %s given twice", ErrBadProof, what)
		}
		out[k] = b
		return nil
	}
	for _, b := range t.Bundles {
		if err := add(fetchKey{bundleLevel, b.Index, b.Width}, b.Data, maxBundleSize, fmt.Sprintf("entry bundle %d", b.Index)); err != nil {
			return nil, err
		}
	}
	for _, tl := range t.Tiles {
		if tl.Level == bundleLevel {
			return nil, fmt.Errorf("%w: inline tile at level %d", ErrBadProof, tl.Level)
		}
		if err := add(fetchKey{tl.Level, tl.Index, tl.Width}, tl.Data, maxTileSize, fmt.Sprintf("tile %d/%d", tl.Level, tl.Index)); err != nil {
			return nil, err
		}
	}
	return out, nil
}
