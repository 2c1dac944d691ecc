package ledgerclient

import (
	"context"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// TestRedteam5TailNeverArrivesNoDeadline: a caller without a deadline (the
// Config.Timeout bounds each call then), a front that answers every
// bundle of the tail with silence, through the current endpoint and
// through the paginated fallback (the front says the current endpoint is
// not there): each lookup ends with an error within its timeouts, never
// hangs.
func TestRedteam5TailNeverArrivesNoDeadline(t *testing.T) {
	for _, noCurrent := range []bool{false, true} {
		f, c, _ := pinnedClient(t, 3)
		c.timeout = time.Second
		alice := newEntrySigner(t)
		ka := notarizetest.KeyID(t, alice)
		appendStatements(t, f, alice, digestA, notarize.StatusTrusted, t0, 1)
		f.grow(300)
		f.noCurrent = noCurrent
		f.bundleHook = func(ctx context.Context, index uint64, p uint8, b []byte, err error) ([]byte, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		done := make(chan error, 1)
		go func() {
			_, err := c.Current(context.Background(), digestA, ka)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("noCurrent %v: a lookup whose tail never arrived succeeded", noCurrent)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("BYPASS (DoS): noCurrent %v: a lookup with a 1 s timeout still waits for the tail's bundles after 30 s", noCurrent)
		}
	}
}
