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
// recorded to its verifiable index. A ledger commits a map root every two
// seconds or 1,024 entries, and publishes it within about a second more.
const DefaultIndexWait = 30 * time.Second

// addIndexWaitFlag adds --index-wait to a command that records a
// revocation.
func addIndexWaitFlag(cmd *cobra.Command, wait *time.Duration) {
	cmd.Flags().DurationVar(wait, "index-wait", DefaultIndexWait,
		"Wait up to this long for the ledger to commit the revocation to its verifiable index (a map root covering it): from then on every verify sees it, whatever a front between it and the ledger answers (verify --max-index-lag); 0 returns once the receipt is verified")
}

// awaitIndexed waits up to wait for a map root covering the entry index,
// keyID's statement about d (ledgerclient.Client.AwaitIndexed), and
// reports whether one does; nil when wait is 0 (not asked). A wait that
// ends first, or fails, is a warning on stderr, not an error: the entry
// is in the log, and verify clients that read the whole log after the
// newest root (--max-index-lag 0) already see it.
func awaitIndexed(ctx context.Context, stderr io.Writer, client *ledgerclient.Client, d notarize.Digest, keyID string, index uint64, wait time.Duration) *bool {
	if wait <= 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	_, err := client.AwaitIndexed(wctx, d, keyID, index)
	ok := err == nil
	if !ok {
		fmt.Fprintf(stderr, "warning: log index %d is recorded, but not yet in the ledger's verifiable index after %s (%v): until a map root covers it, a front between a verifier and the ledger could hide it from verifiers that take a recent root (verify --max-index-lag, %s by default) for that long; check the ledger's map root age (notarize_ledger_map_root_age_seconds)\n",
			index, wait, err, ledgerclient.DefaultMaxIndexLag)
	}
	return &ok
}
