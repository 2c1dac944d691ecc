package plugin

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
)

// DefaultIndexWait is the default of --index-wait: how long untrust,
// unsupport and key revoke wait for the ledger to commit what they
// recorded to its verifiable index (a root every two seconds or 1,024
// entries, published within about a second more) and for every older root
// to stop counting as recent (indexHold).
const DefaultIndexWait = 30 * time.Second

// defaultIndexHold is how long after the time of the first map root
// covering a revocation the commands wait: verify's default
// --max-index-lag, during which a front can still show a verifier a root
// from before the revocation, plus a second for the clocks of the ledger,
// this machine and the verifier.
const defaultIndexHold = ledgerclient.DefaultMaxIndexLag + time.Second

// addIndexWaitFlag adds --index-wait to a command that records a
// revocation.
func addIndexWaitFlag(cmd *cobra.Command, wait *time.Duration) {
	cmd.Flags().DurationVar(wait, "index-wait", DefaultIndexWait,
		"Wait up to this long until every verify sees the revocation, whatever a front between it and the ledger answers: a map root of the ledger's index covers it, and roots from before it are older than verify's default --max-index-lag (about 11 s in all); 0 returns once the receipt is verified")
}

// awaitIndexed waits up to wait for a map root covering the entry index,
// keyID's statement about d, and for hold to pass from that root's time
// (ledgerclient.Client.AwaitIndexed), and reports whether both happened;
// nil when wait is 0 (not asked) or hold is (tests that do not attack the
// window). A wait that ends first, or fails to reach the ledger, is a
// warning on stderr, not an error: the entry is in the log, and verify
// clients that read the whole log after the newest root (--max-index-lag
// 0) already see it. An answer that fails its proofs while waiting (a lie,
// a fork) is the error returned: whoever answers is hiding something.
func awaitIndexed(ctx context.Context, stderr io.Writer, client *ledgerclient.Client, d notarize.Digest, keyID string, index uint64, wait, hold time.Duration) (*bool, error) {
	if wait <= 0 || hold <= 0 {
		return nil, nil
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	_, err := client.AwaitIndexed(wctx, d, keyID, index, hold)
	if ledgerclient.IsLie(err) {
		return nil, fmt.Errorf("log index %d is recorded, but waiting for the ledger's index: %w", index, err)
	}
	ok := err == nil
	if !ok {
		fmt.Fprintf(stderr, "warning: log index %d is recorded, but not yet in the ledger's verifiable index after %s (%v): until a map root covers it, a front between a verifier and the ledger could hide it from verifiers that take a recent root (verify --max-index-lag, %s by default) for up to that long after it is; check the ledger's map root age (notarize_ledger_map_root_age_seconds)\n",
			index, wait, err, ledgerclient.DefaultMaxIndexLag)
	}
	return &ok, nil
}
