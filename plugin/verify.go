package plugin

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
)

type verifyOptions struct {
	root     *rootOptions
	image    string
	signers  []string
	revokers []string
	insecure []string
	format   string
	maxAge   time.Duration
	// maxIndexLag is --max-index-lag (ledgerclient.Config.MaxIndexLag).
	maxIndexLag time.Duration
}

func newVerifyCmd(dockerCli stdio, root *rootOptions) *cobra.Command {
	opts := verifyOptions{root: root}
	cmd := &cobra.Command{
		Use:   "verify [OPTIONS] IMAGE",
		Short: "Verify an image (or file) against the ledger",
		Long: `Verify an image (or file) against the ledger.

IMAGE is NAME[:TAG], NAME@sha256:... or file:PATH; an image is resolved to its
manifest digest, hashed here. The accepted signers are the --signer keys, or
every key in the local key store. Each accepted signer's current statement is
the one with the newest signed timestamp; the verdict is UNTRUSTED if any says
untrusted, else UNSUPPORTED if any says unsupported, else TRUSTED if any says
trusted, else UNKNOWN. Only the accepted signers' current statements are asked
for, each with its inclusion proof: statements by anyone else, and the length
of the digest's history, change neither the verdict nor the cost.

Exit codes: 0 TRUSTED, 1 UNTRUSTED, 2 UNKNOWN, 3 UNSUPPORTED, 4 could not
verify (registry or ledger unreachable, bad proof or signature, a ledger that
rewrote its history), 125 usage or configuration error, found before any
request (a --signer that names no key, an empty key store, a bad ledger
flag). Nothing is TRUSTED unless everything verified.

With --witness-policy FILE (or NOTARIZE_WITNESS_POLICY), a ledger checkpoint
counts only when a quorum of the policy's witnesses cosigned it, and verify
exits 4 when the quorum is missing (the message names the missing witnesses:
a ledger showing this client a history its witnesses did not see) or when the
newest quorum's cosignatures are older than --max-age (default 24h: a ledger,
or a front before it, holding back newer statements such as a revocation).
Without a witness policy neither is checked.

A key revoked in the ledger (docker notarize key revoke) by itself, or by a
--revoker key, counts only with the statements it signed before the
revocation's log index: a thief's later statements, however they are dated,
do not count. A revocation by any other key is ignored. The revocations are
looked up alongside the statements, each lookup proven complete, so a ledger
or a front that hides a revocation makes verify exit 4.`,
		Example: `  docker notarize verify registry.example.com/app:1.0
  docker notarize verify --signer release --signer ./partner.pub -o json registry.example.com/app@sha256:…
  docker notarize verify file:dist/app.tar.gz
  docker notarize verify --signer ci --revoker security registry.example.com/app:1.0
  docker notarize verify --witness-policy witnesses.txt --max-age 1h registry.example.com/app:1.0`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.image = args[0]
			return runVerify(cmd.Context(), dockerCli, opts)
		},
	}
	cmd.Flags().StringArrayVar(&opts.signers, "signer", nil, "Accepted signer: a key name in the key store or a path to a PEM public key (repeatable; default: every key in the store)")
	cmd.Flags().StringArrayVar(&opts.revokers, "revoker", nil, "A key that may revoke the accepted signers' keys besides each key itself: a key name in the key store or a path to a PEM public key (repeatable)")
	_ = cmd.RegisterFlagCompletionFunc("revoker", keyNameCompletion(root, cobra.ShellCompDirectiveDefault))
	cmd.Flags().DurationVar(&opts.maxAge, "max-age", DefaultMaxWitnessAge, "With --witness-policy: exit 4 when the ledger's checkpoint was last cosigned by a witness quorum longer ago than this")
	cmd.Flags().DurationVar(&opts.maxIndexLag, "max-index-lag", ledgerclient.DefaultMaxIndexLag, "Take the ledger's map root as the proof of completeness when it is at most this old, without reading the log after it (a front could then hide statements of this last interval only; untrust and key revoke wait out the default, so a larger value widens their window by the difference); 0 reads the whole log after the root: complete up to the checkpoint")
	addRegistryFlags(cmd, &opts.insecure)
	addOutputFlag(cmd, &opts.format)
	ledgerCommand(cmd, dockerCli, root, &opts.format)
	return cmd
}

// runVerify prints the verdict and returns nil for TRUSTED, a silent exit
// error carrying the verdict's code otherwise, and an exit-4 error when
// anything failed. Usage and configuration errors (flags, --signer keys, an
// empty key store, the ledger flags) are found before any network call and
// exit 125.
func runVerify(ctx context.Context, dockerCli stdio, opts verifyOptions) error {
	out := verifyOutput{SchemaVersion: schemaVersion}
	// A verdict that cannot be printed is no verdict: exit 4, never a code
	// that a script would read as UNTRUSTED (1).
	write := func() error {
		var err error
		if opts.format == formatJSON {
			err = writeJSON(dockerCli.Out(), out)
		} else {
			err = writeVerifyText(dockerCli.Out(), out)
			if err == nil {
				err = writeRevokedText(dockerCli.Out(), out.Revoked)
			}
		}
		if err != nil {
			return withExitCode(ExitCouldNotVerify, fmt.Errorf("could not verify: write the verdict: %w", err))
		}
		return nil
	}
	// fail reports err: in JSON as status ERROR with the exit code. A usage
	// or configuration error keeps its 125; anything else is exit 4.
	fail := func(err error) error {
		if st, ok := errors.AsType[codedError](err); !ok || st.StatusCode != ExitUsage {
			err = withExitCode(ExitCouldNotVerify, fmt.Errorf("could not verify: %w", err))
		}
		if opts.format != formatJSON {
			return err
		}
		out.Status, out.Reason = statusError, err.Error()
		out.ExitCode, out.Error = Exit(err)
		out.RetryAfter = retryAfterSeconds(err)
		out.Signer, out.KeyID, out.Timestamp, out.LogIndex, out.Revoked = "", "", nil, nil, nil
		_ = write()
		return reported(err)
	}
	if err := validateFormat(opts.format); err != nil {
		return usageError(err)
	}
	if opts.maxAge <= 0 {
		return fail(usageError(fmt.Errorf("--max-age %s: want a positive duration", opts.maxAge)))
	}
	accepted, err := acceptedSigners(opts.root.keyStore(), opts.signers)
	if err != nil {
		return fail(err)
	}
	if len(accepted) == 0 {
		// Not UNKNOWN: that would read as "nobody signed it".
		return fail(usageError(fmt.Errorf("no accepted signers: the key store (%s) has no keys; pass --signer NAME|PATH with a signer's public key, or import one into the key store (docker notarize key import NAME FILE)", opts.root.keyStore().Dir)))
	}
	revokers, err := revokerKeys(opts.root.keyStore(), opts.revokers)
	if err != nil {
		return fail(err)
	}
	resolver, err := opts.root.resolver(opts.insecure)
	if err != nil {
		return fail(usageError(err))
	}
	if opts.maxIndexLag < 0 {
		return fail(usageError(fmt.Errorf("--max-index-lag %s: want 0 or a positive duration", opts.maxIndexLag)))
	}
	opts.root.maxWitnessAge = opts.maxAge
	opts.root.maxIndexLag = &opts.maxIndexLag
	cfg, err := opts.root.clientConfig(dockerCli.Err())
	if err != nil {
		return fail(err)
	}
	ids := make([]string, 0, len(accepted))
	for id := range accepted {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	// The ledger is asked about the accepted signers' revocations while
	// the registry resolves the image (issue 14): they do not depend on
	// the digest. The stored checkpoint is checked, and the connection to
	// the ledger opened, during the registry's round trips (for a ledger
	// whose key is known; a first use waits for the registry). Only the
	// accepted signers' current statements can change the verdict: asking
	// for just those keeps the answer to one statement per signer,
	// whatever others wrote and however long the digest's history. Their
	// revocations are asked for by the keys and their revokers
	// (keyrevoke.go): a revoked key's statements are read whole and only
	// those before it count.
	type ledgerStart struct {
		revs *ledgerclient.PendingRevocations
		err  error
	}
	lctx, stopLedger := context.WithCancel(ctx)
	defer stopLedger()
	started := make(chan ledgerStart, 1)
	startLedger := func() {
		go func() {
			// Go ends a process whose goroutine panics with exit code 2,
			// a verdict's for scripts: a panic here is exit 4, as on the
			// command's own goroutine.
			defer func() {
				if r := recover(); r != nil {
					started <- ledgerStart{err: fmt.Errorf("internal error: %v", r)}
				}
			}()
			client, err := ledgerclient.New(lctx, cfg)
			if err != nil {
				started <- ledgerStart{err: err}
				return
			}
			started <- ledgerStart{revs: client.StartRevocations(lctx, ids, revokerMap(ids, revokers))}
		}()
	}
	// The first use of a ledger pins its key: only once the registry has
	// answered, so that a verify failing there leaves no pin behind.
	early := ledgerclient.Known(cfg)
	if early {
		startLedger()
	}
	// A digest reference needs no registry: the verdict is about that digest.
	subject, ok := DigestOnly(opts.image)
	if !ok {
		subject, err = resolver.Resolve(ctx, opts.image, false)
	}
	if err != nil {
		// The registry's error is the one reported, whatever the ledger
		// answers.
		if early {
			stopLedger()
			if s := <-started; s.revs != nil {
				s.revs.Stop()
			}
		}
		return fail(err)
	}
	out.Digest = string(subject.Digest)
	if !early {
		startLedger()
	}
	s := <-started
	if s.err != nil {
		return fail(s.err)
	}
	res, revs, err := s.revs.Current(ctx, subject.Digest)
	if err != nil {
		return fail(err)
	}
	size := res.Checkpoint.Size
	out.CheckpointSize = &size
	if at := res.Complete.AnchoredAt; !at.IsZero() {
		at = at.UTC()
		out.AnchoredAt = &at
	}
	dec := notarize.DecideWithRevocations(res.Records, subject.Digest, ids, revs)
	out.Revoked = revokedOutputs(dec.Revoked, accepted)
	out.Status, out.ExitCode = dec.Verdict.String(), VerdictExitCode(dec.Verdict)
	nameOf := func(id string) string { return accepted[id] }
	if d := dec.Deciding; d != nil {
		ts := d.Statement.Predicate.Timestamp.UTC()
		idx := d.Index
		out.Signer, out.KeyID, out.Timestamp, out.LogIndex = nameOf(d.KeyID), d.KeyID, &ts, &idx
		out.Reason = dec.Reason(nameOf)
	} else {
		names := make([]string, 0, len(accepted))
		for _, id := range ids {
			names = append(names, accepted[id])
		}
		out.Reason = fmt.Sprintf("no statement about %s by an accepted signer (%s)", subject.Digest, strings.Join(names, ", "))
		if len(dec.Revoked) > 0 {
			out.Reason = dec.Reason(nameOf) // names the revocations
		}
	}
	if err := write(); err != nil {
		return err
	}
	if dec.Verdict == notarize.Trusted {
		return nil
	}
	return withExitCode(out.ExitCode, nil)
}

// acceptedSigners maps key ID to display name for the --signer keys, or for
// every key in the store when none is given.
func acceptedSigners(ks KeyStore, refs []string) (map[string]string, error) {
	var keys []Key
	if len(refs) == 0 {
		var err error
		if keys, err = ks.List(); err != nil {
			return nil, usageError(err)
		}
	}
	for _, ref := range refs {
		k, err := ks.ResolvePublic(ref)
		if err != nil {
			// A typo in a name, a missing or bad file: a configuration
			// error, found before any request (exit 125, not 4).
			return nil, usageError(fmt.Errorf("--signer %s: %w", ref, err))
		}
		keys = append(keys, k)
	}
	accepted := make(map[string]string, len(keys))
	for _, k := range keys {
		if _, dup := accepted[k.KeyID]; !dup {
			accepted[k.KeyID] = k.Name
		}
	}
	return accepted, nil
}
