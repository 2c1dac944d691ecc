package ledgerclient

import (
	"context"
	"sync"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/client"
)

// prefetchTiles fetches through f, all at once, every hash tile that the
// nodes ids of a tree of size size live in, and returns a fetcher that
// serves those answers (and asks f for any other tile). Tessera's
// ProofBuilder asks for a proof's tiles one after another; with the tiles
// fetched beforehand, a proof costs one round trip to a busy ledger
// instead of one per tile. The answers are untrusted bytes as before: the
// proof built from them is verified by the caller.
func prefetchTiles(ctx context.Context, f client.TileFetcherFunc, size uint64, ids []compact.NodeID) client.TileFetcherFunc {
	type key struct {
		level, index uint64
		p            uint8
	}
	type answer struct {
		b   []byte
		err error
	}
	got := map[key]*answer{}
	for _, id := range ids {
		l, i, _, _ := layout.NodeCoordsToTileAddress(uint64(id.Level), id.Index)
		got[key{l, i, layout.PartialTileSize(l, i, size)}] = &answer{}
	}
	if len(got) < 2 {
		return f
	}
	var wg sync.WaitGroup
	for k, a := range got {
		wg.Go(func() { a.b, a.err = f(ctx, k.level, k.index, k.p) })
	}
	wg.Wait()
	return func(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
		if a, ok := got[key{level, index, p}]; ok {
			return a.b, a.err
		}
		return f(ctx, level, index, p)
	}
}
