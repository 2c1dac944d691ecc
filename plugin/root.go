package plugin

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/docker/cli/cli/config"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// Environment variables read by docker notarize (besides NOTARIZE_PASSWORD).
const (
	// EnvHome overrides the state directory, by default
	// ${DOCKER_CONFIG:-~/.docker}/notarize: keys, pinned ledger keys and the
	// last verified checkpoint per ledger.
	EnvHome = "NOTARIZE_HOME"
	// EnvLedger is the default of --ledger.
	EnvLedger = "NOTARIZE_LEDGER"
	// EnvLedgerKey is the default of --ledger-key.
	EnvLedgerKey = "NOTARIZE_LEDGER_KEY"
	// EnvWitnessPolicy is the default of --witness-policy.
	EnvWitnessPolicy = "NOTARIZE_WITNESS_POLICY"
	// EnvLedgerCA is the default of --ledger-ca.
	EnvLedgerCA = "NOTARIZE_LEDGER_CA"
)

// DefaultLedgerURL is the ledger used when neither --ledger nor
// NOTARIZE_LEDGER is set: a local `make run`.
const DefaultLedgerURL = "http://127.0.0.1:7070"

// PluginName is the name of the command under docker: `docker notarize`.
const PluginName = "notarize"

// env is what commands take from the process and the world. Tests replace
// parts of it (clock, transports, terminal).
type env struct {
	lookupEnv func(string) (string, bool)
	now       func() time.Time
	keychain  authn.Keychain
	// registryTransport is the base transport to registries; nil means
	// http.DefaultTransport. It is always wrapped by plainHTTPGuard.
	registryTransport http.RoundTripper
	// ledgerHTTP is the HTTP client for the ledger; nil means ledgerclient's default.
	ledgerHTTP   *http.Client
	isTerminal   func(fd int) bool
	readPassword func(fd int) ([]byte, error)
	// indexHold is how long untrust, unsupport, key revoke and key rotate
	// wait after the time of the first root covering what they recorded
	// (indexed.go): defaultIndexHold; 0 (tests that do not attack the
	// window) skips the wait.
	indexHold time.Duration
}

func defaultEnv() env {
	return env{
		lookupEnv:    os.LookupEnv,
		now:          time.Now,
		keychain:     dockerConfigKeychain{},
		isTerminal:   term.IsTerminal,
		readPassword: term.ReadPassword,
		indexHold:    defaultIndexHold,
	}
}

// rootOptions holds the global flags and the environment.
type rootOptions struct {
	ledgerURL string
	ledgerKey string
	// ledgerCA is a PEM file of CA certificates an https ledger's
	// certificate may chain to, besides the system's roots.
	ledgerCA string
	// witnessPolicy is the witness policy file; maxWitnessAge (verify's
	// --max-age) bounds the age of a witnessed checkpoint.
	witnessPolicy string
	maxWitnessAge time.Duration
	// maxIndexLag is verify's --max-index-lag; nil (other commands): 0,
	// every tail read.
	maxIndexLag *time.Duration
	env         env
}

// newRootBase returns the root command of docker notarize with subcommands
// cmds, which take their global options from opts: its help, its hidden
// ledger flags, the usage-error checks before every command. name is the
// command name: PluginName when run by docker (isPlugin), else the
// executable's base name. pluginPreRun, for a plugin, is docker/cli's plugin
// hook, run before every command (it connects the plugin socket and
// initialises the docker CLI object). The full CLI (root_cmd.go) and the
// verify-only build (verifyonly.go) both build their root here.
func newRootBase(name string, isPlugin bool, opts *rootOptions, pluginPreRun func(*cobra.Command, []string) error, cmds ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   name,
		Short: "Sign and verify image digests against a tamper-evident ledger",
		Long: `Sign and verify image digests against a tamper-evident ledger.

A signer records "this digest is trusted / untrusted / unsupported, says key K"
in an append-only ledger; anyone verifies a digest against the ledger, no matter
which registry served the bytes. The ledger's answers are checked (signed
checkpoints, consistency and inclusion proofs, every signature) before any
verdict.

Exit codes of verify: 0 TRUSTED, 1 UNTRUSTED, 2 UNKNOWN, 3 UNSUPPORTED,
4 could not verify. Other commands exit 1 on failure. Usage and
configuration errors (a bad flag, a --signer or --key that names no key, an
empty key store) exit 125, before any network call; an interrupt exits 130.

With -o json every command prints one JSON object with "schemaVersion",
failures too ("error" and "exitCode"); the schema is
docs/schema/docker-notarize.schema.json.`,
		Example: `  docker notarize key generate --name release
  docker notarize sign --key release registry.example.com/app:1.0
  docker notarize verify registry.example.com/app:1.0
  docker notarize --ledger https://ledger.example.com verify -o json registry.example.com/app@sha256:…`,
		SilenceUsage:          true,
		SilenceErrors:         true,
		DisableFlagsInUseLine: true,
		TraverseChildren:      true,
		CompletionOptions:     cobra.CompletionOptions{HiddenDefaultCmd: true},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			// Cobra checks required flags after this hook, with a plain
			// error (exit 1): check them here, a usage error (125).
			if err := cmd.ValidateRequiredFlags(); err != nil {
				return usageError(fmt.Errorf("%w\nSee '%s --help'.", err, cmd.CommandPath()))
			}
			if err := cmd.ValidateFlagGroups(); err != nil {
				return usageError(fmt.Errorf("%w\nSee '%s --help'.", err, cmd.CommandPath()))
			}
			if pluginPreRun != nil {
				return pluginPreRun(cmd, args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			return codedError{StatusCode: ExitUsage, Status: fmt.Sprintf("unknown command %q for %q\nRun '%s --help' for usage.", args[0], cmd.CommandPath(), cmd.CommandPath())}
		},
	}
	if !isPlugin {
		// Match docker/cli's plugin root (cli-plugins/plugin.newPluginCommand).
		cmd.SetFlagErrorFunc(flagError)
		defer visitAll(cmd, func(c *cobra.Command) { c.DisableFlagsInUseLine = true })
		cmd.Version = Version // --version; docker has its own as a plugin
	}
	// The ledger flags are flags of the commands that talk to a ledger; the
	// root takes them too, hidden, before the command's name
	// (`docker notarize --ledger URL verify IMAGE`).
	addLedgerFlags(cmd, opts)
	cmd.Flags().VisitAll(func(f *pflag.Flag) { f.Hidden = true })

	cmd.AddCommand(cmds...)
	return cmd
}

func (o *rootOptions) getenv(key, def string) string {
	if v, ok := o.env.lookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

// home returns NOTARIZE_HOME, by default ${DOCKER_CONFIG:-~/.docker}/notarize
// (docker's --config is honoured in plugin mode).
func (o *rootOptions) home() string {
	if h := o.getenv(EnvHome, ""); h != "" {
		return h
	}
	return filepath.Join(config.Dir(), "notarize")
}

func (o *rootOptions) keyStore() KeyStore { return NewKeyStore(o.home()) }

func (o *rootOptions) resolver(insecure []string) (*Resolver, error) {
	return NewResolver(o.env.keychain, o.env.registryTransport, insecure)
}

// passwords prompts for key passwords on dockerCli's terminal, unless
// NOTARIZE_PASSWORD is set.
func (o *rootOptions) passwords(dockerCli stdio) passwordPrompt {
	return passwordPrompt{
		lookupEnv:    o.env.lookupEnv,
		stdinFD:      int(dockerCli.In().FD()),
		isTerminal:   o.env.isTerminal,
		readPassword: o.env.readPassword,
		prompt:       dockerCli.Err(),
	}
}

// addLedgerFlags gives cmd, a command that talks to a ledger, the flags of
// the connection to it: --ledger, --ledger-key, --ledger-ca and
// --witness-policy, bound to o. Commands that do not talk to a ledger do not
// take them.
func addLedgerFlags(cmd *cobra.Command, o *rootOptions) {
	flags := cmd.Flags()
	flags.StringVar(&o.ledgerURL, "ledger", o.getenv(EnvLedger, DefaultLedgerURL), "Ledger URL (env "+EnvLedger+")")
	flags.StringVar(&o.ledgerKey, "ledger-key", o.getenv(EnvLedgerKey, ""), "Ledger verifier key to pin, or a file holding it (the ledger's ledger.pub; env "+EnvLedgerKey+"; default: the key pinned on first use)")
	addLedgerCAFlag(cmd, o)
	addWitnessPolicyFlag(cmd, o)
	_ = cmd.MarkFlagFilename("ledger-key", "pub")
}

// addWitnessPolicyFlag gives cmd the --witness-policy flag, bound to o.
func addWitnessPolicyFlag(cmd *cobra.Command, o *rootOptions) {
	cmd.Flags().StringVar(&o.witnessPolicy, "witness-policy", o.getenv(EnvWitnessPolicy, ""), "Witness policy file: a ledger checkpoint counts only when a quorum of its witnesses cosigned it, and its log lines name the ledger keys to take (env "+EnvWitnessPolicy+")")
	_ = cmd.MarkFlagFilename("witness-policy")
}

// addLedgerCAFlag gives cmd the --ledger-ca flag, bound to o.
func addLedgerCAFlag(cmd *cobra.Command, o *rootOptions) {
	cmd.Flags().StringVar(&o.ledgerCA, "ledger-ca", o.getenv(EnvLedgerCA, ""), "PEM file of CA certificates to trust for an https ledger, besides the system's (a private CA; env "+EnvLedgerCA+")")
	_ = cmd.MarkFlagFilename("ledger-ca", "pem", "crt", "cer")
}

// ledger opens a verifying client for the configured ledger. Key pinning on
// first use is reported on stderr. A bad flag value is a usage error.
func (o *rootOptions) ledger(ctx context.Context, stderr io.Writer) (*ledgerclient.Client, error) {
	cfg, err := o.clientConfig(stderr)
	if err != nil {
		return nil, err
	}
	return ledgerclient.New(ctx, cfg)
}

// clientConfig checks the ledger flags and returns the configuration of a
// client, without any network call: a bad --ledger URL, --ledger-key,
// --ledger-ca or --witness-policy is a usage error (exit 125), found before
// the command does anything else.
func (o *rootOptions) clientConfig(stderr io.Writer) (ledgerclient.Config, error) {
	if _, err := ledgerclient.NormalizeURL(o.ledgerURL); err != nil {
		return ledgerclient.Config{}, usageError(fmt.Errorf("--ledger: %w", err))
	}
	key := ""
	if o.ledgerKey != "" {
		var err error
		if key, err = readLedgerKey("--ledger-key", o.ledgerKey); err != nil {
			return ledgerclient.Config{}, usageError(err)
		}
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{
		Level: slog.LevelInfo,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	hc, err := o.ledgerHTTPClient()
	if err != nil {
		return ledgerclient.Config{}, err
	}
	cfg := ledgerclient.Config{
		URL:         o.ledgerURL,
		VerifierKey: key,
		Home:        o.home(),
		HTTPClient:  hc,
		Logger:      logger,
	}
	// Only verify takes a recent map root as the proof (--max-index-lag);
	// every other command reads the whole log after the root. Commands that
	// write decide from their lookups (untrust dates its statement after
	// the key's current one): a front hiding a recent statement from them
	// could make an untrust that never takes effect (red team 9).
	if o.maxIndexLag != nil {
		cfg.MaxIndexLag = *o.maxIndexLag
	}
	if err := o.witnesses(&cfg); err != nil {
		return ledgerclient.Config{}, usageError(fmt.Errorf("--witness-policy: %w", err))
	}
	return cfg, nil
}

// ledgerHTTPClient is the HTTP client for the ledger: the test's, or one
// that also trusts --ledger-ca, or nil for ledgerclient's default.
func (o *rootOptions) ledgerHTTPClient() (*http.Client, error) {
	switch {
	case o.env.ledgerHTTP != nil:
		return o.env.ledgerHTTP, nil
	case o.ledgerCA != "":
		hc, err := ledgerclient.NewHTTPClient(o.ledgerCA)
		if err != nil {
			return nil, usageError(fmt.Errorf("--ledger-ca: %w", err))
		}
		return hc, nil
	}
	return nil, nil
}

func visitAll(cmd *cobra.Command, fn func(*cobra.Command)) {
	for _, c := range cmd.Commands() {
		visitAll(c, fn)
	}
	fn(cmd)
}

// exactArgs is cobra.ExactArgs with docker's usage-error exit code.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == n {
			return nil
		}
		plural := "s"
		if n == 1 {
			plural = ""
		}
		return codedError{
			StatusCode: ExitUsage,
			Status: fmt.Sprintf("%q requires exactly %d argument%s.\nSee '%s --help'.\n\nUsage:  %s\n\n%s",
				cmd.CommandPath(), n, plural, cmd.CommandPath(), cmd.UseLine(), strings.TrimSpace(cmd.Short)),
		}
	}
}

// usageError is a bad flag value: exit 125.
func usageError(err error) error { return withExitCode(ExitUsage, err) }
