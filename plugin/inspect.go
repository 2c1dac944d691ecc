package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/spf13/cobra"
)

type inspectOptions struct {
	root     *rootOptions
	image    string
	signers  []string
	revokers []string
	all      bool
	insecure []string
	format   string
}

func newInspectCmd(dockerCli stdio, root *rootOptions) *cobra.Command {
	opts := inspectOptions{root: root}
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] IMAGE",
		Short: "Show the verified statements the ledger holds about an image (or file)",
		Long: fmt.Sprintf(`Show the statements the ledger holds about an image (or file), in log order:
those of the keys in the local key store, or of the --signer keys; with --all,
those of every signer. Each one's inclusion proof and signature are verified
first. The signer's name and email in a statement are its claim; only the
key ID is authenticated. A key in your key store is shown by the identity
the store records for it (key generate/import --display-name, --email; by
default its name), with the statement's claim after it when they differ.

On an open ledger anyone can write statements about any digest. Without
--all only the chosen keys' statements are asked for, so nobody else's can
change the answer or its cost. --all reads every signer's statements page by
page (%d a page, at most %d pages) and prints each page as it is verified;
should a page fail to verify, the pages before it stay printed and the
command fails.`, ledgerclient.PageLimit, ledgerclient.MaxLookupPages),
		Example: `  docker notarize inspect registry.example.com/app:1.0
  docker notarize inspect --signer release -o json registry.example.com/app@sha256:…
  docker notarize inspect --all file:dist/app.tar.gz`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.image = args[0]
			return runInspect(cmd.Context(), dockerCli, opts)
		},
	}
	flags := cmd.Flags()
	flags.StringArrayVar(&opts.signers, "signer", nil, "Show this signer's statements: a key name in the key store or a path to a PEM public key (repeatable; default: every key in the store)")
	flags.BoolVar(&opts.all, "all", false, "Show every signer's statements, page by page")
	flags.StringArrayVar(&opts.revokers, "revoker", nil, "A key whose revocations of the shown keys count besides each key's own, as verify's --revoker (repeatable)")
	_ = cmd.RegisterFlagCompletionFunc("revoker", keyNameCompletion(root, cobra.ShellCompDirectiveDefault))
	addRegistryFlags(cmd, &opts.insecure)
	addOutputFlag(cmd, &opts.format)
	ledgerCommand(cmd, dockerCli, root, &opts.format)
	return cmd
}

func runInspect(ctx context.Context, dockerCli stdio, opts inspectOptions) error {
	if err := validateFormat(opts.format); err != nil {
		return usageError(err)
	}
	if opts.all && len(opts.signers) > 0 {
		return usageError(errors.New("--all shows every signer's statements: use it without --signer"))
	}
	if opts.all && len(opts.revokers) > 0 {
		return usageError(errors.New("--revoker marks the shown keys' revoked statements: use it without --all"))
	}
	resolver, err := opts.root.resolver(opts.insecure)
	if err != nil {
		return usageError(err)
	}
	ks := opts.root.keyStore()
	local, err := ks.List()
	if err != nil {
		return err
	}
	localNames, err := localKeyIdentities(ks, local)
	if err != nil {
		return err
	}
	revokers, err := revokerKeys(ks, opts.revokers)
	if err != nil {
		return err
	}
	var ids []string
	if !opts.all {
		keys, err := acceptedSigners(ks, opts.signers)
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			return usageError(fmt.Errorf("no keys to inspect: the key store (%s) has no keys; pass --signer NAME|PATH, or --all for every signer's statements", ks.Dir))
		}
		for id := range keys {
			ids = append(ids, id)
		}
		sort.Strings(ids)
	}
	cfg, err := opts.root.clientConfig(dockerCli.Err())
	if err != nil {
		return err
	}
	subject, ok := DigestOnly(opts.image)
	if !ok {
		if subject, err = resolver.Resolve(ctx, opts.image, false); err != nil {
			return err
		}
	}
	client, err := ledgerclient.New(ctx, cfg)
	if err != nil {
		return err
	}
	enrolled := &enrolments{client: client, stderr: dockerCli.Err(), known: map[string]*identityOutput{}}
	if opts.all {
		return inspectAll(ctx, dockerCli.Out(), client, subject.Digest, opts.format, localNames, enrolled)
	}
	res, err := client.Lookup(ctx, subject.Digest, ids...)
	if err != nil {
		return err
	}
	out := inspectOutput{SchemaVersion: schemaVersion, Digest: string(subject.Digest), CheckpointSize: res.Checkpoint.Size, Statements: []statementOutput{}}
	for _, r := range res.Records {
		out.Statements = append(out.Statements, statementOf(r, localNames))
	}
	enrolled.fill(ctx, out.Statements)
	sort.Slice(out.Statements, func(i, j int) bool { return out.Statements[i].LogIndex < out.Statements[j].LogIndex })
	if err := markRevoked(ctx, client, ids, revokers, out.Statements); err != nil { // keyrevoke.go
		return err
	}
	if opts.format == formatJSON {
		return writeJSON(dockerCli.Out(), out)
	}
	return writeInspectText(dockerCli.Out(), out)
}

// localKey is a key of the local key store as inspect shows it: its name
// and the identity the store records for it.
type localKey struct {
	name     string
	identity notarize.Identity
}

// localKeyIdentities maps the key IDs of the store's keys to their names
// and identities (the first name, for a key stored twice).
func localKeyIdentities(ks KeyStore, keys []Key) (map[string]localKey, error) {
	out := map[string]localKey{}
	for _, k := range keys {
		if _, dup := out[k.KeyID]; dup {
			continue
		}
		id, err := ks.Identity(k.Name)
		if err != nil {
			return nil, err
		}
		out[k.KeyID] = localKey{name: k.Name, identity: id}
	}
	return out, nil
}

// identityOutput is a signer identity in JSON output.
type identityOutput struct {
	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
}

// signerColumn is the SIGNER column of a statement: the identity the local
// key store records for the key, authenticated by your having stored it;
// else the one the ledger enrols it with, marked "(enrolled)"; either way
// followed by the statement's claim in parentheses when it says something
// else. For a key known to neither, the claim marked as such; "-" when
// there is nothing.
func signerColumn(s statementOutput) string {
	claim := notarize.Identity{Name: s.Signer, Email: s.Email}
	var known *notarize.Identity
	mark := ""
	switch {
	case s.LocalIdentity != nil:
		known = &notarize.Identity{Name: s.LocalIdentity.Name, Email: s.LocalIdentity.Email}
	case s.LocalKey != "":
		known = &notarize.Identity{Name: s.LocalKey}
	case s.Enrolled != nil:
		known, mark = &notarize.Identity{Name: s.Enrolled.Name, Email: s.Enrolled.Email}, " (enrolled)"
	}
	switch {
	case known != nil && (claim == notarize.Identity{} || claim == *known):
		return formatIdentity(*known) + mark
	case known != nil:
		return formatIdentity(*known) + mark + " (claims: " + formatIdentity(claim) + ")"
	case claim != notarize.Identity{}:
		return formatIdentity(claim) + " (claimed)"
	}
	return "-"
}

// maxEnrolmentLookups bounds the keys whose enrolled identity one inspect
// asks the ledger for (one request each); statements by further keys are
// shown without it.
const maxEnrolmentLookups = 64

// enrolments asks the ledger for the enrolled identities of the keys of
// inspect's statements, once per key. They are display information, the
// ledger's word (not proven by the log): a failure is a warning on stderr,
// and the statements are shown without them.
type enrolments struct {
	client *ledgerclient.Client
	stderr io.Writer
	known  map[string]*identityOutput // by key ID; nil: none enrolled
	failed bool
}

// fill sets the Enrolled identity of each of outs.
func (e *enrolments) fill(ctx context.Context, outs []statementOutput) {
	for i := range outs {
		id := outs[i].KeyID
		got, asked := e.known[id]
		if !asked && !e.failed && len(e.known) < maxEnrolmentLookups {
			ident, ok, err := e.client.EnrolledIdentity(ctx, id)
			if err != nil {
				fmt.Fprintf(e.stderr, "warning: the ledger's enrolled signer identities are not shown: %v\n", err)
				e.failed = true
				continue
			}
			if ok {
				got = &identityOutput{Name: ident.Name, Email: ident.Email}
			}
			e.known[id] = got
		}
		outs[i].Enrolled = got
	}
}

// statementOf is the output of one verified record; localNames maps the key
// IDs of the local key store to their names and identities.
func statementOf(r notarize.Record, localNames map[string]localKey) statementOutput {
	p := r.Statement.Predicate
	name := ""
	if len(r.Statement.Subject) > 0 {
		name = r.Statement.Subject[0].Name
	}
	var localID *identityOutput
	local, isLocal := localNames[r.KeyID]
	if isLocal {
		localID = &identityOutput{Name: local.identity.Name, Email: local.identity.Email}
	}
	return statementOutput{
		LogIndex:      r.Index,
		Timestamp:     p.Timestamp.UTC(),
		Status:        outputStatus(p.Status),
		Signer:        p.Name,
		Email:         p.Email,
		KeyID:         r.KeyID,
		LocalKey:      local.name,
		LocalIdentity: localID,
		Subject:       name,
		Kind:          p.Kind,
		MediaType:     p.MediaType,
		Size:          p.Size,
		Attributes:    p.Attributes,
	}
}

// inspectAll prints every signer's statements about d page by page, each
// page once verified, so that memory does not grow with the history. JSON
// has inspectOutput's members, checkpointSize (the last page's) last. A
// failure after some pages leaves them printed and is returned; in JSON the
// object is closed with the error and exit code instead of checkpointSize.
func inspectAll(ctx context.Context, w io.Writer, client *ledgerclient.Client, d notarize.Digest, format string, localNames map[string]localKey, enrolled *enrolments) error {
	var p inspectPrinter = &inspectTextPrinter{w: w, digest: d}
	if format == formatJSON {
		p = &inspectJSONPrinter{w: w, digest: d}
	}
	if err := p.begin(); err != nil {
		return err
	}
	var size uint64
	for page, err := range client.LookupPages(ctx, d) {
		if err != nil {
			return p.fail(err)
		}
		size = max(size, page.Checkpoint.Size)
		outs := make([]statementOutput, 0, len(page.Records))
		for _, r := range page.Records {
			outs = append(outs, statementOf(r, localNames))
		}
		enrolled.fill(ctx, outs)
		if err := p.page(outs); err != nil {
			return err
		}
	}
	return p.end(size)
}

// inspectPrinter writes inspect --all output as the pages come.
type inspectPrinter interface {
	begin() error
	page([]statementOutput) error
	end(checkpointSize uint64) error
	// fail ends the output after err and returns the error to exit with.
	fail(err error) error
}

// inspectTextPrinter writes a header, one table per page and a summary.
type inspectTextPrinter struct {
	w      io.Writer
	digest notarize.Digest
	n      int
}

func (p *inspectTextPrinter) begin() error {
	_, err := fmt.Fprintf(p.w, "%s: statements by every signer, in log order\n", p.digest)
	return err
}

func (p *inspectTextPrinter) page(outs []statementOutput) error {
	if len(outs) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	if p.n == 0 {
		fmt.Fprintln(tw, "INDEX\tSIGNED AT\tSTATUS\tSIGNER\tKEY ID\tATTRIBUTES")
	}
	for _, s := range outs {
		writeStatementRow(tw, s)
	}
	p.n += len(outs)
	return tw.Flush()
}

func (p *inspectTextPrinter) fail(err error) error { return err }

func (p *inspectTextPrinter) end(size uint64) error {
	if p.n == 0 {
		_, err := fmt.Fprintf(p.w, "no statements (checkpoint size %d)\n", size)
		return err
	}
	_, err := fmt.Fprintf(p.w, "%d statement(s) (checkpoint size %d)\n", p.n, size)
	return err
}

// writeStatementRow writes one statement as a row of inspect's table.
func writeStatementRow(w io.Writer, s statementOutput) {
	status := s.Status
	if s.KeyRevokedAt != nil { // keyrevoke.go
		status += fmt.Sprintf(" (key revoked at %d: does not count)", *s.KeyRevokedAt)
	}
	fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", s.LogIndex, s.Timestamp.UTC().Format(timeFormat), status, signerColumn(s), shortKeyID(s.KeyID), formatAttrs(s.Attributes))
}

// inspectJSONPrinter streams an inspectOutput object, indented as writeJSON.
type inspectJSONPrinter struct {
	w      io.Writer
	digest notarize.Digest
	n      int
}

func (p *inspectJSONPrinter) begin() error {
	d, err := json.Marshal(p.digest.String())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(p.w, "{\n  \"schemaVersion\": %d,\n  \"digest\": %s,\n  \"statements\": [", schemaVersion, d)
	return err
}

func (p *inspectJSONPrinter) page(outs []statementOutput) error {
	var b strings.Builder
	for _, s := range outs {
		var one strings.Builder
		enc := json.NewEncoder(&one)
		enc.SetEscapeHTML(false)
		enc.SetIndent("    ", "  ")
		if err := enc.Encode(s); err != nil {
			return err
		}
		if p.n > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n    ")
		b.WriteString(strings.TrimSuffix(one.String(), "\n"))
		p.n++
	}
	_, err := io.WriteString(p.w, b.String())
	return err
}

func (p *inspectJSONPrinter) end(size uint64) error {
	_, err := fmt.Fprintf(p.w, "%s,\n  \"checkpointSize\": %d\n}\n", p.closing(), size)
	return err
}

// fail closes the object with the error and the exit code.
func (p *inspectJSONPrinter) fail(err error) error {
	code, msg := Exit(err)
	m, merr := json.Marshal(msg)
	if merr != nil {
		return err
	}
	_, _ = fmt.Fprintf(p.w, "%s,\n  \"error\": %s,\n  \"exitCode\": %d\n}\n", p.closing(), m, code)
	return reported(err)
}

func (p *inspectJSONPrinter) closing() string {
	if p.n == 0 {
		return "]"
	}
	return "\n  ]"
}
