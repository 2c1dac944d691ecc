package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/docker/cli/cli/streams"
	"github.com/spf13/cobra"

	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
)

// stdio is what a command reads and prints through: the docker CLI object
// (command.Cli) in the full CLI, the process's streams in the verify-only
// build (cmd/docker-notarize, tag notarize_verifyonly). Only audit, which
// talks to the docker daemon, takes the whole command.Cli.
type stdio interface {
	In() *streams.In
	Out() *streams.Out
	Err() *streams.Out
}

// Output formats of --output.
const (
	formatText = "text"
	formatJSON = "json"
)

// schemaVersion is the version of the JSON contract of --output json: every
// command prints one object whose first member is "schemaVersion"
// (docs/schema/docker-notarize.schema.json). It changes only when a member
// changes meaning or goes away; new members may appear within a version.
const schemaVersion = 1

// statusError is the status of a result that could not be reached (verify's
// ERROR, exit 4; an audit subject that could not be judged).
const statusError = "ERROR"

// outputStatus is how output spells a statement's status: upper case, as the
// verdicts (TRUSTED, UNTRUSTED, UNSUPPORTED). The ledger's statements keep
// their own lower-case predicate values; only output is spelled one way.
func outputStatus(s notarize.Status) string { return strings.ToUpper(string(s)) }

// timeFormat is how text output prints signed timestamps (UTC, seconds).
const timeFormat = "2006-01-02T15:04:05Z"

func validateFormat(f string) error {
	if f != formatText && f != formatJSON {
		return fmt.Errorf("--output %q: want text or json", f)
	}
	return nil
}

// verifyOutput is the result of verify. JSON field names are part of the CLI's
// contract.
type verifyOutput struct {
	SchemaVersion int `json:"schemaVersion"`
	// Status is TRUSTED, UNTRUSTED, UNKNOWN, UNSUPPORTED, or ERROR.
	Status string `json:"status"`
	// ExitCode is the process's exit code for this result.
	ExitCode int `json:"exitCode"`
	// Digest is the subject digest ("" if resolution failed).
	Digest string `json:"digest"`
	// Signer, KeyID, Timestamp and LogIndex describe the deciding statement.
	Signer    string     `json:"signer,omitempty"`
	KeyID     string     `json:"keyId,omitempty"`
	Timestamp *time.Time `json:"timestamp,omitempty"`
	LogIndex  *uint64    `json:"logIndex,omitempty"`
	// CheckpointSize is the size of the verified checkpoint the answer is based on.
	CheckpointSize *uint64 `json:"checkpointSize,omitempty"`
	// AnchoredAt is set when the answer was proven complete up to a recent
	// map root rather than up to the checkpoint (--max-index-lag,
	// ledgerclient.Completeness): statements indexed after it are as the
	// ledger gave them.
	AnchoredAt *time.Time `json:"anchoredAt,omitempty"`
	// Reason explains the verdict or the failure in one line.
	Reason string `json:"reason"`
	// Error is set, with status ERROR, when no verdict was reached.
	Error string `json:"error,omitempty"`
	// RetryAfter is, with Error, the seconds the ledger asked to wait
	// before trying again (retryAfterSeconds).
	RetryAfter int `json:"retryAfter,omitempty"`
	// Revoked lists the accepted keys found revoked (keyrevoke.go).
	Revoked []revokedKeyOutput `json:"revoked,omitempty"`
}

// signResult is the result of sign, untrust and unsupport: the statements
// recorded, in order (an index first, then with --recursive each manifest
// it lists). When a later one failed, the ones recorded before it are
// listed with the error.
type signResult struct {
	SchemaVersion int          `json:"schemaVersion"`
	Statements    []signOutput `json:"statements"`
	// Indexed is, for untrust and unsupport with --index-wait, whether a
	// map root of the ledger's verifiable index covers the statements
	// (plugin/indexed.go).
	Indexed  *bool  `json:"indexed,omitempty"`
	Error    string `json:"error,omitempty"`
	ExitCode int    `json:"exitCode,omitempty"`
	// RetryAfter is, with Error, the seconds the ledger asked to wait
	// before trying again (retryAfterSeconds).
	RetryAfter int `json:"retryAfter,omitempty"`
}

// signOutput is one statement recorded by sign, untrust or unsupport (or
// audit --sign).
type signOutput struct {
	Subject string `json:"subject"`
	Digest  string `json:"digest"`
	// Status is TRUSTED, UNTRUSTED or UNSUPPORTED.
	Status         string `json:"status"`
	LogIndex       uint64 `json:"logIndex"`
	CheckpointSize uint64 `json:"checkpointSize"`
	KeyID          string `json:"keyId"`
	// Signer is the signing key's name; Timestamp the statement's signed
	// timestamp (later than this clock when it had to supersede a statement
	// dated ahead of it).
	Signer    string    `json:"signer"`
	Timestamp time.Time `json:"timestamp"`
	Duplicate bool      `json:"duplicate"`
}

// inspectOutput is the history of verified statements about a digest.
type inspectOutput struct {
	SchemaVersion  int               `json:"schemaVersion"`
	Digest         string            `json:"digest"`
	CheckpointSize uint64            `json:"checkpointSize"`
	Statements     []statementOutput `json:"statements"`
}

// keyListOutput is key list's result: the key store's public keys.
type keyListOutput struct {
	SchemaVersion int         `json:"schemaVersion"`
	Keys          []keyOutput `json:"keys"`
}

// keyOutput is one key of the key store.
type keyOutput struct {
	Name  string `json:"name"`
	KeyID string `json:"keyId"`
	// Path is the public key file.
	Path string `json:"path"`
	// Identity is the signer identity the store records for the key
	// (KeyStore.Identity), which sign puts in its statements.
	Identity identityOutput `json:"identity"`
}

// errorOutput is what a command prints in JSON mode when it fails before it
// has a result of its own: the message and the process's exit code.
type errorOutput struct {
	SchemaVersion int    `json:"schemaVersion"`
	Error         string `json:"error"`
	ExitCode      int    `json:"exitCode"`
	// RetryAfter is the seconds the ledger asked to wait before trying
	// again (retryAfterSeconds).
	RetryAfter int `json:"retryAfter,omitempty"`
}

// retryAfterSeconds is how long the ledger asked to wait before trying
// again, in whole seconds rounded up, when err carries its Retry-After (a
// 429 rate limit or a 503 busy answer: ledgerclient.APIError.RetryAfter),
// and 0 otherwise: the "retryAfter" of the JSON outputs that carry an
// error. A refused read was retried a few times first (ledgerclient/retry.go);
// a submission never is.
func retryAfterSeconds(err error) int {
	ae, ok := errors.AsType[*ledgerclient.APIError](err)
	if !ok || ae.RetryAfter <= 0 {
		return 0
	}
	return int((ae.RetryAfter + time.Second - 1) / time.Second)
}

// statementOutput is one verified statement in inspect's history.
type statementOutput struct {
	LogIndex  uint64    `json:"logIndex"`
	Timestamp time.Time `json:"timestamp"`
	// Status is TRUSTED, UNTRUSTED or UNSUPPORTED.
	Status string `json:"status"`
	// Signer is the display name inside the statement: not authenticated
	// beyond the key.
	Signer string `json:"signer"`
	KeyID  string `json:"keyId"`
	// Email is the email inside the statement: like Signer, the signer's
	// claim.
	Email string `json:"email,omitempty"`
	// LocalKey is the key's name in the local key store, if it is there.
	LocalKey string `json:"localKey,omitempty"`
	// KeyRevokedAt is the log index of the key's revocation when this
	// statement was recorded after it: it does not count (keyrevoke.go).
	KeyRevokedAt *uint64 `json:"keyRevokedAt,omitempty"`
	// LocalIdentity is who the local key store says the key belongs to
	// (key generate/import --display-name, --email; by default the key
	// name): your own record, shown over the statement's claim.
	LocalIdentity *identityOutput `json:"localIdentity,omitempty"`
	// Enrolled is the identity the ledger enrols the key with (its
	// --signers), as the ledger says: it checked the statement's claim
	// against it when the statement was submitted.
	Enrolled *identityOutput `json:"enrolled,omitempty"`

	Subject    string            `json:"subject,omitempty"`
	Kind       string            `json:"kind,omitempty"`
	MediaType  string            `json:"mediaType,omitempty"`
	Size       int64             `json:"size,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// subjectName is a statement's informational subject name.
func subjectName(st *notarize.Statement) string {
	if len(st.Subject) == 0 {
		return ""
	}
	return st.Subject[0].Name
}

// writeJSON writes v as indented JSON followed by a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeVerifyText prints the verdict on the first line, then the reason and,
// when a statement decided, who said it, when, and where it is in the log.
func writeVerifyText(w io.Writer, o verifyOutput) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", o.Status, o.Digest)
	fmt.Fprintf(&b, "  reason:     %s\n", printable(o.Reason))
	if o.KeyID != "" {
		fmt.Fprintf(&b, "  signer:     %s (key %s)\n", printable(o.Signer), o.KeyID)
	}
	if o.Timestamp != nil {
		fmt.Fprintf(&b, "  signed at:  %s\n", o.Timestamp.UTC().Format(timeFormat))
	}
	if o.LogIndex != nil {
		fmt.Fprintf(&b, "  log index:  %d\n", *o.LogIndex)
	}
	if o.CheckpointSize != nil {
		fmt.Fprintf(&b, "  checkpoint: size %d\n", *o.CheckpointSize)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeSignText prints one line per recorded statement.
func writeSignText(w io.Writer, outs []signOutput) error {
	var b strings.Builder
	for _, o := range outs {
		note := ""
		if o.Duplicate {
			note = ", already recorded"
		}
		fmt.Fprintf(&b, "%s %s %s: log index %d, checkpoint size %d%s\n", o.Status, o.Digest, printable(o.Subject), o.LogIndex, o.CheckpointSize, note)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeInspectText prints a header line and a table of statements.
func writeInspectText(w io.Writer, o inspectOutput) error {
	if len(o.Statements) == 0 {
		_, err := fmt.Fprintf(w, "%s: no statements (checkpoint size %d)\n", o.Digest, o.CheckpointSize)
		return err
	}
	if _, err := fmt.Fprintf(w, "%s: %d statement(s) (checkpoint size %d)\n", o.Digest, len(o.Statements), o.CheckpointSize); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tSIGNED AT\tSTATUS\tSIGNER\tKEY ID\tATTRIBUTES")
	for _, s := range o.Statements {
		writeStatementRow(tw, s)
	}
	return tw.Flush()
}

// writeKeysJSON prints the key store as a keyListOutput.
func writeKeysJSON(w io.Writer, keys []Key, idents map[string]notarize.Identity) error {
	out := keyListOutput{SchemaVersion: schemaVersion, Keys: make([]keyOutput, 0, len(keys))}
	for _, k := range keys {
		id := idents[k.Name]
		out.Keys = append(out.Keys, keyOutput{Name: k.Name, KeyID: k.KeyID, Path: k.Path, Identity: identityOutput{Name: id.Name, Email: id.Email}})
	}
	return writeJSON(w, out)
}

// writeKeysText prints the key store as a table.
func writeKeysText(w io.Writer, keys []Key, idents map[string]notarize.Identity) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tIDENTITY\tKEY ID\tPATH")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.Name, formatIdentity(idents[k.Name]), k.KeyID, k.Path)
	}
	return tw.Flush()
}

// shortKeyID abbreviates a key ID to 16 hex characters for tables.
func shortKeyID(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}

// formatAttrs prints attributes as sorted k=v pairs, "-" for none.
func formatAttrs(attrs map[string]string) string {
	if len(attrs) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = printable(k) + "=" + printable(attrs[k])
	}
	return strings.Join(parts, ",")
}

// printable replaces control characters (terminal escapes included) and
// invisible formatting characters (bidirectional overrides, zero-width
// characters, line separators) in text that came from other signers'
// statements, so output cannot be spoofed or visually reordered.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unsafeRune(r) {
			return '?'
		}
		return r
	}, s)
}

// printableLines is printable but keeps newlines and tabs.
func printableLines(s string) string {
	return strings.Map(func(r rune) rune {
		if r != '\n' && r != '\t' && unsafeRune(r) {
			return '?'
		}
		return r
	}, s)
}

// unsafeRune reports whether r may change how a terminal shows other text.
func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || r == utf8.RuneError || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp)
}

// reportedError is an error whose command already printed it in JSON mode
// (within its own result, as verify's status ERROR): jsonErrors prints
// nothing more.
type reportedError struct{ error }

func (e reportedError) Unwrap() error { return e.error }

// reported marks err as printed on stdout already.
func reported(err error) error {
	if err == nil {
		return nil
	}
	return reportedError{err}
}

// writeJSONError prints err in JSON mode as an errorOutput, unless it is a
// verdict's silent exit (printed already) or reported.
func writeJSONError(w io.Writer, err error) {
	if err == nil || errors.As(err, new(reportedError)) {
		return
	}
	if st, ok := errors.AsType[codedError](err); ok && st.Cause == nil && st.Status == "" {
		return
	}
	code, msg := Exit(err)
	_ = writeJSON(w, errorOutput{SchemaVersion: schemaVersion, Error: msg, ExitCode: code, RetryAfter: retryAfterSeconds(err)})
}

// jsonErrors makes cmd, a command with an --output flag bound to format,
// print every error in JSON mode as a JSON object on stdout besides the
// message on stderr and the exit code: errors of its arguments and flag
// values as well as of its run. The arguments are checked in its RunE, so
// that the output format is known by then.
func jsonErrors(cmd *cobra.Command, dockerCli stdio, format *string) {
	args, run := cmd.Args, cmd.RunE
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(c *cobra.Command, a []string) error {
		var err error
		if args != nil {
			err = args(c, a)
		}
		if err == nil {
			err = run(c, a)
		}
		if err != nil && *format == formatJSON {
			writeJSONError(dockerCli.Out(), err)
		}
		return err
	}
	cmd.SetFlagErrorFunc(func(c *cobra.Command, ferr error) error {
		err := flagError(c, ferr)
		if *format == formatJSON {
			writeJSONError(dockerCli.Out(), err)
		}
		return err
	})
}
