//go:build !notarize_verifyonly

package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/notarize/docker-notarize/internal/boundedfile"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
)

// lsSchemaVersion is the schemaVersion of ls's JSON output.
const lsSchemaVersion = 1

// maxPolicyKeyFile bounds a public key file named by a policy.
const maxPolicyKeyFile = 64 << 10

type lsOptions struct {
	root    *rootOptions
	signers []string
	// revokers may revoke the signers' keys besides each key itself
	// (--revoker, as verify's; a policy names its own).
	revokers []string
	policy   string
	status   string
	format   string
	// prove checks each listed statement against a current lookup, which
	// the ledger's verifiable map proves complete.
	prove bool
	// maxRevokedLookups is lsMaxRevokedLookups, or a test's lower bound
	// (0: the constant).
	maxRevokedLookups int
}

func newLsCmd(dockerCli stdio, root *rootOptions) *cobra.Command {
	opts := lsOptions{root: root}
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List the assets signer keys have statements about, with their current status",
		Long: `List the assets (digests) each signer key has statements about in the ledger,
with the key's current statement about each (its newest signed timestamp,
ties broken by log index), and per signer "N assets signed by NAME: T trusted,
M revoked (U untrusted, S unsupported)".

The signers are the --signer keys (a name in the key store or a path to a PEM
public key), or every signer of a trust policy (--policy FILE, the proxy's
policy format; its key paths are relative to the file), or by default every
key in the local key store. With several signers a last line counts the
whole team's distinct assets. --status keeps only the assets whose current
status is trusted, untrusted or unsupported.

The ledger answers a lookup by key, one page at a time. Every page is
checked: its checkpoint (the pinned ledger key, the witness policy, and
consistency with the last checkpoint this client saw), every entry's
inclusion proof and signature, that it is by the key asked for and has the
asked status, and that the digests come in strictly increasing order across
pages, so a ledger or a front that repeats or reorders assets is refused
(exit 4). What is listed is proven to be logged and signed by the key.
That nothing was left out, and that each statement listed is the key's
newest about its asset, is NOT proven yet: the ledger's verifiable map
proves one digest's current statements, not a key's whole list, so a
ledger can still hide assets from ls; completeness will be proven once the
map is also kept by key. With --prove, each listed status is also proven
current by a current lookup per asset (as verify makes), so a statement the
key has since superseded is refused (exit 4).

Exit codes: 0 listed; 4 the ledger's answer did not verify or the ledger was
unreachable; 125 a bad flag, signer or policy file.

JSON output (-o json) is one object:
  {"schemaVersion": 1, "status": "the --status filter, if any",
   "checkpointSize": N, "complete": false,
   "signers": [{"name", "keyIds": [...], "assets": N, "trusted": N,
     "untrusted": N, "unsupported": N, "revoked": N,
     "statements": [{"digest", "status": "TRUSTED|UNTRUSTED|UNSUPPORTED",
       "keyId", "subject", "kind",
       "timestamp", "logIndex"}]}],
   "team": {"assets", "trusted", "untrusted", "unsupported", "revoked"},
   "error": "why it failed, if it did",
   "retryAfter": N (with error: the seconds the ledger asked to wait)}`,
		Example: `  docker notarize ls --signer release
  docker notarize ls --signer release --status untrusted
  docker notarize ls --policy /etc/notarize/policy.yaml -o json
  docker notarize ls`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLs(cmd.Context(), dockerCli, opts)
		},
	}
	flags := cmd.Flags()
	flags.StringArrayVar(&opts.signers, "signer", nil, "Signer: a key name in the key store or a path to a PEM public key (repeatable; default: every key in the store)")
	flags.StringVar(&opts.policy, "policy", "", "List every signer of this trust policy file (the proxy's format) instead")
	flags.StringArrayVar(&opts.revokers, "revoker", nil, "A key whose revocations of the signers' keys count besides each key's own, as verify's --revoker (repeatable; a --policy names its own)")
	_ = cmd.RegisterFlagCompletionFunc("revoker", keyNameCompletion(root, cobra.ShellCompDirectiveDefault))
	flags.StringVar(&opts.status, "status", "", "Only assets whose current status is trusted, untrusted or unsupported")
	flags.BoolVar(&opts.prove, "prove", false, "Also prove each listed status current with a verified current lookup per asset (the ledger's verifiable map): a ledger listing a statement the key has since superseded exits 4")
	flags.StringVarP(&opts.format, "output", "o", formatText, "Output format: text (a table) or json")
	ledgerCommand(cmd, dockerCli, root, &opts.format)
	return cmd
}

// lsOutput is the result of ls. JSON field names are part of the CLI's
// contract.
type lsOutput struct {
	SchemaVersion int `json:"schemaVersion"`
	// Status is the --status filter (TRUSTED, UNTRUSTED or UNSUPPORTED), ""
	// for none.
	Status string `json:"status,omitempty"`
	// CheckpointSize is the newest verified checkpoint the pages were read under.
	CheckpointSize uint64 `json:"checkpointSize"`
	// Complete is false: the ledger does not prove yet that no statement
	// was left out.
	Complete bool       `json:"complete"`
	Signers  []lsSigner `json:"signers"`
	// Team counts the distinct assets of all signers (an asset is revoked
	// when any signer's current statement revokes it).
	Team  lsCounts `json:"team"`
	Error string   `json:"error,omitempty"`
	// ExitCode is the process's exit code, with Error.
	ExitCode int `json:"exitCode,omitempty"`
	// RetryAfter is, with Error, the seconds the ledger asked to wait
	// before trying again (retryAfterSeconds).
	RetryAfter int `json:"retryAfter,omitempty"`
}

// lsCounts tallies current statements by status. Revoked is Untrusted +
// Unsupported.
type lsCounts struct {
	Assets      int `json:"assets"`
	Trusted     int `json:"trusted"`
	Untrusted   int `json:"untrusted"`
	Unsupported int `json:"unsupported"`
	Revoked     int `json:"revoked"`
}

func (c *lsCounts) add(s notarize.Status) {
	c.Assets++
	switch s {
	case notarize.StatusTrusted:
		c.Trusted++
	case notarize.StatusUntrusted:
		c.Untrusted++
		c.Revoked++
	case notarize.StatusUnsupported:
		c.Unsupported++
		c.Revoked++
	}
}

// lsSigner is one signer (one key of the store, or a policy signer with
// all its keys) and its current statements.
type lsSigner struct {
	Name   string   `json:"name"`
	KeyIDs []string `json:"keyIds"`
	lsCounts
	Statements []lsStatement `json:"statements"`
	// revokers are the key IDs that may revoke the signer's keys besides
	// each key itself (a policy signer's revokers).
	revokers []string
}

// lsStatement is a key's current statement about one asset.
type lsStatement struct {
	Digest    string    `json:"digest"`
	Status    string    `json:"status"`
	KeyID     string    `json:"keyId"`
	Subject   string    `json:"subject,omitempty"`
	Kind      string    `json:"kind,omitempty"`
	Timestamp time.Time `json:"timestamp"`
	LogIndex  uint64    `json:"logIndex"`
	// KeyRevokedAt is the log index of the key's revocation when this
	// statement was recorded after it: it does not count (keyrevoke.go).
	KeyRevokedAt *uint64 `json:"keyRevokedAt,omitempty"`
}

// validate checks the flags against each other.
func (o *lsOptions) validate() error {
	switch o.format {
	case formatText, formatTable, formatJSON:
	default:
		return fmt.Errorf("--output %q: want text (a table) or json", o.format)
	}
	if o.status != "" {
		s := notarize.Status(strings.ToLower(o.status))
		if !s.Valid() {
			return fmt.Errorf("--status %q: want trusted, untrusted or unsupported", o.status)
		}
		o.status = string(s)
	}
	if o.policy != "" && len(o.signers) > 0 {
		return errors.New("--signer and --policy: choose one")
	}
	if o.policy != "" && len(o.revokers) > 0 {
		return errors.New("--revoker and --policy: the policy names its signers' revokers")
	}
	return nil
}

// runLs resolves the signers (a usage error when they cannot be: exit
// 125), walks each key's verified pages and prints the assets and tallies.
func runLs(ctx context.Context, dockerCli stdio, opts lsOptions) error {
	out := lsOutput{SchemaVersion: lsSchemaVersion, Signers: []lsSigner{}}
	fail := func(code int, err error) error {
		if opts.format == formatJSON {
			out.Error, out.ExitCode, out.RetryAfter = err.Error(), code, retryAfterSeconds(err)
			_ = writeJSON(dockerCli.Out(), out)
			return reported(withExitCode(code, err))
		}
		return withExitCode(code, err)
	}
	if err := opts.validate(); err != nil {
		return fail(ExitUsage, err)
	}
	out.Status = strings.ToUpper(opts.status)
	signers, err := opts.resolveSigners()
	if err != nil {
		return fail(ExitUsage, err)
	}
	client, err := opts.root.ledger(ctx, dockerCli.Err())
	if err != nil {
		if st, ok := errors.AsType[codedError](err); ok && st.StatusCode == ExitUsage {
			return fail(ExitUsage, err) // a bad --ledger-ca or witness policy file
		}
		return fail(ExitCouldNotVerify, fmt.Errorf("could not list: %w", err))
	}
	team := map[notarize.Digest]notarize.Status{}
	for i := range signers {
		size, err := listSigner(ctx, client, &signers[i], opts, team)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return fmt.Errorf("ls: %w", err)
			}
			return fail(ExitCouldNotVerify, fmt.Errorf("could not list: %w", err))
		}
		out.CheckpointSize = max(out.CheckpointSize, size)
	}
	for _, st := range team {
		out.Team.add(st)
	}
	out.Signers = signers
	if opts.format == formatJSON {
		err = writeJSON(dockerCli.Out(), out)
	} else {
		err = writeLsTable(dockerCli.Out(), out)
		if err == nil {
			proven := ""
			if opts.prove {
				proven = " and is its proven current statement about the asset"
			}
			_, err = fmt.Fprintf(dockerCli.Err(), "Checked against the ledger's checkpoint of size %d: each statement listed is logged and signed by its key%s. That no asset is missing is not proven yet.\n", out.CheckpointSize, proven)
		}
	}
	if err != nil {
		return withExitCode(ExitCouldNotVerify, fmt.Errorf("could not list: write the result: %w", err))
	}
	return nil
}

// listSigner walks every verified page of each of s's keys (with
// opts.prove, each statement also proven current by a current lookup),
// records each key's current statement per asset in s (with opts.status,
// only those with it), and folds the assets into team (an asset revoked
// by any signer stays revoked). It returns the largest checkpoint size
// seen.
func listSigner(ctx context.Context, c *ledgerclient.Client, s *lsSigner, opts lsOptions, team map[notarize.Digest]notarize.Status) (uint64, error) {
	status, prove := notarize.Status(opts.status), opts.prove
	// A key's statements after its revocation (by itself, or by one of a
	// policy signer's revokers) are listed marked, and left out of the
	// tallies (keyrevoke.go). The revocations are asked after the pages
	// are read, and must be proven in a log at least as large as the
	// pages': else a revocation in between (before a thief's statement on
	// a page) would be missed, by chance or by a front answering the
	// revocation lookups from an older checkpoint.
	recs := make(map[string][]notarize.Record, len(s.KeyIDs))
	var size uint64
	for _, id := range s.KeyIDs {
		n, err := keyRecords(ctx, c, id, status, prove, recs)
		if err != nil {
			return 0, fmt.Errorf("signer %s: %w", s.Name, err)
		}
		size = max(size, n)
	}
	revs, revSize, err := c.RevocationsAt(ctx, s.KeyIDs, revokerMap(s.KeyIDs, s.revokers))
	if err != nil {
		return 0, fmt.Errorf("signer %s: %w", s.Name, err)
	}
	// Defence in depth: no answer reaches this check today. Reading the
	// pages advanced the client's stored checkpoint to at least their
	// size, and every lookup compares its answer with the checkpoint
	// stored when it was sent, so a front answering the revocation lookups
	// from an older checkpoint is a rollback (ForkError, exit 4) in the
	// client first (TestRedteam5LsStaleRevocationLookup). Only a stored
	// state removed while ls runs (another process's "ledger forget
	// --purge" between the pages and the revocation lookups) lets an older
	// answer through as a first use; this check refuses it then, and
	// keeps the rule here should the client's own check change.
	if revSize < size {
		return 0, fmt.Errorf("signer %s: %w: the revocation lookups answered for %d entries, the statements for %d", s.Name, ledgerclient.ErrBadProof, revSize, size)
	}
	// A revoked key's current statement about an asset is chosen among
	// those before its revocation, so the ledger's current one (maybe a
	// thief's) is no filter: read its pages again, all of them. (They may
	// come from a larger log: what it adds is after the revocation.)
	for _, id := range s.KeyIDs {
		if _, revoked := revs[id]; revoked && status != "" {
			delete(recs, id)
			n, err := keyRecords(ctx, c, id, "", prove, recs)
			if err != nil {
				return 0, fmt.Errorf("signer %s: %w", s.Name, err)
			}
			size = max(size, n)
		}
	}
	w := signerWalk{mine: map[notarize.Digest]notarize.Status{}, statements: []lsStatement{}}
	if err := w.judge(ctx, c, s.KeyIDs, recs, status, revs, opts.revokedLookupBound()); err != nil {
		return 0, fmt.Errorf("signer %s: %w", s.Name, err)
	}
	s.Statements = w.statements
	mine := w.mine
	sort.SliceStable(s.Statements, func(i, j int) bool { return s.Statements[i].Digest < s.Statements[j].Digest })
	for d, st := range mine {
		s.add(st)
		team[d] = worse(team[d], st)
	}
	return size, nil
}

// signerWalk is what listSigner gathers from one signer's key pages: the
// statements to list and each asset's status by the signer.
type signerWalk struct {
	statements []lsStatement
	mine       map[notarize.Digest]notarize.Status
}

// keyRecords reads every verified page of key id's current statements
// (with status, only those with it; with prove, each also proven current)
// into recs[id], and returns the largest checkpoint size seen.
func keyRecords(ctx context.Context, c *ledgerclient.Client, id string, status notarize.Status, prove bool, recs map[string][]notarize.Record) (uint64, error) {
	var size uint64
	for p, err := range c.KeyDigestPages(ctx, id, status) {
		if err != nil {
			return 0, err
		}
		size = max(size, p.Checkpoint.Size)
		if prove {
			if err := c.ProveCurrent(ctx, id, p.Records); err != nil {
				return 0, err
			}
		}
		recs[id] = append(recs[id], p.Records...)
	}
	return size, nil
}

// judge lists and counts the records of keyIDs (recs, by key) under the
// revocations revs, and, for a revoked key, its current statement before
// the revocation about each asset whose ledger-current statement comes
// after it (for at most bound assets: currentBeforeRevocation).
func (w *signerWalk) judge(ctx context.Context, c *ledgerclient.Client, keyIDs []string, recs map[string][]notarize.Record, status notarize.Status, revs notarize.Revocations, bound int) error {
	var after []revokedCurrent // a revoked key's assets whose ledger-current statement is after the revocation
	for _, id := range keyIDs {
		for _, r := range recs[id] {
			st := lsStatementOf(r)
			if rv, ok := revs[r.KeyID]; ok && r.Index > rv.Index {
				idx := rv.Index
				st.KeyRevokedAt = &idx
				after = append(after, revokedCurrent{digest: r.Statement.Digest(), keyID: r.KeyID})
			}
			w.add(st, r, status)
		}
	}
	before, err := currentBeforeRevocation(ctx, c, after, revs, bound)
	if err != nil {
		return err
	}
	for _, r := range before {
		w.add(lsStatementOf(r), r, status)
	}
	return nil
}

// add lists st, the statement of record r, unless status filters it out,
// and counts it unless it comes after its key's revocation.
func (w *signerWalk) add(st lsStatement, r notarize.Record, status notarize.Status) {
	pr := r.Statement.Predicate
	if status != "" && pr.Status != status {
		return
	}
	w.statements = append(w.statements, st)
	if st.KeyRevokedAt == nil {
		d := r.Statement.Digest()
		w.mine[d] = worse(w.mine[d], pr.Status)
	}
}

// lsStatementOf returns the listing of record r.
func lsStatementOf(r notarize.Record) lsStatement {
	pr := r.Statement.Predicate
	st := lsStatement{Digest: string(r.Statement.Digest()), Status: strings.ToUpper(string(pr.Status)), KeyID: r.KeyID,
		Kind: string(pr.Kind), Timestamp: pr.Timestamp.UTC(), LogIndex: r.Index}
	if len(r.Statement.Subject) > 0 {
		st.Subject = r.Statement.Subject[0].Name
	}
	return st
}

// revokedCurrent is an asset whose current statement by a revoked key,
// as the ledger's key index has it, comes after the key's revocation.
type revokedCurrent struct {
	digest notarize.Digest
	keyID  string
}

// lsRevokedLookups is how many lookups currentBeforeRevocation runs at
// once; lsMaxRevokedLookups bounds how many it runs for one signer's
// listing (lsOptions.maxRevokedLookups lowers it in tests).
const (
	lsRevokedLookups    = 8
	lsMaxRevokedLookups = 4096
)

// revokedLookupBound is lsMaxRevokedLookups, or the options' lower bound.
func (o *lsOptions) revokedLookupBound() int {
	if o.maxRevokedLookups > 0 {
		return o.maxRevokedLookups
	}
	return lsMaxRevokedLookups
}

// errTooManyAfterRevocation is the error of a listing in which a revoked
// key's ledger-current statement comes after the revocation for more
// assets than ls reads back (a thief's flood).
var errTooManyAfterRevocation = errors.New("too many statements after a key's revocation")

// currentBeforeRevocation returns, for each of after, the key's current
// statement about the asset among its statements before its revocation
// (read with CurrentRevoked: every statement by the key about the digest,
// proven complete), when it has one. The ledger's key index knows only the
// newest statement per asset, which after a theft may be the thief's. It
// reads at most bound assets, lsRevokedLookups at a time: past that it
// fails rather than count what it did not read.
func currentBeforeRevocation(ctx context.Context, c *ledgerclient.Client, after []revokedCurrent, revs notarize.Revocations, bound int) ([]notarize.Record, error) {
	if len(after) > bound {
		return nil, fmt.Errorf("%w: %d assets have a statement by a revoked key after its revocation; ls reads back what came before it for at most %d (inspect --signer reads one asset)", errTooManyAfterRevocation, len(after), bound)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make([]*notarize.Record, len(after))
	var (
		mu    sync.Mutex
		first error // the first failure, which stops the others
	)
	forEachBounded(len(after), lsRevokedLookups, func(i int) {
		if ctx.Err() != nil {
			return
		}
		a := after[i]
		res, err := c.CurrentRevoked(ctx, a.digest, []string{a.keyID}, revs)
		if err != nil {
			mu.Lock()
			if first == nil {
				first = fmt.Errorf("%s before the revocation of key %s: %w", a.digest, a.keyID, err)
			}
			mu.Unlock()
			cancel()
			return
		}
		if r, ok := notarize.Current(res.Records, a.digest, a.keyID); ok {
			out[i] = &r
		}
	})
	if first != nil {
		return nil, first
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var recs []notarize.Record
	for _, r := range out {
		if r != nil {
			recs = append(recs, *r)
		}
	}
	return recs, nil
}

// worse returns the status that decides between two current statements
// about one asset, as a verdict does: untrusted over unsupported over
// trusted ("" is none).
func worse(a, b notarize.Status) notarize.Status {
	rank := func(s notarize.Status) int {
		switch s {
		case notarize.StatusUntrusted:
			return 3
		case notarize.StatusUnsupported:
			return 2
		case notarize.StatusTrusted:
			return 1
		}
		return 0
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// resolveSigners returns the signers to list, each with its key IDs: the
// --signer keys, the signers of --policy, or every key in the store. It
// never contacts the ledger; an empty store is a configuration error.
func (o *lsOptions) resolveSigners() ([]lsSigner, error) {
	if o.policy != "" {
		return policySigners(o.policy)
	}
	ks := o.root.keyStore()
	var keys []Key
	if len(o.signers) == 0 {
		var err error
		if keys, err = ks.List(); err != nil {
			return nil, err
		}
		if len(keys) == 0 {
			return nil, fmt.Errorf("no signers: the key store (%s) has no keys; pass --signer NAME|PATH or --policy FILE, or import a signer's public key", ks.Dir)
		}
	}
	for _, ref := range o.signers {
		k, err := ks.ResolvePublic(ref)
		if err != nil {
			return nil, fmt.Errorf("--signer %s: %w", ref, err)
		}
		keys = append(keys, k)
	}
	revokers, err := revokerKeys(ks, o.revokers)
	if err != nil {
		return nil, err
	}
	var out []lsSigner
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[k.KeyID] {
			continue
		}
		seen[k.KeyID] = true
		out = append(out, lsSigner{Name: k.Name, KeyIDs: []string{k.KeyID}, revokers: revokers})
	}
	return out, nil
}

// policySigners reads a trust policy and the public keys it names (inline
// PEM, or a file path relative to the policy's directory), and returns its
// signers by name, each with its key IDs.
func policySigners(path string) ([]lsSigner, error) {
	b, err := boundedfile.Read(path, notarize.MaxPolicySize)
	if err != nil {
		return nil, fmt.Errorf("--policy: %w", err)
	}
	p, err := notarize.ParsePolicy(b)
	if err != nil {
		return nil, fmt.Errorf("--policy %s: %w", path, err)
	}
	names := make([]string, 0, len(p.Signers))
	for n := range p.Signers {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]lsSigner, 0, len(names))
	for _, n := range names {
		s := lsSigner{Name: n}
		if s.KeyIDs, err = policyKeyIDs(path, n, p.Signers[n].Keys); err != nil {
			return nil, err
		}
		// The signer's revokers, as the proxy applies them: a revocation
		// of its keys by one of them counts here too.
		if s.revokers, err = policyKeyIDs(path, n, p.Signers[n].Revokers); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// policyKeyIDs resolves signer n's key references of the policy at path
// (inline PEM, or a file path relative to the policy's directory) to key
// IDs, each once.
func policyKeyIDs(path, n string, refs []string) ([]string, error) {
	var ids []string
	for _, ref := range refs {
		pemBytes := []byte(ref)
		if !strings.HasPrefix(strings.TrimSpace(ref), "-----BEGIN") {
			kp := ref
			if !filepath.IsAbs(kp) {
				kp = filepath.Join(filepath.Dir(path), kp)
			}
			var err error
			if pemBytes, err = boundedfile.Read(kp, maxPolicyKeyFile); err != nil {
				return nil, fmt.Errorf("--policy %s: signer %q: %w", path, n, err)
			}
		}
		pub, err := notarize.ParsePublicKey(pemBytes)
		if err != nil {
			return nil, fmt.Errorf("--policy %s: signer %q: key %s: %w", path, n, printable(clipRef(ref)), err)
		}
		id, err := notarize.KeyID(pub)
		if err != nil {
			return nil, fmt.Errorf("--policy %s: signer %q: %w", path, n, err)
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func clipRef(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// writeLsTable prints one row per current statement, then per signer "N
// assets signed by NAME: …", and for several signers the team's line.
func writeLsTable(w io.Writer, o lsOutput) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SIGNER\tDIGEST\tSTATUS\tSIGNED AT\tLOG INDEX\tKEY ID\tSUBJECT")
	for _, s := range o.Signers {
		for _, st := range s.Statements {
			subject := printable(st.Subject)
			if subject == "" {
				subject = "-"
			}
			status := st.Status
			if st.KeyRevokedAt != nil {
				status += fmt.Sprintf(" (key revoked at %d: does not count)", *st.KeyRevokedAt)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", printable(s.Name), st.Digest, status,
				st.Timestamp.UTC().Format(timeFormat), st.LogIndex, shortKeyID(st.KeyID), subject)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("\n")
	filter := ""
	if o.Status != "" {
		filter = " (current status " + strings.ToUpper(o.Status) + ")"
	}
	for _, s := range o.Signers {
		fmt.Fprintf(&b, "%s%s\n", countsLine(s.lsCounts, "signed by "+printable(s.Name)), filter)
	}
	if len(o.Signers) > 1 {
		fmt.Fprintf(&b, "%s%s\n", countsLine(o.Team, fmt.Sprintf("signed by the team (%d signers)", len(o.Signers))), filter)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// countsLine is "N assets signed by NAME: T trusted, M revoked (U
// untrusted, S unsupported)".
func countsLine(c lsCounts, who string) string {
	noun := "assets"
	if c.Assets == 1 {
		noun = "asset"
	}
	return fmt.Sprintf("%d %s %s: %d trusted, %d revoked (%d untrusted, %d unsupported)",
		c.Assets, noun, who, c.Trusted, c.Revoked, c.Untrusted, c.Unsupported)
}
