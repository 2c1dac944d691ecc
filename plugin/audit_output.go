//go:build !notarize_verifyonly

package plugin

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// Where an audit's subjects came from.
const (
	auditSourceDaemon   = "daemon"
	auditSourceRegistry = "registry"
)

// auditOutput is the result of audit. JSON field names are part of the CLI's
// contract (schemaVersion 1, documented in the command's help).
type auditOutput struct {
	SchemaVersion int `json:"schemaVersion"`
	// Source is "daemon" (local images and containers) or "registry".
	Source string `json:"source"`
	// Repository is the audited REGISTRY/REPO (source registry).
	Repository string `json:"repository,omitempty"`
	// Signers are the accepted signers.
	Signers []auditSigner `json:"signers"`
	// Verdict is the worst subject status, ExitCode its exit code.
	Verdict  string `json:"verdict"`
	ExitCode int    `json:"exitCode"`
	// CheckpointSize is the largest verified checkpoint an answer was based on.
	CheckpointSize *uint64 `json:"checkpointSize,omitempty"`
	// Error says why the whole audit failed (verdict ERROR, no subjects);
	// RetryAfter, the seconds the ledger asked to wait before trying again
	// (retryAfterSeconds).
	Error      string         `json:"error,omitempty"`
	RetryAfter int            `json:"retryAfter,omitempty"`
	Subjects   []auditSubject `json:"subjects"`
	// Signed are the statements --sign recorded.
	Signed []signOutput `json:"signed,omitempty"`
}

// newAuditOutput is an empty result, of the registry repository repo or,
// when repo is "", of the daemon.
func newAuditOutput(repo string) *auditOutput {
	out := &auditOutput{SchemaVersion: schemaVersion, Source: auditSourceDaemon, Subjects: []auditSubject{}, Signers: []auditSigner{}}
	if repo != "" {
		out.Source, out.Repository = auditSourceRegistry, repo
	}
	return out
}

// fail reports an audit that reached no result: in JSON, the output with
// verdict ERROR and the error; the exit code is 4 (a usage error found late,
// such as no signing key, keeps its 125), never a code a script would read
// as a verdict.
func (o *auditOutput) fail(w io.Writer, format string, err error) error {
	code := ExitCouldNotVerify
	if st, ok := errors.AsType[codedError](err); ok && st.StatusCode != 0 {
		code = st.StatusCode
	}
	err = fmt.Errorf("could not audit: %w", err)
	o.Verdict, o.ExitCode, o.Error, o.RetryAfter = statusError, code, err.Error(), retryAfterSeconds(err)
	// Subjects collected before the failure were not judged: say so
	// rather than leave their verdict empty.
	for i := range o.Subjects {
		if o.Subjects[i].Verdict == "" {
			o.Subjects[i].Verdict, o.Subjects[i].Reason = statusError, "not judged: "+err.Error()
		}
	}
	if format == formatJSON {
		_ = writeJSON(w, o)
		return reported(withExitCode(code, err))
	}
	return withExitCode(code, err)
}

// auditSigner is an accepted signer.
type auditSigner struct {
	Name  string `json:"name"`
	KeyID string `json:"keyId"`
}

// auditSubject is one digest judged: a local image as pulled from one
// registry, a local image with no registry digest, or the tags of a
// repository that name one manifest.
type auditSubject struct {
	// References are the image references that name this digest: tags and
	// REPO@DIGEST.
	References []string `json:"references"`
	// Digest is the manifest digest; "" for an image with no registry digest.
	Digest string `json:"digest"`
	// ImageID is the daemon's image ID (its config digest); source daemon.
	ImageID string `json:"imageId,omitempty"`
	// Verdict is TRUSTED, UNTRUSTED, UNKNOWN, UNSUPPORTED, UNVERIFIABLE (no
	// registry digest) or ERROR (could not be judged).
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
	// Signers holds each accepted signer's current status.
	Signers    []auditSignerStatus `json:"signers"`
	Containers []auditContainer    `json:"containers"`

	// kind, mediaType and size describe the manifest when the audit fetched it.
	kind      string
	mediaType string
	size      int64
}

// auditSignerStatus is one accepted signer's current statement about a digest.
type auditSignerStatus struct {
	Name  string `json:"name"`
	KeyID string `json:"keyId"`
	// Status is TRUSTED, UNTRUSTED, UNSUPPORTED, or NONE (no statement).
	Status    string     `json:"status"`
	Timestamp *time.Time `json:"timestamp,omitempty"`
	LogIndex  *uint64    `json:"logIndex,omitempty"`
}

// statusNone is a signer's status when it made no statement about a digest.
const statusNone = "NONE"

// auditContainer is a container, running or stopped, of an audited image.
type auditContainer struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	State string `json:"state"`
}

// auditRank orders the subject statuses from best to worst: the exit code is
// the worst one's. An UNTRUSTED image is a known bad one; a subject that
// could not be judged might be one, so it comes next.
var auditRank = map[string]int{
	notarize.Trusted.String():     0,
	statusNoDigest:                1,
	notarize.Unknown.String():     2,
	notarize.Unsupported.String(): 3,
	statusError:                   4,
	notarize.Untrusted.String():   5,
}

// auditExitCode maps a subject status to the exit code.
func auditExitCode(status string) int {
	switch status {
	case notarize.Trusted.String():
		return 0
	case notarize.Untrusted.String():
		return 1
	case notarize.Unknown.String(), statusNoDigest:
		return 2
	case notarize.Unsupported.String():
		return 3
	}
	return ExitCouldNotVerify
}

// finish sets the overall verdict and exit code from the subjects.
func (o *auditOutput) finish(checkpointSize uint64) {
	o.Verdict = notarize.Trusted.String()
	for _, s := range o.Subjects {
		rank, ok := auditRank[s.Verdict]
		if !ok { // never judged: fail closed
			rank = auditRank[statusError]
		}
		if rank > auditRank[o.Verdict] {
			o.Verdict = s.Verdict
			if !ok {
				o.Verdict = statusError
			}
		}
	}
	o.ExitCode = auditExitCode(o.Verdict)
	if checkpointSize > 0 {
		o.CheckpointSize = &checkpointSize
	}
}

// sortSubjects orders subjects by first reference, then digest.
func sortSubjects(subjects []auditSubject) {
	sort.SliceStable(subjects, func(i, j int) bool {
		a, b := subjects[i], subjects[j]
		if ra, rb := firstRef(a), firstRef(b); ra != rb {
			return ra < rb
		}
		return a.Digest < b.Digest
	})
}

func firstRef(s auditSubject) string {
	if len(s.References) == 0 {
		return "\xff" + s.ImageID // unnamed images last
	}
	return s.References[0]
}

func (o *auditOutput) write(w io.Writer, format string) error {
	if format == formatJSON {
		return writeJSON(w, o)
	}
	return writeAuditTable(w, o)
}

// writeAuditTable prints one line per subject, then the reasons of the
// subjects that are not TRUSTED, what --sign recorded and a summary line.
// Every string that came from the daemon or a registry goes through
// printable.
func writeAuditTable(w io.Writer, o *auditOutput) error {
	var b strings.Builder
	if len(o.Subjects) > 0 {
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERDICT\tDIGEST\tREFERENCES\tSIGNERS\tCONTAINERS")
		for _, s := range o.Subjects {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Verdict, shortDigest(s.Digest), tableRefs(s), tableSigners(s.Signers), tableContainers(s.Containers))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	var notes []string
	for _, s := range o.Subjects {
		if s.Verdict != notarize.Trusted.String() && s.Reason != "" {
			notes = append(notes, fmt.Sprintf("  %s %s: %s\n", s.Verdict, printable(firstRefOr(s)), printable(s.Reason)))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n")
		for _, n := range notes {
			b.WriteString(n)
		}
	}
	if len(o.Signed) > 0 {
		b.WriteString("\nsigned:\n")
		if err := writeSignText(&b, o.Signed); err != nil {
			return err
		}
	}
	b.WriteString(auditSummary(o))
	_, err := io.WriteString(w, b.String())
	return err
}

// auditSummary is the last line: what was audited and how many of each status.
func auditSummary(o *auditOutput) string {
	counts := map[string]int{}
	containers := 0
	for _, s := range o.Subjects {
		counts[s.Verdict]++
		containers += len(s.Containers)
	}
	var parts []string
	for _, st := range []string{notarize.Untrusted.String(), statusError, notarize.Unsupported.String(), notarize.Unknown.String(), statusNoDigest, notarize.Trusted.String()} {
		if counts[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
		}
	}
	what := fmt.Sprintf("local daemon: %d subject(s), %d container(s)", len(o.Subjects), containers)
	if o.Source == auditSourceRegistry {
		what = fmt.Sprintf("%s: %d digest(s)", printable(o.Repository), len(o.Subjects))
	}
	if len(parts) == 0 {
		return fmt.Sprintf("%s: nothing to audit (exit %d)\n", what, o.ExitCode)
	}
	signers := make([]string, 0, len(o.Signers))
	for _, s := range o.Signers {
		signers = append(signers, printable(s.Name))
	}
	under := "no accepted signers"
	if len(signers) > 0 {
		under = "signers " + strings.Join(signers, ", ")
	}
	return fmt.Sprintf("\n%s (%s): %s; worst %s (exit %d)\n", what, under, strings.Join(parts, ", "), o.Verdict, o.ExitCode)
}

func shortDigest(d string) string {
	if d == "" {
		return "-"
	}
	if len(d) > len("sha256:")+12 {
		return d[:len("sha256:")+12]
	}
	return d
}

func firstRefOr(s auditSubject) string {
	if len(s.References) > 0 {
		return s.References[0]
	}
	if s.ImageID != "" {
		return "image " + shortDigest(s.ImageID)
	}
	return s.Digest
}

func tableRefs(s auditSubject) string {
	if len(s.References) == 0 {
		if s.ImageID != "" {
			return "<untagged " + printable(shortDigest(s.ImageID)) + ">"
		}
		return "-"
	}
	// Tags say it shortly; REPO@DIGEST only when there is no tag.
	var tags, digests []string
	for _, r := range s.References {
		if strings.Contains(r, "@") {
			digests = append(digests, printable(r))
		} else {
			tags = append(tags, printable(r))
		}
	}
	if len(tags) == 0 {
		return strings.Join(digests, ", ")
	}
	return strings.Join(tags, ", ")
}

func tableSigners(ss []auditSignerStatus) string {
	if len(ss) == 0 {
		return "-"
	}
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = printable(s.Name) + "=" + s.Status
	}
	return strings.Join(parts, ", ")
}

func tableContainers(cs []auditContainer) string {
	if len(cs) == 0 {
		return "-"
	}
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%s (%s)", printable(c.Name), printable(c.State))
	}
	return strings.Join(parts, ", ")
}
