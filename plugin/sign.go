package plugin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/spf13/cobra"
)

// signCommand describes one of the three commands that record a status.
type signCommand struct {
	use    string
	status notarize.Status
	short  string
	// example is the command's Examples section.
	example string
}

var (
	signTrusted = signCommand{use: "sign", status: notarize.StatusTrusted, short: "Record in the ledger that an image (or file) is trusted",
		example: `  docker notarize sign --key release registry.example.com/app:1.0
  docker notarize sign --key release --recursive --attr build=1234 registry.example.com/app@sha256:…
  docker notarize sign --key release -o json file:dist/app.tar.gz`}
	signUntrusted = signCommand{use: "untrust", status: notarize.StatusUntrusted, short: "Record in the ledger that an image (or file) is not trusted",
		example: `  docker notarize untrust --key release registry.example.com/app@sha256:…
  docker notarize untrust --key release --attr reason=CVE-2026-0001 registry.example.com/app:1.0`}
	signUnsupported = signCommand{use: "unsupport", status: notarize.StatusUnsupported, short: "Record in the ledger that an image (or file) is no longer supported",
		example: `  docker notarize unsupport --key release registry.example.com/app:0.9
  docker notarize unsupport --key release --recursive registry.example.com/app@sha256:…`}
)

type signOptions struct {
	root      *rootOptions
	status    notarize.Status
	image     string
	key       string
	attrs     []string
	recursive bool
	insecure  []string
	format    string
	// indexWait is untrust's and unsupport's --index-wait.
	indexWait time.Duration
}

func newSignCmd(dockerCli stdio, root *rootOptions, sc signCommand) *cobra.Command {
	opts := signOptions{root: root, status: sc.status}
	cmd := &cobra.Command{
		Use:   sc.use + " [OPTIONS] IMAGE",
		Short: sc.short,
		Long: sc.short + `.

IMAGE is NAME[:TAG], NAME@sha256:... or file:PATH. An image's manifest is
fetched from its registry (credentials from the Docker config and credential
helpers) and hashed here; the digest in the reference, if any, must match. The
statement is signed with --key and submitted; success is reported only once
the ledger's receipt (signed checkpoint, consistency and inclusion proof) has
been verified. For an index, --recursive also covers each manifest it lists.

The newest signed timestamp wins. If this key's current statement about the
digest is dated at or after this machine's clock, the new one is dated just
after it (with a warning), so that it takes effect. Only this key's current
statement is looked up: statements by other keys, however many, cannot
delay or block it.`,
		Example: sc.example,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.image = args[0]
			return runSign(cmd.Context(), dockerCli, opts)
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&opts.key, "key", "", "Signing key: a name in the key store or a path to an encrypted key file (default: the only key in the store)")
	flags.StringArrayVar(&opts.attrs, "attr", nil, "Attribute key=value to record with the statement (repeatable)")
	flags.BoolVar(&opts.recursive, "recursive", false, "For an index, also record each manifest it lists")
	if sc.status != notarize.StatusTrusted {
		addIndexWaitFlag(cmd, &opts.indexWait)
	}
	addRegistryFlags(cmd, &opts.insecure)
	addOutputFlag(cmd, &opts.format)
	ledgerCommand(cmd, dockerCli, root, &opts.format)
	return cmd
}

func addRegistryFlags(cmd *cobra.Command, insecure *[]string) {
	cmd.Flags().StringArrayVar(insecure, "insecure-registry", nil, "Allow plain http to this registry HOST or HOST:PORT (loopback always may; repeatable)")
}

func addOutputFlag(cmd *cobra.Command, format *string) {
	cmd.Flags().StringVarP(format, "output", "o", formatText, "Output format: text or json")
}

// runSign checks every flag and the signing key before any network call
// (usage and configuration errors exit 125), then resolves the subject,
// records a statement for it (and with --recursive for each manifest of an
// index) and prints what was recorded, including, when a later statement
// failed, the ones recorded before it.
func runSign(ctx context.Context, dockerCli stdio, opts signOptions) error {
	if err := validateFormat(opts.format); err != nil {
		return usageError(err)
	}
	if opts.indexWait < 0 {
		return usageError(fmt.Errorf("--index-wait %s: want 0 or a positive duration", opts.indexWait))
	}
	attrs, err := parseAttrs(opts.attrs)
	if err != nil {
		return usageError(err)
	}
	resolver, err := opts.root.resolver(opts.insecure)
	if err != nil {
		return usageError(err)
	}
	cfg, err := opts.root.clientConfig(dockerCli.Err())
	if err != nil {
		return err
	}
	signer, err := loadSigningKey(ctx, dockerCli, opts.root, opts.key)
	if err != nil {
		return err
	}
	subject, err := resolver.Resolve(ctx, opts.image, opts.recursive)
	if err != nil {
		return err
	}
	client, err := ledgerclient.New(ctx, cfg)
	if err != nil {
		return err
	}
	subjects := append([]Subject{*subject}, subject.Manifests...)
	res := signResult{SchemaVersion: schemaVersion, Statements: make([]signOutput, 0, len(subjects))}
	// A revocation is waited for until the ledger's index covers it (a
	// root covering the last one covers them all); a new trust is not:
	// until then it can only be missed, which fails safe. What was
	// recorded before a later statement failed is waited for too: those
	// revocations are in the log, and the command must not return before
	// every default verify sees them.
	awaitRecorded := func() (err error) {
		if opts.status == notarize.StatusTrusted || len(res.Statements) == 0 {
			return nil
		}
		last := slices.MaxFunc(res.Statements, func(a, b signOutput) int { return cmp.Compare(a.LogIndex, b.LogIndex) })
		res.Indexed, err = awaitIndexed(ctx, dockerCli.Err(), client, notarize.Digest(last.Digest), last.KeyID, last.LogIndex, opts.indexWait, opts.root.env.indexHold)
		return err
	}
	for _, s := range subjects {
		o, err := recordStatement(ctx, dockerCli.Err(), client, signer, s, opts.status, attrs, opts.root.env.now().UTC(), lookBound(opts.status != notarize.StatusTrusted, opts.indexWait, opts.root.env.indexHold))
		if err != nil {
			if werr := awaitRecorded(); werr != nil {
				err = errors.Join(err, werr)
			}
			return signFailed(dockerCli.Out(), opts.format, res, err)
		}
		res.Statements = append(res.Statements, o)
	}
	if err := awaitRecorded(); err != nil {
		return signFailed(dockerCli.Out(), opts.format, res, err)
	}
	if opts.format == formatJSON {
		return writeJSON(dockerCli.Out(), res)
	}
	return writeSignText(dockerCli.Out(), res.Statements)
}

// signFailed reports err after the statements in res were recorded: in JSON
// as res with the error and exit code; in text, the recorded ones are
// printed before the error goes to stderr.
func signFailed(w io.Writer, format string, res signResult, err error) error {
	if len(res.Statements) == 0 {
		return err // nothing recorded: the error alone (jsonErrors prints it)
	}
	if format != formatJSON {
		_ = writeSignText(w, res.Statements)
		return err
	}
	res.ExitCode, res.Error = Exit(err)
	res.RetryAfter = retryAfterSeconds(err)
	_ = writeJSON(w, res)
	return reported(err)
}

// recordStatement records in the ledger that s has status, by signer: the
// statement is dated by statementTime, signed and submitted, and the
// verified receipt must be for this key and digest; a submission of unknown
// outcome is looked for up to look (submitStatement). sign, untrust,
// unsupport and audit --sign record through it.
func recordStatement(ctx context.Context, stderr io.Writer, client *ledgerclient.Client, signer *signingKey, s Subject, status notarize.Status, attrs map[string]string, now time.Time, look time.Duration) (signOutput, error) {
	at, err := statementTime(ctx, stderr, client, s.Digest, signer.keyID, now)
	if err != nil {
		return signOutput{}, fmt.Errorf("record %s as %s: %w", s.Digest, status, err)
	}
	st := notarize.NewStatement(s.Digest, s.Name, notarize.Predicate{
		Status:     status,
		MediaType:  s.MediaType,
		Size:       s.Size,
		Kind:       s.Kind,
		Attributes: attrs,
		Name:       signer.identity.Name,
		Email:      signer.identity.Email,
		Timestamp:  at,
	})
	entry, err := notarize.Sign(ctx, signer.signer, st)
	if err != nil {
		return signOutput{}, fmt.Errorf("sign %s: %w", s.Digest, err)
	}
	res, err := submitStatement(ctx, stderr, client, st, signer.keyID, look, func() (*ledgerclient.SubmitResult, error) { return client.Submit(ctx, entry) })
	if apiErr, ok := errors.AsType[*ledgerclient.APIError](err); ok && apiErr.Code == api.CodeIdentityMismatch {
		return signOutput{}, fmt.Errorf("record %s as %s: %w (this key signs as %s; give it the identity the ledger enrolled: docker notarize key identity %s --display-name NAME --email EMAIL)",
			s.Digest, status, err, formatIdentity(signer.identity), signer.name)
	}
	if apiErr, ok := errors.AsType[*ledgerclient.APIError](err); ok && apiErr.Code == api.CodeKeyRevoked {
		return signOutput{}, fmt.Errorf("record %s as %s: %w (key %s was revoked: sign with another key, e.g. docker notarize key generate, then key rotate to move its statements)",
			s.Digest, status, err, signer.name)
	}
	if err != nil {
		return signOutput{}, fmt.Errorf("record %s as %s: %w", s.Digest, status, err)
	}
	if res.Record.KeyID != signer.keyID || res.Record.Statement.Digest() != s.Digest {
		return signOutput{}, fmt.Errorf("record %s: the verified receipt is for another key or digest", s.Digest)
	}
	return signOutput{
		Subject:        s.Name,
		Digest:         string(s.Digest),
		Status:         outputStatus(status),
		LogIndex:       res.Index,
		CheckpointSize: res.Checkpoint.Size,
		KeyID:          signer.keyID,
		Signer:         signer.identity.Name,
		Timestamp:      res.Record.Statement.Predicate.Timestamp.UTC(),
		Duplicate:      res.Duplicate,
	}, nil
}

// statementTime returns the timestamp of a new statement by keyID about d:
// now, unless the key's current statement in the ledger is dated at or after
// now (another machine's clock ran ahead, or this one was set back). The
// newest signed timestamp wins, so a statement dated now would be recorded
// and change nothing: an untrust reported as done while verify still says
// TRUSTED. The new statement is then dated just after the current one, and a
// warning says so on stderr. Only this key's current statement is asked for:
// what other keys wrote about d, however much, cannot stop a revocation.
func statementTime(ctx context.Context, stderr io.Writer, client *ledgerclient.Client, d notarize.Digest, keyID string, now time.Time) (time.Time, error) {
	res, err := client.Current(ctx, d, keyID)
	if err != nil {
		return time.Time{}, err
	}
	cur, ok := notarize.Current(res.Records, d, keyID)
	if !ok || now.After(cur.Statement.Predicate.Timestamp) {
		return now, nil
	}
	prev := cur.Statement.Predicate.Timestamp.UTC()
	at := prev.Add(time.Millisecond)
	fmt.Fprintf(stderr, "warning: this key's current statement about %s (log index %d, %s) is dated %s, not before this machine's clock (%s); the new statement is dated %s so that it supersedes it. Check the signers' clocks.\n",
		d, cur.Index, cur.Status(), prev.Format(time.RFC3339Nano), now.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano))
	return at, nil
}

// signingKey is a decrypted private key ready to sign.
type signingKey struct {
	signer signature.Signer
	name   string
	keyID  string
	// identity is who the statements say signed: the key store's record
	// of the key (KeyStore.Identity), or the file's base name for a key
	// given by path.
	identity notarize.Identity
}

// loadSigningKey finds the key named by ref (store name or path; "" means the
// only signing key in the store) and opens it: an encrypted key is decrypted
// with its password, a KMS or HSM key is opened through its provider.
func loadSigningKey(ctx context.Context, dockerCli stdio, root *rootOptions, ref string) (*signingKey, error) {
	ks := root.keyStore()
	if ref == "" {
		keys, err := ks.SigningKeys()
		if err != nil {
			return nil, err
		}
		switch len(keys) {
		case 0:
			return nil, usageError(fmt.Errorf("no signing key: create one with `key generate --name NAME` or pass --key PATH (key store: %s)", ks.Dir))
		case 1:
			ref = keys[0].Name
		default:
			return nil, usageError(fmt.Errorf("%d keys in the key store: choose one with --key NAME", len(keys)))
		}
	}
	src, err := ks.ResolveSigner(ref)
	if err != nil {
		// No such key, a bad name, a file that cannot be read, a public
		// key only: a configuration error, found before any request.
		return nil, usageError(fmt.Errorf("--key %s: %w", ref, err))
	}
	name := src.Name
	ident := notarize.Identity{Name: name}
	if !isPath(ref) {
		if ident, err = ks.Identity(ref); err != nil {
			return nil, usageError(fmt.Errorf("--key %s: %w", ref, err))
		}
	}
	s, err := src.Open(ctx, func() ([]byte, error) { return root.passwords(dockerCli).get(name, false) }, root.env.lookupEnv)
	if err != nil {
		return nil, err // names the key (and its provider)
	}
	pub, err := s.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", name, err)
	}
	id, err := notarize.KeyID(pub)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", name, err)
	}
	return &signingKey{signer: s, name: name, keyID: id, identity: ident}, nil
}
