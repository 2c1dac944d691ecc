package ledger

import (
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
	_, _, size := getFrom(t, tl, "127.0.0.2", path)

	before := liveHeap()
	for range stalledReaders {
		stallLookup(t, tl, "127.0.0.1", path)
	}
	// Every lookup is answered: stuck in its write, or refused (by the
	// lookup gate or the answer budget). What is built and being built
	// meanwhile is not what stalled readers hold.
	refused := tl.metrics.lookups.WithLabelValues("key", api.CodeUnavailable)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		_, byClient := tl.answers.inUse("127.0.0.1")
		writing := int(byClient / int64(size))
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
		held = max(held, liveHeap()-min(before, liveHeap()))
	}
	t.Logf("%d key lookups whose client does not read: %d MiB of heap held (before %d MiB)", stalledReaders, held>>20, before>>20)
	if held > heldBound {
		t.Errorf("DoS (memory): %d anonymous key lookups whose client does not read hold %d MiB of the ledger's heap, with no bound in time or in number", stalledReaders, held>>20)
	}
}
