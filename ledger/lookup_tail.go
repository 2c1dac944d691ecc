package ledger

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/tessera/api/layout"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/notarize"
)

// tileBytes reads hash tile (level, index) of width p (0: full) exactly as
// GET /tile/… serves it: the reader falls back to the full tile once the
// partial one is gone, and the partial tile is then its first p hashes. A
// tile holding fewer is os.ErrNotExist.
func (l *Ledger) tileBytes(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	raw, err := l.reader.ReadTile(ctx, level, index, p)
	if err != nil {
		return nil, err
	}
	if p > 0 {
		want := int(p) * 32
		if len(raw) < want {
			return nil, fmt.Errorf("tile %d/%d of width %d: %d bytes: %w", level, index, p, len(raw), os.ErrNotExist)
		}
		raw = raw[:want]
	}
	return raw, nil
}

// bundleBytes reads entry bundle index of width p (0: full) exactly as GET
// /tile/entries/… serves it: a full bundle read for a partial one is cut
// to its first p entries. A bundle holding fewer is os.ErrNotExist.
func (l *Ledger) bundleBytes(ctx context.Context, index uint64, p uint8) ([]byte, error) {
	raw, err := l.reader.ReadEntryBundle(ctx, index, p)
	if err != nil {
		return nil, err
	}
	if p > 0 {
		var ok bool
		if raw, ok = storage.FirstEntries(raw, int(p)); !ok {
			return nil, fmt.Errorf("entry bundle %d of width %d: %w", index, p, os.ErrNotExist)
		}
	}
	return raw, nil
}

// withTail gives resp, whose map proof mp is against root under cp, the
// log's tail after root as mode asks (TailMode), and counts the answer
// (metrics.tails). A TailAnchor answer whose root is recent (anchored)
// goes without it: it still holds every indexed statement of the asked
// keys up to cp, with inclusion proofs, as every answer does.
func (l *Ledger) withTail(ctx context.Context, mode TailMode, resp *api.LookupResponse, mp *api.MapProof, root *parsedRoot, cp *log.Checkpoint) error {
	if mode == TailNone || mp == nil || root == nil {
		return nil
	}
	if mode == TailAnchor && anchored(root, l.vmap.clock()) {
		l.countTail(mode, tailAnchored)
		return nil
	}
	if err := l.withInlineTail(ctx, resp, mp, root, cp); err != nil {
		return err
	}
	if mp.Tail != nil {
		l.countTail(mode, tailInline)
	} else {
		l.countTail(mode, tailNone)
	}
	return nil
}

// anchored reports whether root is recent by the ledger's clock now, for
// an answer asked with api.TailAnchor to go without its tail: it carries a
// time (a root committed before the time line existed does not) at most
// api.AnchorMaxAge before now, and not more than that after it (a root
// signed by a clock ahead, or a clock set back since: not a time this
// ledger can vouch for). The bounds are inclusive.
func anchored(root *parsedRoot, now time.Time) bool {
	if root == nil {
		return false
	}
	return (&notarize.MapRoot{Time: root.time}).RecentAt(now, api.AnchorMaxAge)
}

// withInlineTail sets mp.Tail (api.InlineTail) to the resources of the
// log's tail after root under cp, the answer's checkpoint, within what
// resp (whose map proof mp is) leaves of maxAnswerEstimate. It carries
// every hash tile of the tail's left edge or none, then entry bundles in
// log order while they fit in api.MaxInlineBundles and
// api.MaxInlineTailBytes: the first ones only, when not all fit. A failed
// read leaves the tail out (the client fetches it); only the end of ctx is
// an error.
func (l *Ledger) withInlineTail(ctx context.Context, resp *api.LookupResponse, mp *api.MapProof, root *parsedRoot, cp *log.Checkpoint) error {
	if mp == nil || root == nil {
		return nil
	}
	// The tail's bytes travel raw (api.MarshalTailAnswer), each with a
	// header of a few bytes.
	budget := min(api.MaxInlineTailBytes, maxAnswerEstimate-answerEstimate(resp, mp)-(api.MaxInlineBundles+api.MaxInlineTiles)*64)
	if budget <= 0 {
		return nil
	}
	// The bytes the tail may take are held until the answer is written
	// (tail_budget.go); past the budget the answer goes without it.
	hold := tailHoldOf(ctx)
	if hold != nil {
		if !hold.reserve(budget) {
			l.log.DebugContext(ctx, "lookup answered without its inline tail: too many inline tails held by answers not yet written")
			return nil
		}
		defer func() { hold.keep(tailSize(mp.Tail)) }()
	}
	t, err := l.inlineTail(ctx, root, cp, budget)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		l.log.DebugContext(ctx, "lookup answered without its inline tail", slog.Any("error", err))
		return nil
	}
	mp.Tail = t
	return nil
}

// inlineTail reads the tail after root under cp, at most budget bytes of
// resources; nil when there is no tail to read or nothing fits.
func (l *Ledger) inlineTail(ctx context.Context, root *parsedRoot, cp *log.Checkpoint, budget int) (*api.InlineTail, error) {
	from := root.size
	if from == root.Index && cp.Size == from+1 {
		from = cp.Size // the tail is the root entry alone, which the answer proves
	}
	if from >= cp.Size || budget <= 0 {
		return nil, nil
	}
	start := api.TailStart(from)
	t := &api.InlineTail{}
	used := 0
	for _, id := range api.TailTiles(start, cp.Size) {
		b, err := l.tileBytes(ctx, id.Level, id.Index, id.Width)
		if err != nil {
			return nil, fmt.Errorf("inline tail: tile %d/%d: %w", id.Level, id.Index, err)
		}
		if used += len(b); used > budget {
			return nil, nil
		}
		t.Tiles = append(t.Tiles, api.InlineTile{Level: id.Level, Index: id.Index, Width: id.Width, Data: b})
	}
	w := uint64(layout.EntryBundleWidth)
	for idx := start / w; idx <= (cp.Size-1)/w && len(t.Bundles) < api.MaxInlineBundles; idx++ {
		p := layout.PartialTileSize(0, idx, cp.Size)
		b, err := l.bundleBytes(ctx, idx, p)
		if err != nil {
			return nil, fmt.Errorf("inline tail: entry bundle %d: %w", idx, err)
		}
		if used+len(b) > budget {
			break
		}
		used += len(b)
		t.Bundles = append(t.Bundles, api.InlineBundle{Index: idx, Width: p, Data: b})
	}
	if len(t.Bundles) == 0 {
		return nil, nil // the tiles alone save the client little
	}
	return t, nil
}

// tailSize returns the bytes of t's resources; 0 for nil.
func tailSize(t *api.InlineTail) int {
	if t == nil {
		return 0
	}
	n := 0
	for _, b := range t.Bundles {
		n += len(b.Data)
	}
	for _, tl := range t.Tiles {
		n += len(tl.Data)
	}
	return n
}

// answerEstimate estimates the JSON size of resp with its map proof mp,
// as answer does for its entries.
func answerEstimate(resp *api.LookupResponse, mp *api.MapProof) int {
	size := len(resp.Checkpoint)*2 + 2*len(resp.Digest) + 64
	for _, e := range resp.Entries {
		size += base64Len(len(e.Entry)) + 48*len(e.InclusionProof) + 64
	}
	if mp != nil {
		size += base64Len(len(mp.RootEntry)) + 48*len(mp.RootInclusionProof) + 64
		for _, k := range mp.Keys {
			size += 160 + base64Len(len(k.Value)) + base64Len(len(k.Bitmap)) + 48*len(k.Siblings) + base64Len(len(k.LeafKey)) + base64Len(len(k.LeafValueHash))
		}
	}
	return size
}

// writeLookup writes resp as api.MarshalLookupAnswer encodes it: framed
// when its map proof carries an inline tail, else as JSON (with a final
// newline, as writeJSON), held by the answer budget until written past
// the inline tail that the tail budget holds (writeHeld). The tail is
// dropped from resp once framed, so that a slow reader keeps one copy of
// its bytes, not two.
func (l *Ledger) writeLookup(w http.ResponseWriter, r *http.Request, resp *api.LookupResponse) error {
	framed := resp.Map != nil && resp.Map.Tail != nil
	b, err := api.MarshalLookupAnswer(resp)
	if err != nil {
		return fmt.Errorf("encode lookup answer: %w", err)
	}
	contentType := api.MediaTypeJSON
	if framed {
		resp.Map.Tail = nil
		contentType = api.MediaTypeTailAnswer
	} else {
		b = append(b, '\n')
	}
	tail := 0
	if h := tailHoldOf(r.Context()); h != nil {
		tail = int(h.n)
	}
	return l.writeHeld(w, r, http.StatusOK, func(h http.Header) { h.Set("Content-Type", contentType) }, b, tail)
}
