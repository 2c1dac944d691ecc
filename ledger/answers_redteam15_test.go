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

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// TestRedteam15KeyLookupSlowReaders: key lookup answers (up to ¾ of
// api.MaxAnswerSize each) whose client does not read were held in the
// ledger's heap with no bound in number and no write deadline: the lookup
// gate's place is given back before the answer is written, and the server
// has no WriteTimeout. 48 anonymous connections held ~280 MiB, for as long
// as they stayed open.
func TestRedteam15KeyLookupSlowReaders(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 6 MiB answers")
	}
	const (
		stalledReaders = 48
		heldBound      = 96 << 20
	)
	tl := startLedger(t, Config{})
	owner := newTestSigner(t)
	now := time.Now().Add(-time.Hour)
	var entries []*notarize.Entry
	for range 160 {
		entries = append(entries, owner.signLarge(t, randomDigest(t), notarize.StatusTrusted, now))
	}
	appendAll(t, tl, entries)
	q := url.Values{api.QueryLimit: {fmt.Sprint(api.MaxLookupLimit)}}
	path := api.PathKeys + owner.keyID + api.PathKeyDigestsSuffix + "?" + q.Encode()

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
	t.Logf("%d key lookups whose client does not read: %d MiB of heap held (before %d MiB)", stalledReaders, held>>20, before>>20)
	if held > heldBound {
		t.Errorf("DoS (memory): %d anonymous key lookups whose client does not read hold %d MiB of the ledger's heap, with no bound in time or in number", stalledReaders, held>>20)
	}
}
