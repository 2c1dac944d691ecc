package ledger

import (
	"fmt"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/notarize/docker-notarize/ledger/api"
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
	tl, path := keyPageLedger(t)

	host := strings.TrimPrefix(tl.url, "http://")
	heap := func() uint64 {
		// Twice: encoding/json keeps the buffers of the refused answers'
		// encodings in a sync.Pool until a second collection; that is
		// garbage, not what stalled readers hold.
		runtime.GC()
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
	// Every lookup is answered: stuck in its write, or refused (by the
	// lookup gate or the answer budget). What is built and being built
	// meanwhile is not what stalled readers hold.
	refused := tl.metrics.lookups.WithLabelValues("key", api.CodeUnavailable)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		tl.answers.mu.Lock()
		writing := len(tl.answers.active)
		tl.answers.mu.Unlock()
		if writing+int(testutil.ToFloat64(refused)) >= stalledReaders {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d lookups writing, %v refused, of %d", writing, testutil.ToFloat64(refused), stalledReaders)
		}
	}
	var held uint64
	for range 8 {
		time.Sleep(250 * time.Millisecond)
		held = max(held, heap()-min(before, heap()))
	}
	t.Logf("%d key lookups whose client does not read: %d MiB of heap held (before %d MiB)", stalledReaders, held>>20, before>>20)
	if held > heldBound {
		t.Errorf("DoS (memory): %d anonymous key lookups whose client does not read hold %d MiB of the ledger's heap, with no bound in time or in number", stalledReaders, held>>20)
	}
}
