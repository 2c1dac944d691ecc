package ledger

import (
	"net/url"
	"testing"
	"time"

	"github.com/transparency-dev/tessera/api/layout"

	"github.com/notarize/docker-notarize/ledger/api"
)

// TestRedteam7InlineTailSlowReaders: a lookup asking for the inline tail
// (?tail=inline, anonymous, a few hundred bytes) makes the ledger build an
// answer of up to api.MaxInlineTailBytes after its lookup place is given
// back; a client that never reads it keeps that answer in the ledger's
// memory for as long as it keeps the connection open (the ledger's server
// has no write timeout). The test opens stalledReaders connections from
// one client that each ask once and never read, and fails when the heap
// they hold passes heldBound.
func TestRedteam7InlineTailSlowReaders(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 4 MiB tail")
	}
	const (
		stalledReaders = 48
		heldBound      = 96 << 20
	)
	// A tail of MaxInlineBundles bundles of ~1 KiB entries: ~4 MiB inline.
	tl, alice, d := inlineTailLedgerN(t, api.MaxInlineBundles*layout.EntryBundleWidth, 1000)
	q := url.Values{api.QueryKeyID: {alice.keyID}, api.QueryTail: {api.TailInline}}
	path := api.PathDigests + string(d) + api.PathCurrentSuffix + "?" + q.Encode()
	if lr := getLookup(t, tl, api.PathDigests+string(d)+api.PathCurrentSuffix, q); lr.Map == nil || lr.Map.Tail == nil {
		t.Fatal("the current lookup carries no inline tail")
	} else {
		n := 0
		for _, b := range lr.Map.Tail.Bundles {
			n += len(b.Data)
		}
		t.Logf("one answer carries %d inline bundles, %d bytes", len(lr.Map.Tail.Bundles), n)
	}
	before := liveHeap()
	for range stalledReaders {
		stallLookup(t, tl, "127.0.0.1", path)
	}
	var held uint64
	for range 20 { // the answers are built and stuck in their writes
		time.Sleep(250 * time.Millisecond)
		held = max(held, liveHeap()-min(before, liveHeap()))
	}
	t.Logf("%d readers that do not read: %d MiB of heap held (before %d MiB)", stalledReaders, held>>20, before>>20)
	if held > heldBound {
		t.Errorf("DoS (memory): %d anonymous lookups with ?tail=inline whose client does not read hold %d MiB of the ledger's heap, with no bound in time (no write timeout) or in number (the lookup place is given back before the answer is written)", stalledReaders, held>>20)
	}
}
