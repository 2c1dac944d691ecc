package ledger

import (
	"fmt"
	"net"
	"net/url"
	"runtime"
	"strings"
	"syscall"
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
	host := strings.TrimPrefix(tl.url, "http://")
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	before := heap()
	dialer := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	for range stalledReaders {
		c, err := dialer.DialContext(t.Context(), "tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host); err != nil {
			t.Fatal(err)
		}
	}
	var held uint64
	for range 20 { // the answers are built and stuck in their writes
		time.Sleep(250 * time.Millisecond)
		held = max(held, heap()-min(before, heap()))
	}
	t.Logf("%d readers that do not read: %d MiB of heap held (before %d MiB)", stalledReaders, held>>20, before>>20)
	if held > heldBound {
		t.Errorf("DoS (memory): %d anonymous lookups with ?tail=inline whose client does not read hold %d MiB of the ledger's heap, with no bound in time (no write timeout) or in number (the lookup place is given back before the answer is written)", stalledReaders, held>>20)
	}
}
