//go:build !notarize_verifyonly

package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
)

// AttrRotatedFrom is the attribute key rotate adds to every statement it
// re-states: "KEYID@INDEX", the old key's ID and the log index of the old
// key's statement that was carried over.
const AttrRotatedFrom = "rotated-from"

// rotateJobs bounds the digests rotate works on at once.
const rotateJobs = 8

// rotateMaxRetries bounds how often one request refused with HTTP 429 (the
// ledger's rate limits) is tried again before the digest counts as failed.
const rotateMaxRetries = 10

// rotateBackoff is the first wait after a 429; it doubles on every retry,
// up to rotateMaxBackoff.
const rotateBackoff = time.Second

// rotateMaxBackoff caps the wait after a 429.
const rotateMaxBackoff = 8 * time.Second

// rotateMaxRetryAfter caps how long rotate honours a ledger's Retry-After
// between two tries of one request.
const rotateMaxRetryAfter = time.Minute

// Actions of one digest in rotate's output.
const (
	rotateRestated     = "RESTATED"
	rotateCurrent      = "CURRENT"
	rotateKept         = "KEPT"
	rotateWouldRestate = "WOULD_RESTATE"
	rotateFailed       = "FAILED"
	// rotateRevoked: every statement of OLD about the digest was recorded
	// after OLD's revocation (key revoke), a thief's: nothing is re-stated.
	rotateRevoked = "REVOKED"
)

type keyRotateOptions struct {
	root     *rootOptions
	old      string
	new      string
	dryRun   bool
	jobs     int
	format   string
	revokers []string
	// indexWait is --index-wait (indexed.go).
	indexWait time.Duration
}

func newKeyRotateCmd(dockerCli stdio, root *rootOptions) *cobra.Command {
	opts := keyRotateOptions{root: root}
	cmd := &cobra.Command{
		Use:   "rotate [OPTIONS] OLD NEW",
		Short: "Re-state with key NEW every current statement of key OLD, so a policy can switch from OLD to NEW",
		Long: `Re-state with NEW every digest for which OLD's current statement is trusted,
untrusted or unsupported: afterwards a trust policy can name NEW instead of
OLD and every verdict stays the same.

OLD is a key name in the key store or a path to a PEM public key (only its
public key is needed). NEW is a signing key of the key store (a file, KMS or
HSM key) or a path to an encrypted private key; an imported public key cannot
sign. OLD and NEW must differ.

The digests come from the ledger's lookup by key, every page verified (the
checkpoint, each entry's inclusion proof and signature, that it is by OLD,
the digest order). For each digest, OLD's and NEW's current statements are
then proven by a current lookup (the ledger's verifiable map): the status
carried over is OLD's proven current one, so a ledger or a front that lists
an older statement (a "trusted" since revoked) cannot make NEW trust it.
NEW signs the same status, subject name, media type, size, kind and
attributes, plus the attribute "rotated-from: OLDKEYID@INDEX" (the log index
of OLD's statement), dated now (or just after NEW's current statement if that
one is dated ahead of this clock).

A digest NEW already states the same way is skipped ("already current"), so
rotate is idempotent: after an interruption (Ctrl-C: what was submitted stays
recorded), run it again and it resumes. A digest where NEW's own current
statement says otherwise and is dated after OLD's is KEPT, not overridden:
NEW decided later. Up to --jobs digests are worked on at once; a request the
ledger refuses for its rate limits (HTTP 429) is tried again after a growing
wait.

If OLD was revoked (docker notarize key revoke), only its statements
recorded before the revocation are carried over: a digest that OLD's thief
signed after it is REVOKED, never re-stated by NEW. A revocation counts here
when OLD itself, a --revoker key or any key of the key store signed it: a
revocation can only make rotate carry over less. A revoked NEW is refused.

Not proven: that the ledger listed every digest OLD has statements about. A
ledger or a front that leaves a digest out of the key lookup cannot be caught
here (the verifiable map proves one digest's statements, not a key's whole
list); check with "docker notarize ls --signer OLD" against another copy of
the log, or verify critical digests with the policy naming NEW.

--dry-run looks everything up and lists what would be signed, signing nothing.

Exit codes: 0 every digest re-stated, already current or kept; 1 some digest
failed (the others were done: run it again); 125 a bad argument or flag, the
same key twice, or a NEW that cannot sign (found before any network call);
130 interrupted.`,
		Example: `  docker notarize key rotate release-2025 release-2026
  docker notarize key rotate --dry-run ./old-release.pub release-2026
  docker notarize key rotate -o json release-2025 release-2026`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.old, opts.new = args[0], args[1]
			return runKeyRotate(cmd.Context(), dockerCli, opts)
		},
	}
	flags := cmd.Flags()
	flags.BoolVar(&opts.dryRun, "dry-run", false, "List what would be re-stated, sign nothing")
	flags.IntVar(&opts.jobs, "jobs", rotateJobs, "Digests worked on at once (1 to 64)")
	addIndexWaitFlag(cmd, &opts.indexWait)
	flags.StringArrayVar(&opts.revokers, "revoker", nil, "A key whose revocation of OLD counts, besides OLD itself and every key in the key store: a key name or a path to a PEM public key (repeatable)")
	_ = cmd.RegisterFlagCompletionFunc("revoker", keyNameCompletion(root, cobra.ShellCompDirectiveDefault))
	addOutputFlag(cmd, &opts.format)
	ledgerCommand(cmd, dockerCli, root, &opts.format)
	names := keyNameCompletion(root, cobra.ShellCompDirectiveDefault)
	cmd.ValidArgsFunction = func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 1 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return names(c, args, toComplete)
	}
	return cmd
}

// rotateOutput is key rotate's result. JSON field names are part of the
// CLI's contract.
type rotateOutput struct {
	SchemaVersion int    `json:"schemaVersion"`
	OldKeyID      string `json:"oldKeyId"`
	NewKeyID      string `json:"newKeyId"`
	// Old and New are the keys' names.
	Old    string `json:"old"`
	New    string `json:"new"`
	DryRun bool   `json:"dryRun"`
	// Complete is false: the ledger does not prove that the key lookup
	// listed every digest of OLD.
	Complete bool `json:"complete"`
	// Restated, Current, Kept and Failed count the digests by action (with
	// --dry-run, Restated counts the digests that would be).
	Restated int            `json:"restated"`
	Current  int            `json:"current"`
	Kept     int            `json:"kept"`
	Failed   int            `json:"failed"`
	Digests  []rotateDigest `json:"digests"`
	// Indexed is, with --index-wait and re-stated revocations, whether
	// the ledger's index covers them for every default verify
	// (indexed.go).
	Indexed  *bool  `json:"indexed,omitempty"`
	Error    string `json:"error,omitempty"`
	ExitCode int    `json:"exitCode,omitempty"`
	// RetryAfter is, with Error, the seconds the ledger asked to wait
	// before trying again (retryAfterSeconds).
	RetryAfter int `json:"retryAfter,omitempty"`
}

// rotateDigest is what rotate did about one digest.
type rotateDigest struct {
	Digest  string `json:"digest"`
	Subject string `json:"subject,omitempty"`
	// Status is OLD's current status (TRUSTED, UNTRUSTED or UNSUPPORTED).
	Status string `json:"status"`
	// Action is RESTATED, CURRENT, KEPT, WOULD_RESTATE or FAILED.
	Action string `json:"action"`
	// OldLogIndex is the log index of OLD's current statement.
	OldLogIndex uint64 `json:"oldLogIndex"`
	// LogIndex is NEW's statement: the one recorded (RESTATED) or the
	// current one (CURRENT, KEPT).
	LogIndex *uint64 `json:"logIndex,omitempty"`
	Error    string  `json:"error,omitempty"`
}

// rotation is one run of key rotate.
type rotation struct {
	client *ledgerclient.Client
	old    Key
	newID  string
	signer *signingKey
	dryRun bool
	stderr io.Writer
	now    func() time.Time
	jobs   int
	// indexWait and indexHold: the wait for the re-stated revocations
	// (indexed.go).
	indexWait, indexHold time.Duration
	// revs holds OLD's revocation, if any (keyrevoke.go), by OLD or one of
	// revokers, as proven in a log of revSize entries; a digest's current
	// lookup answered at a larger checkpoint asks for them again
	// (revocationsCovering). revMu guards both.
	revMu    sync.Mutex
	revs     notarize.Revocations
	revSize  uint64
	revokers []string
}

// maxRevocationRefresh bounds how often one digest asks for the
// revocations again while the ledger grows under it.
const maxRevocationRefresh = 3

// revocationsCovering returns revocations of OLD and NEW proven in a log
// of at least size entries, asking the ledger again when the ones held are
// older; a NEW revoked meanwhile is an error.
func (r *rotation) revocationsCovering(ctx context.Context, size uint64) (notarize.Revocations, uint64, error) {
	r.revMu.Lock()
	defer r.revMu.Unlock()
	if r.revSize >= size {
		return r.revs, r.revSize, nil
	}
	revs, revSize, err := r.client.RevocationsAt(ctx, []string{r.old.KeyID, r.newID}, map[string][]string{r.old.KeyID: r.revokers, r.newID: r.revokers})
	if err != nil {
		return nil, 0, err
	}
	if rv, ok := revs[r.newID]; ok {
		return nil, 0, fmt.Errorf("NEW key %s was revoked at log index %d during the rotation: its statements would not count", r.newID, rv.Index)
	}
	if revSize > r.revSize {
		r.revs, r.revSize = revs, revSize
	}
	return r.revs, r.revSize, nil
}

func runKeyRotate(ctx context.Context, dockerCli stdio, opts keyRotateOptions) error {
	if err := validateFormat(opts.format); err != nil {
		return usageError(err)
	}
	if opts.jobs < 1 || opts.jobs > 64 {
		return usageError(fmt.Errorf("--jobs %d: want 1 to 64", opts.jobs))
	}
	if opts.indexWait < 0 {
		return usageError(fmt.Errorf("--index-wait %s: want 0 or a positive duration", opts.indexWait))
	}
	ks := opts.root.keyStore()
	old, err := ks.ResolvePublic(opts.old)
	if err != nil {
		return usageError(fmt.Errorf("OLD %s: %w", opts.old, err))
	}
	src, err := ks.ResolveSigner(opts.new)
	if err != nil {
		return usageError(fmt.Errorf("NEW %s: %w (NEW must be a key that can sign)", opts.new, err))
	}
	cfg, err := opts.root.clientConfig(dockerCli.Err())
	if err != nil {
		return err
	}
	var newID string
	if !isPath(opts.new) {
		k, err := ks.Public(opts.new)
		if err != nil {
			return usageError(fmt.Errorf("NEW %s: %w", opts.new, err))
		}
		newID = k.KeyID
		if newID == old.KeyID {
			return sameKey(opts, old.KeyID)
		}
	}
	revokers, err := rotateRevokers(ks, opts.revokers)
	if err != nil {
		return err
	}
	r := &rotation{old: old, stderr: dockerCli.Err(), now: opts.root.env.now, jobs: opts.jobs, revokers: revokers,
		indexWait: opts.indexWait, indexHold: opts.root.env.indexHold}
	// The key is opened (a password, a KMS or an HSM) even with --dry-run:
	// a rotation that could not sign is refused before any lookup.
	if r.signer, err = loadSigningKey(ctx, dockerCli, opts.root, opts.new); err != nil {
		return err
	}
	switch {
	case newID == "":
		newID = r.signer.keyID // a private key file by path
		if newID == old.KeyID {
			return sameKey(opts, old.KeyID)
		}
	case r.signer.keyID != newID:
		return fmt.Errorf("key rotate: NEW %s opened as key %s, its public key is %s", opts.new, r.signer.keyID, newID)
	}
	r.newID = newID
	r.dryRun = opts.dryRun
	out := &rotateOutput{SchemaVersion: schemaVersion, OldKeyID: old.KeyID, NewKeyID: newID, Old: old.Name, New: src.Name, DryRun: opts.dryRun, Digests: []rotateDigest{}}
	if r.client, err = ledgerclient.New(ctx, cfg); err != nil {
		return err
	}
	tty := opts.root.env.isTerminal != nil && opts.root.env.isTerminal(int(dockerCli.Err().FD()))
	prog := newProgress(dockerCli.Err(), tty)
	err = r.run(ctx, out, prog)
	return rotateDone(dockerCli.Out(), dockerCli.Err(), opts.format, out, err)
}

// sameKey is the usage error of OLD and NEW naming one key.
func sameKey(opts keyRotateOptions, keyID string) error {
	return usageError(fmt.Errorf("OLD %s and NEW %s are the same key (%s): nothing to rotate", opts.old, opts.new, keyID))
}

// run lists OLD's digests (every page verified), then works on each.
func (r *rotation) run(ctx context.Context, out *rotateOutput, prog *progress) error {
	// A revoked OLD carries over only what it said before its revocation;
	// a revoked NEW would re-state into a key whose statements do not count.
	revs, revSize, err := r.client.RevocationsAt(ctx, []string{r.old.KeyID, r.newID}, map[string][]string{r.old.KeyID: r.revokers, r.newID: r.revokers})
	if err != nil {
		return fmt.Errorf("key rotate: %w", err)
	}
	if rv, ok := revs[r.newID]; ok {
		return fmt.Errorf("key rotate: NEW key %s was revoked at log index %d: its statements would not count", r.newID, rv.Index)
	}
	r.revs, r.revSize = revs, revSize
	var records []notarize.Record
	for page, err := range r.client.KeyDigestPages(ctx, r.old.KeyID, "") {
		if err != nil {
			return fmt.Errorf("key rotate: %w", err)
		}
		records = append(records, page.Records...)
	}
	results := make([]rotateDigest, len(records))
	errs := make([]error, len(records))
	prog.start("rotating", len(records))
	forEachBounded(len(records), r.jobs, func(i int) {
		if errs[i] = ctx.Err(); errs[i] != nil {
			return
		}
		results[i], errs[i] = r.one(ctx, records[i])
		prog.add(1)
	})
	prog.finish()
	for i, res := range results {
		if ctx.Err() != nil && (res.Action == "" || errors.Is(errs[i], context.Canceled)) {
			continue // never started, or cut off by the interrupt
		}
		out.Digests = append(out.Digests, res)
		switch res.Action {
		case rotateRestated, rotateWouldRestate:
			out.Restated++
		case rotateCurrent:
			out.Current++
		case rotateKept:
			out.Kept++
		case rotateFailed:
			out.Failed++
		}
	}
	// NEW's re-stated UNTRUSTED and UNSUPPORTED are revocations under a
	// policy that switches to NEW: wait for them as untrust does (red team
	// 10: a front hid them for a default verify right after rotate).
	var last *rotateDigest
	for i, d := range out.Digests {
		if d.Action == rotateRestated && d.Status != outputStatus(notarize.StatusTrusted) && d.LogIndex != nil && (last == nil || *d.LogIndex > *last.LogIndex) {
			last = &out.Digests[i]
		}
	}
	if err := ctx.Err(); err != nil {
		if last != nil && r.indexWait > 0 && r.indexHold > 0 {
			out.Indexed = new(false) // interrupted before the wait
		}
		return fmt.Errorf("key rotate: %w (what was recorded stays; run it again to resume)", err)
	}
	if last != nil {
		if out.Indexed, err = awaitIndexed(ctx, r.stderr, r.client, notarize.Digest(last.Digest), r.newID, *last.LogIndex, r.indexWait, r.indexHold); err != nil {
			return fmt.Errorf("key rotate: %w", err)
		}
	}
	// A re-stated revocation whose outcome stayed unknown may be in the
	// log: return no sooner than untrust would have (lookBound), once for
	// them all.
	var lost []error
	for i, res := range results {
		if res.Action == rotateFailed && res.Status != outputStatus(notarize.StatusTrusted) {
			lost = append(lost, errs[i])
		}
	}
	waitOut(ctx, lookBound(true, r.indexWait, r.indexHold), lost)
	if out.Failed > 0 {
		return fmt.Errorf("key rotate: %w", ErrRotateFailed)
	}
	return nil
}

// ErrRotateFailed is returned (wrapped) when some digest could not be
// re-stated; the others were.
var ErrRotateFailed = errors.New("some digests could not be re-stated (run it again to retry them)")

// one works on the digest of rec, a record the key lookup listed: it proves
// OLD's and NEW's current statements about it and re-states OLD's with NEW
// unless NEW already says the same.
func (r *rotation) one(ctx context.Context, listed notarize.Record) (rotateDigest, error) {
	d := listed.Statement.Digest()
	res := rotateDigest{Digest: string(d), Status: outputStatus(listed.Status()), OldLogIndex: listed.Index, Subject: subjectName(listed.Statement)}
	fail := func(err error) (rotateDigest, error) {
		res.Action, res.Error = rotateFailed, printable(err.Error())
		return res, err
	}
	// The revocations must cover the log the current statements come from:
	// OLD revoked (and its thief signing) while the rotation runs would
	// otherwise carry the thief's statement over to NEW.
	var cur *ledgerclient.LookupResult
	r.revMu.Lock()
	revs, revSize := r.revs, r.revSize
	r.revMu.Unlock()
	for attempt := 0; ; attempt++ {
		err := retry429(ctx, func() error {
			var err error
			cur, err = r.client.CurrentRevoked(ctx, d, []string{r.old.KeyID, r.newID}, revs)
			return err
		})
		if err != nil {
			return fail(err)
		}
		if cur.Checkpoint.Size <= revSize {
			break
		}
		if attempt == maxRevocationRefresh {
			return fail(fmt.Errorf("%w: the revocations of %s were proven in a log of %d entries, its statements about %s in one of %d", ledgerclient.ErrIncomplete, r.old.KeyID, revSize, d, cur.Checkpoint.Size))
		}
		fresh, freshSize, err := r.revocationsCovering(ctx, cur.Checkpoint.Size)
		if err != nil {
			return fail(err)
		}
		if freshSize >= cur.Checkpoint.Size && maps.Equal(fresh, revs) {
			// Nothing was revoked in between: the answer stands.
			revs, revSize = fresh, freshSize
			break
		}
		revs, revSize = fresh, freshSize // decide again under the new revocations
	}
	oldCur, ok := notarize.Current(cur.Records, d, r.old.KeyID)
	if _, revoked := revs[r.old.KeyID]; !ok && revoked {
		res.Action = rotateRevoked
		return res, nil
	}
	if !ok {
		return fail(fmt.Errorf("%w: the key lookup listed entry %d of key %s about %s, the proven current lookup has no statement by it", ledgerclient.ErrIncomplete, listed.Index, r.old.KeyID, d))
	}
	// What is carried over is OLD's proven current statement, whatever the
	// key lookup listed.
	res.Status, res.OldLogIndex, res.Subject = outputStatus(oldCur.Status()), oldCur.Index, subjectName(oldCur.Statement)
	newCur, hasNew := notarize.Current(cur.Records, d, r.newID)
	if hasNew {
		idx := newCur.Index
		if newCur.Status() == oldCur.Status() {
			res.Action, res.LogIndex = rotateCurrent, &idx
			return res, nil
		}
		if newCur.Statement.Predicate.Timestamp.After(oldCur.Statement.Predicate.Timestamp) {
			res.Action, res.LogIndex = rotateKept, &idx
			return res, nil
		}
	}
	if r.dryRun {
		res.Action = rotateWouldRestate
		return res, nil
	}
	at := r.now().UTC()
	if hasNew && !at.After(newCur.Statement.Predicate.Timestamp) {
		at = newCur.Statement.Predicate.Timestamp.UTC().Add(time.Millisecond)
	}
	st, err := restatement(oldCur, r.signer.identity, at)
	if err != nil {
		return fail(err)
	}
	entry, err := notarize.Sign(ctx, r.signer.signer, st)
	if err != nil {
		return fail(fmt.Errorf("sign %s: %w", d, err))
	}
	sub, err := submitStatement(ctx, r.stderr, r.client, st, r.newID, lostReceiptWait, func() (sub *ledgerclient.SubmitResult, err error) {
		err = retry429(ctx, func() error {
			sub, err = r.client.Submit(ctx, entry)
			return err
		})
		return sub, err
	})
	if err != nil {
		return fail(fmt.Errorf("record %s as %s: %w", d, oldCur.Status(), err))
	}
	if sub.Record.KeyID != r.newID || sub.Record.Statement.Digest() != d {
		return fail(fmt.Errorf("record %s: the verified receipt is for another key or digest", d))
	}
	idx := sub.Index
	res.Action, res.LogIndex = rotateRestated, &idx
	return res, nil
}

// restatement is old's statement as NEW states it: the same subject and
// predicate, claiming the signer identity of NEW, dated at, with
// AttrRotatedFrom added.
func restatement(old notarize.Record, signer notarize.Identity, at time.Time) (*notarize.Statement, error) {
	p := old.Statement.Predicate
	attrs := maps.Clone(p.Attributes)
	if attrs == nil {
		attrs = map[string]string{}
	}
	attrs[AttrRotatedFrom] = old.KeyID + "@" + strconv.FormatUint(old.Index, 10)
	if len(attrs) > notarize.MaxAttributes {
		return nil, fmt.Errorf("re-state %s: its statement has %d attributes, no room for %q (at most %d)", old.Statement.Digest(), len(p.Attributes), AttrRotatedFrom, notarize.MaxAttributes)
	}
	p.Attributes = attrs
	p.Name, p.Email = signer.Name, signer.Email // NEW's identity, never OLD's
	p.Timestamp = at
	st := notarize.NewStatement(old.Statement.Digest(), subjectName(old.Statement), p)
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("re-state %s: %w", old.Statement.Digest(), err)
	}
	return st, nil
}

// retry429 calls fn until it does not fail with the ledger's HTTP 429 (a
// rate limit) or 503 UNAVAILABLE (pushback), waiting rotateBackoff,
// doubling up to rotateMaxBackoff, or the ledger's Retry-After when it asks
// for longer (at most rotateMaxRetryAfter), between tries, at most
// rotateMaxRetries times; the interrupt ends the wait. The output reports
// the last Retry-After when the retries run out.
func retry429(ctx context.Context, fn func() error) error {
	wait := rotateBackoff
	for try := 0; ; try++ {
		err := fn()
		if err == nil || try >= rotateMaxRetries || !retryable(err) {
			return err
		}
		pause := wait
		var apiErr *ledgerclient.APIError
		if errors.As(err, &apiErr) && apiErr.RetryAfter > pause {
			pause = min(apiErr.RetryAfter, rotateMaxRetryAfter)
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, rotateMaxBackoff)
	}
}

// retryable reports whether err is the ledger asking to be tried later.
func retryable(err error) bool {
	var apiErr *ledgerclient.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.StatusCode == http.StatusTooManyRequests || apiErr.StatusCode == http.StatusServiceUnavailable && apiErr.Code == api.CodeUnavailable
}

// rotateDone prints out (JSON, or the text lines and summary) and returns
// the exit error: err, or nil.
func rotateDone(stdout, stderr io.Writer, format string, out *rotateOutput, err error) error {
	if format == formatJSON {
		if err != nil {
			out.ExitCode, out.Error = Exit(err)
			out.RetryAfter = retryAfterSeconds(err)
		}
		if werr := writeJSON(stdout, out); werr != nil && err == nil {
			return werr
		}
		return reported(err)
	}
	if werr := writeRotateText(stdout, out); werr != nil && err == nil {
		return werr
	}
	for _, d := range out.Digests {
		if d.Action == rotateFailed {
			fmt.Fprintf(stderr, "could not re-state %s: %s\n", d.Digest, d.Error)
		}
	}
	return err
}

// writeRotateText prints one line per digest and the summary.
func writeRotateText(w io.Writer, o *rotateOutput) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DIGEST\tSTATUS\tACTION\tOLD INDEX\tNEW INDEX\tSUBJECT")
	for _, d := range o.Digests {
		idx := "-"
		if d.LogIndex != nil {
			idx = strconv.FormatUint(*d.LogIndex, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", d.Digest, d.Status, d.Action, d.OldLogIndex, idx, printable(clip(d.Subject, 80)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	verb := "re-stated"
	if o.DryRun {
		verb = "would be re-stated"
	}
	_, err := fmt.Fprintf(w, "%s -> %s: %d %s, %d already current, %d kept (NEW's newer statement differs), %d failed\n",
		printable(o.Old), printable(o.New), o.Restated, verb, o.Current, o.Kept, o.Failed)
	return err
}
