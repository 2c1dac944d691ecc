package plugin

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/notarize/docker-notarize/internal/boundedfile"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"
)

// maxLedgerKeyFile bounds a file given to --key (a ledger.pub).
const maxLedgerKeyFile = 4 << 10

// newLedgerCmd is `ledger`: the ledger keys this client pins, by URL, and
// the state it keeps of each.
func newLedgerCmd(dockerCli stdio, root *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Manage the pinned ledger keys (in NOTARIZE_HOME/ledgers)",
		Long: `Manage the ledger keys this client pins, one per ledger URL.

The first command that talks to a ledger pins the key it announces (trust on
first use). After that, a ledger that signs with another key is refused: that
is what an attack looks like, and also what a reset ledger looks like. Check
the new key out of band and trust it with "ledger trust URL --key KEY --force".`,
		Example: `  docker notarize ledger trust https://ledger.example.com --key ledger.pub
  docker notarize ledger list
  docker notarize ledger forget https://ledger.example.com`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(
		newLedgerTrustCmd(dockerCli, root),
		newLedgerForgetCmd(dockerCli, root),
		newLedgerListCmd(dockerCli, root),
	)
	return cmd
}

type ledgerTrustOptions struct {
	root  *rootOptions
	url   string
	key   string
	yes   bool
	force bool
}

func newLedgerTrustCmd(dockerCli stdio, root *rootOptions) *cobra.Command {
	opts := ledgerTrustOptions{root: root}
	cmd := &cobra.Command{
		Use:   "trust URL [--key KEY]",
		Short: "Pin a ledger's checkpoint key",
		Long: `Pin the key the ledger at URL signs its checkpoints with.

With --key, pin that key: a verifier key string or a file holding one (the
ledger's ledger.pub), obtained from the ledger's operator. The ledger is asked
whether it signs with it, and a key it does not sign with is refused.

Without --key, the key the ledger announces is shown; it is pinned after a
confirmation on a terminal, or with --yes. Whoever answers at URL chooses
that key: compare it with the ledger's ledger.pub first.

With --witness-policy (or NOTARIZE_WITNESS_POLICY) whose log lines name the
ledger's keys, no other key is pinned, given or announced.

A key pinned already is replaced only with --force. Checkpoints stored under
the old key stay as evidence (see "ledger forget --purge").`,
		Example: `  docker notarize ledger trust http://127.0.0.1:7070 --key .notarize/ledger/ledger.pub
  docker notarize ledger trust https://ledger.example.com --key 'ledger.example.com/notarize-ledger+1a2b3c4d+AR…' --force`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.url = args[0]
			return runLedgerTrust(cmd.Context(), dockerCli, opts)
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&opts.key, "key", "", "Verifier key to pin, or a file holding it (the ledger's ledger.pub)")
	flags.BoolVarP(&opts.yes, "yes", "y", false, "Pin the announced key without asking (without --key)")
	flags.BoolVar(&opts.force, "force", false, "Replace the key pinned for this ledger")
	addLedgerCAFlag(cmd, root)
	addWitnessPolicyFlag(cmd, root)
	_ = cmd.MarkFlagFilename("key", "pub")
	return cmd
}

func runLedgerTrust(ctx context.Context, dockerCli stdio, opts ledgerTrustOptions) error {
	url, err := ledgerclient.NormalizeURL(opts.url)
	if err != nil {
		return usageError(err)
	}
	key := ""
	if opts.key != "" {
		if key, err = readLedgerKey("--key", opts.key); err != nil {
			return usageError(err)
		}
	}
	home := opts.root.home()
	old, err := pinnedKey(home, url)
	if err != nil {
		return err
	}
	stderr := dockerCli.Err()
	if key == "" {
		if key, err = confirmAnnouncedKey(ctx, dockerCli, opts, url); err != nil {
			return err
		}
	} else if err := checkLedgerSigns(ctx, stderr, opts.root, url, key); err != nil {
		return err
	}
	if old != "" && old != key && !opts.force {
		return fmt.Errorf("trust ledger: the ledger at %s is pinned to key\n  %s\nnot\n  %s\nA changed key is what an attack looks like as well as a reset: once you have checked the new key out of band, replace the pin with --force", url, old, key)
	}
	if old != "" && old != key {
		_, _ = fmt.Fprintf(stderr, "Replacing the key pinned for %s\n  old: %s\n  new: %s\n", url, old, key)
	}
	if _, err := ledgerclient.Pin(ctx, home, url, key, opts.force); err != nil {
		return fmt.Errorf("trust ledger: %w", err)
	}
	if old == key {
		_, err = fmt.Fprintf(dockerCli.Out(), "Key already pinned for %s\n  origin: %s\n  key:    %s\n", url, keyName(key), key)
		return err
	}
	_, err = fmt.Fprintf(dockerCli.Out(), "Pinned key for %s\n  origin: %s\n  key:    %s\n", url, keyName(key), key)
	return err
}

// readLedgerKey takes the value of flag (ledger trust's --key, the
// commands' --ledger-key): a verifier key string, or a file holding one, as
// the proxy's ledgerKey does.
func readLedgerKey(flag, arg string) (string, error) {
	if _, err := note.NewVerifier(arg); err == nil {
		return arg, nil
	}
	b, err := boundedfile.Read(arg, maxLedgerKeyFile)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("%s %q: neither a verifier key (name+hash+key) nor a file", flag, arg)
		}
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	key := strings.TrimSpace(string(b))
	if _, err := note.NewVerifier(key); err != nil {
		return "", fmt.Errorf("%s %s: not a verifier key file: %w", flag, arg, err)
	}
	return key, nil
}

// pinnedKey returns the key pinned for url under home, or "".
func pinnedKey(home, url string) (string, error) {
	pins, err := ledgerclient.ListPins(home)
	if err != nil {
		return "", err
	}
	for _, p := range pins {
		if p.URL == url {
			return p.VerifierKey, nil
		}
	}
	return "", nil
}

// ledgerConfig is the client configuration to ask the ledger at url,
// verifying with key ("" for the announced one).
func (o *rootOptions) ledgerConfig(url, key string) (ledgerclient.Config, error) {
	hc, err := o.ledgerHTTPClient()
	if err != nil {
		return ledgerclient.Config{}, err
	}
	cfg := ledgerclient.Config{URL: url, VerifierKey: key, Home: o.home(), HTTPClient: hc}
	// The witness policy's log lines bound the keys a user may trust too.
	if err := o.witnesses(&cfg); err != nil {
		return ledgerclient.Config{}, usageError(fmt.Errorf("--witness-policy: %w", err))
	}
	return cfg, nil
}

// checkLedgerSigns refuses key when the ledger at url answers with a
// checkpoint not signed by it; a ledger that cannot be reached is only
// reported: the key the user brings is what counts.
func checkLedgerSigns(ctx context.Context, stderr io.Writer, root *rootOptions, url, key string) error {
	cfg, err := root.ledgerConfig(url, key)
	if err != nil {
		return err
	}
	announced, _, err := ledgerclient.Announced(ctx, cfg)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ledgerclient.ErrKeyMismatch) && announced == "":
		// Refused before any request: the witness policy names other keys.
		return fmt.Errorf("trust ledger: not pinned: %w", err)
	case errors.Is(err, ledgerclient.ErrWitnessQuorum) || errors.Is(err, ledgerclient.ErrStaleCheckpoint):
		return fmt.Errorf("trust ledger: the ledger at %s signs with this key, but its checkpoint does not meet the witness policy: not pinned: %w", url, err)
	case errors.Is(err, ledgerclient.ErrBadCheckpoint) || errors.Is(err, ledgerclient.ErrKeyMismatch):
		return fmt.Errorf("trust ledger: the ledger at %s does not sign with\n  %s\n(it announces %q): not pinned: %w", url, key, announced, err)
	}
	_, _ = fmt.Fprintf(stderr, "warning: could not ask the ledger at %s whether it signs with this key: %v\n", url, err)
	return nil
}

// confirmAnnouncedKey fetches the key the ledger at url announces, checks
// its checkpoint under it, shows it and asks for a confirmation (or takes
// --yes).
func confirmAnnouncedKey(ctx context.Context, dockerCli stdio, opts ledgerTrustOptions, url string) (string, error) {
	cfg, err := opts.root.ledgerConfig(url, "")
	if err != nil {
		return "", err
	}
	key, cp, err := ledgerclient.Announced(ctx, cfg)
	if err != nil {
		return "", fmt.Errorf("trust ledger: %w", err)
	}
	stderr := dockerCli.Err()
	_, _ = fmt.Fprintf(stderr, "The ledger at %s announces\n  origin: %s\n  key:    %s\n  tree size %d\nWhoever answers at that address chose this key: compare it with the ledger's ledger.pub, obtained from its operator.\n",
		url, cp.Origin, key, cp.Size)
	if opts.yes {
		return key, nil
	}
	in := dockerCli.In()
	if !opts.root.env.isTerminal(int(in.FD())) {
		return "", usageError(errors.New("trust ledger: stdin is not a terminal: pass --yes to pin the announced key, or --key with the key you checked"))
	}
	_, _ = fmt.Fprint(stderr, "Pin this key? [y/N] ")
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("trust ledger: %w", err)
	}
	if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
		return "", errors.New("trust ledger: not confirmed: nothing pinned")
	}
	return key, nil
}

// keyName is the name (the log origin) of a verifier key.
func keyName(vkey string) string {
	name, _, _ := strings.Cut(vkey, "+")
	return name
}

type ledgerForgetOptions struct {
	root  *rootOptions
	url   string
	purge bool
}

func newLedgerForgetCmd(dockerCli stdio, root *rootOptions) *cobra.Command {
	opts := ledgerForgetOptions{root: root}
	cmd := &cobra.Command{
		Use:   "forget URL",
		Short: "Remove a ledger's pinned key",
		Long: `Remove the key pinned for the ledger at URL. The next command that talks to
it pins the key it announces then, unless this client holds checkpoints of the
same log under another key: those stay as evidence, unless --purge.`,
		Example: `  docker notarize ledger forget http://127.0.0.1:7070`,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.url = args[0]
			return runLedgerForget(cmd.Context(), dockerCli, opts)
		},
	}
	cmd.Flags().BoolVar(&opts.purge, "purge", false, "Also remove the checkpoint stored under the forgotten key")
	return cmd
}

func runLedgerForget(ctx context.Context, dockerCli stdio, opts ledgerForgetOptions) error {
	if _, err := ledgerclient.NormalizeURL(opts.url); err != nil {
		return usageError(err)
	}
	p, purged, err := ledgerclient.Unpin(ctx, opts.root.home(), opts.url, opts.purge)
	if err != nil {
		return err
	}
	out := dockerCli.Out()
	if _, err := fmt.Fprintf(out, "Forgot the key pinned for %s\n  key: %s\n", p.URL, p.VerifierKey); err != nil {
		return err
	}
	switch {
	case len(purged) > 0:
		_, err = fmt.Fprintf(out, "  removed: %s\n", strings.Join(purged, ", "))
	case p.Checkpoint != nil:
		_, err = fmt.Fprintf(out, "  kept:    %s (tree size %d)\n", p.Checkpoint.Path, p.Checkpoint.Size)
	}
	return err
}

type ledgerListOptions struct {
	root   *rootOptions
	format string
}

func newLedgerListCmd(dockerCli stdio, root *rootOptions) *cobra.Command {
	opts := ledgerListOptions{root: root}
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the pinned ledger keys and their last verified checkpoints",
		Example: `  docker notarize ledger list
  docker notarize ledger list -o json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLedgerList(cmd.Context(), dockerCli, opts)
		},
	}
	addOutputFlag(cmd, &opts.format)
	outputCommand(cmd, dockerCli, &opts.format)
	return cmd
}

// ledgerListOutput is `ledger list -o json`. Field names are part of the
// CLI's contract.
type ledgerListOutput struct {
	SchemaVersion int                      `json:"schemaVersion"`
	Ledgers       []ledgerclient.LedgerPin `json:"ledgers"`
}

func runLedgerList(_ context.Context, dockerCli stdio, opts ledgerListOptions) error {
	if err := validateFormat(opts.format); err != nil {
		return usageError(err)
	}
	pins, err := ledgerclient.ListPins(opts.root.home())
	if err != nil {
		return err
	}
	if opts.format == formatJSON {
		if pins == nil {
			pins = []ledgerclient.LedgerPin{}
		}
		return writeJSON(dockerCli.Out(), ledgerListOutput{SchemaVersion: schemaVersion, Ledgers: pins})
	}
	return writeLedgersText(dockerCli.Out(), pins)
}

// writeLedgersText prints one line per pinned ledger.
func writeLedgersText(w io.Writer, pins []ledgerclient.LedgerPin) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LEDGER\tORIGIN\tSIZE\tROOT\tSTORED\tKEY")
	for _, p := range pins {
		size, root, at := "-", "-", "-"
		if c := p.Checkpoint; c != nil {
			size = fmt.Sprint(c.Size)
			root = base64.StdEncoding.EncodeToString(c.RootHash)
			at = c.StoredAt.UTC().Format(time.RFC3339)
		}
		if p.Problem != "" {
			size = "ERROR: " + printable(p.Problem)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", printable(p.URL), printable(p.Origin), size, root, at, printable(p.VerifierKey))
	}
	return tw.Flush()
}
