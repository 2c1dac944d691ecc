//go:build !notarize_verifyonly

package plugin

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"

	"github.com/docker/cli/cli/command"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
)

// Audit statuses beyond the verdicts' names (TRUSTED, UNTRUSTED, UNKNOWN,
// UNSUPPORTED) and statusError (ERROR).
const (
	// statusNoDigest is the status of a local image the daemon knows no
	// registry digest for (built here, loaded from a tar, or its registry
	// reference removed): there is nothing to look up, so it can never be
	// TRUSTED.
	statusNoDigest = "UNVERIFIABLE"
)

// formatTable is audit's default output: a table (text is accepted as its
// other name).
const formatTable = "table"

// auditJobs bounds the registry and ledger requests an audit has under way
// at once.
const auditJobs = 8

// auditSchemaVersion is the schemaVersion of audit's JSON output.
const auditSchemaVersion = 1

type auditOptions struct {
	root     *rootOptions
	repo     string // REGISTRY/REPO; "" audits the local daemon
	allTags  bool
	tags     string // a path.Match glob over tag names
	signers  []string
	revokers []string
	insecure []string
	format   string
	sign     bool
	key      string
	yes      bool
	// daemon is the Docker daemon to audit; nil means dockerCli.Client().
	daemon dockerDaemon
	// jobs bounds the ledger lookups and signatures under way at once; 0
	// means auditJobs.
	jobs int
}

func newAuditCmd(dockerCli command.Cli, root *rootOptions) *cobra.Command {
	opts := auditOptions{root: root}
	cmd := &cobra.Command{
		Use:   "audit [OPTIONS] [REGISTRY/REPO]",
		Short: "Judge every local image and container, or every tag of a repository",
		Long: `Judge every image in the local Docker daemon and the containers (running or
stopped) that use it, or with REGISTRY/REPO every tag of that repository (with
--all-tags, or only the tags matching --tags GLOB).

The daemon is the one docker talks to (docker context, DOCKER_HOST, TLS). An
image is judged by the manifest digest it was pulled as (its RepoDigests; one
line per digest when it was pulled from several registries). An image with no
registry digest — built locally, loaded from a tar, or untagged from its
registry name — is UNVERIFIABLE: nothing says which manifest it came from, so
it cannot be checked against the ledger and is never TRUSTED. A repository's
tags are each resolved to a manifest that is fetched and hashed here.

Each digest is judged as verify does, under the --signer keys or every key in
the local key store: the verdict, and each accepted signer's current status.

--sign records every UNKNOWN digest as trusted, with --key, after listing them
and asking for confirmation (on a terminal; --yes without one). A manifest is
fetched and hashed again before it is signed, and the signed digests are
judged again. UNTRUSTED, UNSUPPORTED and UNVERIFIABLE subjects are never
signed: a revocation is undone only by an explicit 'docker notarize sign'.

Exit code, the worst over all subjects: 1 if any is UNTRUSTED; else 4 if any
could not be judged (ERROR: daemon, registry or ledger unreachable, a bad
proof, a manifest that does not hash to its digest); else 3 if any is
UNSUPPORTED; else 2 if any is UNKNOWN or UNVERIFIABLE; else 0 (all TRUSTED, or
nothing to audit).

JSON output (-o json) is one object:
  {"schemaVersion": 1, "source": "daemon"|"registry", "repository": "...",
   "signers": [{"name", "keyId"}], "verdict": worst status, "exitCode": N,
   "checkpointSize": N, "error": "why the audit failed, if it did",
   "subjects": [{"references": [...], "digest": "sha256:..." or "",
     "imageId": "...", "verdict": "TRUSTED|UNTRUSTED|UNKNOWN|UNSUPPORTED|
     UNVERIFIABLE|ERROR", "reason": "...",
     "signers": [{"name", "keyId", "status": "trusted|untrusted|unsupported|
       none", "timestamp", "logIndex"}],
     "containers": [{"id", "name", "state"}]}],
   "signed": [the statements --sign recorded, as 'sign -o json' prints them]}`,
		Example: `  docker notarize audit
  docker notarize audit --all-tags registry.example.com/app
  docker notarize audit --tags 'v1.*' -o json registry.example.com/app
  docker notarize audit --sign --key release --yes`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return exactArgs(1)(cmd, args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.repo = args[0]
			}
			return runAudit(cmd.Context(), dockerCli, opts)
		},
	}
	flags := cmd.Flags()
	flags.BoolVar(&opts.allTags, "all-tags", false, "With REGISTRY/REPO: judge every tag")
	flags.StringVar(&opts.tags, "tags", "", "With REGISTRY/REPO: judge the tags matching this glob (path.Match syntax, e.g. 'v1.*')")
	flags.StringArrayVar(&opts.signers, "signer", nil, "Accepted signer: a key name in the key store or a path to a PEM public key (repeatable; default: every key in the store)")
	flags.StringArrayVar(&opts.revokers, "revoker", nil, "A key that may revoke the accepted signers' keys besides each key itself, as verify's --revoker (repeatable)")
	_ = cmd.RegisterFlagCompletionFunc("revoker", keyNameCompletion(root, cobra.ShellCompDirectiveDefault))
	flags.BoolVar(&opts.sign, "sign", false, "Record every UNKNOWN digest as trusted, after confirmation")
	flags.StringVar(&opts.key, "key", "", "With --sign: the signing key, a name in the key store or a path to an encrypted key file (default: the only key in the store)")
	flags.BoolVarP(&opts.yes, "yes", "y", false, "With --sign: do not ask for confirmation (needed without a terminal)")
	addRegistryFlags(cmd, &opts.insecure)
	cmd.Flags().StringVarP(&opts.format, "output", "o", formatTable, "Output format: table or json")
	ledgerCommand(cmd, dockerCli, root, &opts.format)
	return cmd
}

// validate checks the flags against each other.
func (o *auditOptions) validate() error {
	switch o.format {
	case formatTable, formatText, formatJSON:
	default:
		return fmt.Errorf("--output %q: want table or json", o.format)
	}
	if o.repo == "" {
		if o.allTags || o.tags != "" {
			return errors.New("--all-tags and --tags need a REGISTRY/REPO argument")
		}
	} else {
		if o.allTags == (o.tags != "") {
			return fmt.Errorf("audit %s: choose the tags with --all-tags or --tags GLOB", o.repo)
		}
		if _, err := name.NewRepository(o.repo); err != nil {
			return fmt.Errorf("%q is not a REGISTRY/REPO (no tag, no digest): %w", o.repo, err)
		}
		if _, err := path.Match(o.tags, ""); err != nil {
			return fmt.Errorf("--tags %q: %w", o.tags, err)
		}
	}
	if !o.sign && (o.key != "" || o.yes) {
		return errors.New("--key and --yes go with --sign")
	}
	return nil
}

// runAudit collects the subjects (from the daemon or the registry), judges
// each digest against the ledger, signs the UNKNOWN ones with --sign, prints
// the result and returns the worst verdict's exit code.
func runAudit(ctx context.Context, dockerCli command.Cli, opts auditOptions) error {
	if err := opts.validate(); err != nil {
		return usageError(err)
	}
	// Refuse before any work: signing unattended must be asked for.
	if opts.sign && !opts.yes && !opts.root.env.stdinIsTerminal(dockerCli) {
		return usageError(errors.New("--sign asks for confirmation on a terminal: pass --yes to sign without one"))
	}
	out := newAuditOutput(opts.repo)
	fail := func(err error) error { return out.fail(dockerCli.Out(), opts.format, err) }
	accepted, err := acceptedSigners(opts.root.keyStore(), opts.signers)
	if err != nil {
		return fail(err)
	}
	if len(accepted) == 0 {
		// As verify: not a column of UNKNOWN, which would read as "nobody
		// signed them", but a configuration error (125) with a hint.
		return fail(usageError(fmt.Errorf("no accepted signers: the key store (%s) has no keys; pass --signer NAME|PATH with a signer's public key, or import one into the key store (docker notarize key import NAME FILE)", opts.root.keyStore().Dir)))
	}
	out.Signers = signerList(accepted)
	revokers, err := revokerKeys(opts.root.keyStore(), opts.revokers)
	if err != nil {
		return fail(err)
	}
	resolver, err := opts.root.resolver(opts.insecure)
	if err != nil {
		return usageError(err)
	}
	stderrTTY := opts.root.env.isTerminal != nil && opts.root.env.isTerminal(int(dockerCli.Err().FD()))
	prog := newProgress(dockerCli.Err(), stderrTTY)
	defer prog.finish()

	if out.Subjects, err = opts.collect(ctx, dockerCli, resolver, prog); err != nil {
		return fail(err)
	}
	j := &judge{signers: out.Signers, revokers: revokers, jobs: opts.jobs}
	if len(accepted) > 0 && hasDigests(out.Subjects) {
		if j.client, err = opts.root.ledger(ctx, dockerCli.Err()); err != nil {
			return fail(err)
		}
	}
	j.judgeAll(ctx, out.Subjects, prog)
	prog.finish()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("audit: %w", err) // interrupted: exit 130, no partial verdict
	}
	if opts.sign {
		if out.Signed, err = opts.signUnknown(ctx, dockerCli, resolver, out, j, prog); errors.Is(err, context.Canceled) {
			return err // interrupted: exit 130; what was recorded is on stderr
		} else if err != nil {
			return fail(err)
		}
	}
	sortSubjects(out.Subjects)
	out.finish(j.checkpointSize())
	if err := out.write(dockerCli.Out(), opts.format); err != nil {
		return withExitCode(ExitCouldNotVerify, fmt.Errorf("could not audit: write the result: %w", err))
	}
	if out.ExitCode == 0 {
		return nil
	}
	return withExitCode(out.ExitCode, nil)
}

// collect returns the subjects to judge: the repository's tags, or the
// daemon's images and containers.
func (o *auditOptions) collect(ctx context.Context, dockerCli command.Cli, resolver *Resolver, prog *progress) ([]auditSubject, error) {
	var subjects []auditSubject
	var err error
	if o.repo != "" {
		subjects, err = registrySubjects(ctx, resolver, o.repo, o.tagFilter(), prog)
	} else {
		subjects, err = o.daemonSubjects(ctx, dockerCli)
	}
	if subjects == nil {
		subjects = []auditSubject{}
	}
	return subjects, err
}

// tagFilter returns whether a tag is to be judged.
func (o *auditOptions) tagFilter() func(string) bool {
	if o.allTags {
		return func(string) bool { return true }
	}
	glob := o.tags
	return func(tag string) bool {
		ok, _ := path.Match(glob, tag) // the pattern was checked in validate
		return ok
	}
}

// signerList is the accepted signers, by name then key ID.
func signerList(accepted map[string]string) []auditSigner {
	list := make([]auditSigner, 0, len(accepted))
	for id, n := range accepted {
		list = append(list, auditSigner{Name: n, KeyID: id})
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].Name != list[j].Name {
			return list[i].Name < list[j].Name
		}
		return list[i].KeyID < list[j].KeyID
	})
	return list
}

func hasDigests(subjects []auditSubject) bool {
	for _, s := range subjects {
		if s.Digest != "" && s.Verdict == "" {
			return true
		}
	}
	return false
}
