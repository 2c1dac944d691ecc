package plugin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
)

// keyRevokeOutput is the result of key revoke. JSON field names are part of
// the CLI's contract.
type keyRevokeOutput struct {
	SchemaVersion int `json:"schemaVersion"`
	// Key and KeyID name the revoked key.
	Key   string `json:"key"`
	KeyID string `json:"keyId"`
	// RevokedBy and RevokerKeyID name the key that signed the revocation:
	// the key itself or its revoker.
	RevokedBy    string `json:"revokedBy"`
	RevokerKeyID string `json:"revokerKeyId"`
	// LogIndex is the revocation's log index, R: the key's statements at
	// greater indexes no longer count.
	LogIndex       uint64    `json:"logIndex"`
	CheckpointSize uint64    `json:"checkpointSize"`
	Timestamp      time.Time `json:"timestamp"`
	Reason         string    `json:"reason,omitempty"`
	// AlreadyRevoked says the ledger held a revocation of the key by this
	// signer already (LogIndex is the one that counts); nothing was added.
	AlreadyRevoked bool `json:"alreadyRevoked"`
	// Indexed is, with --index-wait, whether a map root of the ledger's
	// verifiable index covers the revocation (plugin/indexed.go).
	Indexed *bool `json:"indexed,omitempty"`
}

type keyRevokeOptions struct {
	root    *rootOptions
	name    string
	revoker string
	reason  string
	yes     bool
	format  string
	// indexWait is --index-wait.
	indexWait time.Duration
}

func newKeyRevokeCmd(dockerCli stdio, root *rootOptions) *cobra.Command {
	opts := keyRevokeOptions{root: root}
	cmd := &cobra.Command{
		Use:   "revoke [OPTIONS] NAME",
		Short: "Revoke a stolen or lost key: its statements recorded after the revocation stop counting",
		Long: `Append to the ledger the revocation of key NAME (a key name in the key store,
or a path to a PEM public key). It is irreversible.

From the revocation's log index on, nothing the key signs counts for verify
and the proxy, whatever its signed timestamp says: the ledger's log index
cannot be backdated, a thief's clock can. The key's statements recorded
before the revocation still count (images approved before the theft stay
trusted), and the key's current statement about a digest is chosen among
those only. Nothing, not even the key itself, can undo a revocation.

The revocation is signed by NAME itself, which needs its private key (in
the store, a KMS or an HSM), or with --revoker by a revoker key: a signing
key of the store that verifiers designate for NAME (a policy signer's
revokers, verify --revoker). A revocation by any other key does not count
anywhere, so a thief cannot revoke keys it does not hold.

It asks for confirmation unless --yes is given; without a terminal, --yes
is required. A key that the same signer revoked already is reported as such
and nothing is appended.`,
		Example: `  docker notarize key revoke ci-signer
  docker notarize key revoke --revoker security --reason "laptop stolen 2026-11-30" ci-signer
  docker notarize key revoke --yes -o json --revoker security ./ci-signer.pub`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.name = args[0]
			return runKeyRevoke(cmd.Context(), dockerCli, opts)
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&opts.revoker, "revoker", "", "Sign the revocation with this revoker key (a signing key name in the store or an encrypted key file) instead of the key itself")
	flags.StringVar(&opts.reason, "reason", "", "Why the key is revoked, recorded with the revocation (at most 1024 bytes)")
	flags.BoolVarP(&opts.yes, "yes", "y", false, "Revoke without asking for confirmation")
	addIndexWaitFlag(cmd, &opts.indexWait)
	addOutputFlag(cmd, &opts.format)
	ledgerCommand(cmd, dockerCli, root, &opts.format)
	_ = cmd.RegisterFlagCompletionFunc("revoker", keyNameCompletion(root, cobra.ShellCompDirectiveDefault))
	completeKeyNameArg(cmd, root)
	return cmd
}

// runKeyRevoke checks the flags, the key and the revoker before any network
// call (usage and configuration errors exit 125), asks for confirmation,
// then signs and records the revocation, unless the ledger holds one by the
// same signer already.
func runKeyRevoke(ctx context.Context, dockerCli stdio, opts keyRevokeOptions) error {
	if err := validateFormat(opts.format); err != nil {
		return usageError(err)
	}
	if opts.indexWait < 0 {
		return usageError(fmt.Errorf("--index-wait %s: want 0 or a positive duration", opts.indexWait))
	}
	if len(opts.reason) > notarize.MaxAttributeVal || !utf8.ValidString(opts.reason) {
		return usageError(fmt.Errorf("--reason: at most %d bytes of UTF-8", notarize.MaxAttributeVal))
	}
	ks := opts.root.keyStore()
	target, err := ks.ResolvePublic(opts.name)
	if err != nil {
		return usageError(fmt.Errorf("revoke key %s: %w", opts.name, err))
	}
	signerRef := opts.revoker
	if signerRef == "" {
		signerRef = opts.name
	}
	if _, err := ks.ResolveSigner(signerRef); err != nil {
		if opts.revoker == "" {
			return usageError(fmt.Errorf("revoke key %s: the key itself cannot sign (%w): pass --revoker with a revoker key that verifiers designate for it", opts.name, err))
		}
		return usageError(fmt.Errorf("--revoker %s: %w", opts.revoker, err))
	}
	cfg, err := opts.root.clientConfig(dockerCli.Err())
	if err != nil {
		return err
	}
	if err := confirmRevoke(dockerCli, opts, target); err != nil {
		return err
	}
	signer, err := loadSigningKey(ctx, dockerCli, opts.root, signerRef)
	if err != nil {
		return err
	}
	if opts.revoker != "" && signer.keyID == target.KeyID {
		opts.revoker = "" // the key itself, by another name
	}
	client, err := ledgerclient.New(ctx, cfg)
	if err != nil {
		return err
	}
	out, err := recordRevocation(ctx, dockerCli.Err(), client, signer, target, opts.reason, opts.root.env.now(), lookBound(true, opts.indexWait, opts.root.env.indexHold))
	if err != nil {
		return err
	}
	if kd, err := notarize.KeyRevocationDigest(target.KeyID); err == nil {
		if out.Indexed, err = awaitIndexed(ctx, dockerCli.Err(), client, kd, out.RevokerKeyID, out.LogIndex, opts.indexWait, opts.root.env.indexHold); err != nil {
			_ = writeKeyRevokeText(dockerCli.Err(), out) // what was recorded, before the error
			return err
		}
	}
	if opts.format == formatJSON {
		return writeJSON(dockerCli.Out(), out)
	}
	return writeKeyRevokeText(dockerCli.Out(), out)
}

// confirmRevoke says what is about to happen on stderr and asks for a yes
// on a terminal; --yes skips the question. Without a terminal and --yes it
// is a usage error: an irreversible step is never taken by default.
func confirmRevoke(dockerCli stdio, opts keyRevokeOptions, target Key) error {
	stderr := dockerCli.Err()
	by := "the key itself"
	if opts.revoker != "" {
		by = "revoker " + opts.revoker
	}
	if opts.yes {
		return nil
	}
	in := dockerCli.In()
	if !opts.root.env.isTerminal(int(in.FD())) {
		return usageError(fmt.Errorf("revoke key %s: stdin is not a terminal: pass --yes to revoke it (irreversible)", opts.name))
	}
	_, _ = fmt.Fprintf(stderr, "Revoke key %s (%s), signed by %s?\nEvery statement it signs after the revocation stops counting, whatever its timestamp; this cannot be undone.\nRevoke? [y/N] ",
		printable(target.Name), target.KeyID, printable(by))
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("revoke key %s: %w", opts.name, err)
	}
	if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
		return errors.New("revoke key: not confirmed: nothing recorded")
	}
	return nil
}

// recordRevocation appends the revocation of target signed by signer,
// unless the ledger (proven complete) holds one by signer already, and
// returns what counts.
func recordRevocation(ctx context.Context, stderr io.Writer, client *ledgerclient.Client, signer *signingKey, target Key, reason string, now time.Time, look time.Duration) (keyRevokeOutput, error) {
	out := keyRevokeOutput{SchemaVersion: schemaVersion, Key: target.Name, KeyID: target.KeyID,
		RevokedBy: signer.name, RevokerKeyID: signer.keyID, Reason: reason}
	kd, err := notarize.KeyRevocationDigest(target.KeyID)
	if err != nil {
		return out, fmt.Errorf("revoke key %s: %w", target.Name, err)
	}
	// The key's revocations by itself and by this signer, proven complete:
	// a front cannot make a revoked key look unrevoked here either.
	prior, err := client.Lookup(ctx, kd, target.KeyID, signer.keyID)
	if err != nil {
		return out, fmt.Errorf("revoke key %s: %w", target.Name, err)
	}
	if r, ok := notarize.FindKeyRevocation(prior.Records, target.KeyID, []string{signer.keyID}); ok {
		out.AlreadyRevoked, out.LogIndex, out.Timestamp, out.Reason = true, r.Index, r.Timestamp.UTC(), r.Reason
		out.CheckpointSize = prior.Checkpoint.Size
		if r.By != signer.keyID {
			out.RevokedBy, out.RevokerKeyID = target.Name, r.By
		}
		return out, nil
	}
	st, err := notarize.NewKeyRevocation(target.KeyID, target.Name, signer.identity.Name, reason, now.UTC())
	if err != nil {
		return out, fmt.Errorf("revoke key %s: %w", target.Name, err)
	}
	st.Predicate.Email = signer.identity.Email
	entry, err := notarize.Sign(ctx, signer.signer, st)
	if err != nil {
		return out, fmt.Errorf("revoke key %s: %w", target.Name, err)
	}
	res, err := submitStatement(ctx, stderr, client, st, signer.keyID, look, func() (*ledgerclient.SubmitResult, error) { return client.Submit(ctx, entry) })
	if err != nil {
		return out, fmt.Errorf("revoke key %s: %w", target.Name, err)
	}
	if res.Record.KeyID != signer.keyID || !notarize.IsKeyRevocation(res.Record.Statement) || res.Record.Statement.Digest().Hex() != target.KeyID {
		return out, fmt.Errorf("revoke key %s: the verified receipt is for another key or statement", target.Name)
	}
	out.LogIndex, out.CheckpointSize = res.Index, res.Checkpoint.Size
	out.Timestamp = res.Record.Statement.Predicate.Timestamp.UTC()
	return out, nil
}

// writeKeyRevokeText prints what key revoke did.
func writeKeyRevokeText(w io.Writer, o keyRevokeOutput) error {
	verb := "Revoked"
	if o.AlreadyRevoked {
		verb = "Already revoked:"
	}
	by := printable(o.RevokedBy)
	if o.RevokerKeyID == o.KeyID {
		by = "itself"
	}
	_, err := fmt.Fprintf(w, "%s key %s (%s) at log index %d, signed by %s (%s)\n", verb, printable(o.Key), o.KeyID, o.LogIndex, by, shortKeyID(o.RevokerKeyID))
	if err != nil {
		return err
	}
	if o.Reason != "" {
		if _, err := fmt.Fprintf(w, "  reason: %s\n", printable(o.Reason)); err != nil {
			return err
		}
	}
	note := "its statements after log index %d no longer count for verify and the proxy"
	if o.RevokerKeyID != o.KeyID {
		note += " where %s is designated as its revoker (policy revokers, verify --revoker)"
		_, err = fmt.Fprintf(w, "  "+note+"\n", o.LogIndex, by)
		return err
	}
	_, err = fmt.Fprintf(w, "  "+note+"\n", o.LogIndex)
	return err
}

// revokedKeyOutput is an accepted key that verify found revoked.
type revokedKeyOutput struct {
	KeyID string `json:"keyId"`
	// Signer is the accepted key's name.
	Signer string `json:"signer"`
	// LogIndex is the revocation's log index: the key's statements after
	// it did not count.
	LogIndex     uint64 `json:"logIndex"`
	RevokerKeyID string `json:"revokerKeyId"`
}

// revokedOutputs lists revs for verify's output, naming keys by names.
func revokedOutputs(revs []notarize.KeyRevocation, names map[string]string) []revokedKeyOutput {
	var out []revokedKeyOutput
	for _, r := range revs {
		out = append(out, revokedKeyOutput{KeyID: r.KeyID, Signer: names[r.KeyID], LogIndex: r.Index, RevokerKeyID: r.By})
	}
	return out
}

// writeRevokedText prints one line per revoked accepted key under verify's
// verdict.
func writeRevokedText(w io.Writer, revoked []revokedKeyOutput) error {
	for _, r := range revoked {
		by := "itself"
		if r.RevokerKeyID != r.KeyID {
			by = "revoker " + shortKeyID(r.RevokerKeyID)
		}
		if _, err := fmt.Fprintf(w, "  REVOKED:    %s (key %s) at log index %d by %s; its statements after it do not count\n",
			printable(r.Signer), r.KeyID, r.LogIndex, by); err != nil {
			return err
		}
	}
	return nil
}

// revokerKeys resolves verify's --revoker references (store names or PEM
// public key files) to key IDs. A reference that names no key is a usage
// error, found before any request.
func revokerKeys(ks KeyStore, refs []string) ([]string, error) {
	var ids []string
	for _, ref := range refs {
		k, err := ks.ResolvePublic(ref)
		if err != nil {
			return nil, usageError(fmt.Errorf("--revoker %s: %w", ref, err))
		}
		ids = append(ids, k.KeyID)
	}
	return ids, nil
}

// revokerMap designates revokers for every accepted key: without a policy,
// verify's --revoker keys may revoke any accepted signer's key.
func revokerMap(accepted, revokers []string) map[string][]string {
	if len(revokers) == 0 {
		return nil
	}
	m := make(map[string][]string, len(accepted))
	for _, k := range accepted {
		m[k] = revokers
	}
	return m
}

// markRevoked looks up the revocations of keyIDs (by each key itself or
// one of revokers, proven complete) and marks each statement recorded
// after its key's revocation with KeyRevokedAt: inspect shows it does not
// count.
func markRevoked(ctx context.Context, client *ledgerclient.Client, keyIDs, revokers []string, statements []statementOutput) error {
	revs, err := client.Revocations(ctx, keyIDs, revokerMap(keyIDs, revokers))
	if err != nil {
		return err
	}
	for i := range statements {
		s := &statements[i]
		if r, ok := revs[s.KeyID]; ok && s.LogIndex > r.Index {
			idx := r.Index
			s.KeyRevokedAt = &idx
		}
	}
	return nil
}

// rotateRevokers is whose revocation of OLD key rotate honours besides
// OLD's own: the --revoker keys and every key of the store. Counting more
// revokers than a verifier does is safe there: a revocation only makes
// rotate carry over less, never more.
func rotateRevokers(ks KeyStore, refs []string) ([]string, error) {
	ids, err := revokerKeys(ks, refs)
	if err != nil {
		return nil, err
	}
	keys, err := ks.List()
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		ids = append(ids, k.KeyID)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) >= api.MaxLookupKeyIDs {
		return nil, usageError(fmt.Errorf("%d revoker keys (the key store's and --revoker), at most %d", len(ids), api.MaxLookupKeyIDs-1))
	}
	return ids, nil
}
