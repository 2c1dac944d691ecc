//go:build !notarize_verifyonly

package plugin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
)

// ErrSignDeclined is returned (wrapped) when the confirmation was not given.
var ErrSignDeclined = errors.New("not confirmed")

// maxConfirmLine bounds the answer read at the confirmation prompt.
const maxConfirmLine = 1024

// stdinIsTerminal reports whether the command's stdin is a terminal.
func (e env) stdinIsTerminal(dockerCli stdio) bool {
	return e.isTerminal != nil && e.isTerminal(int(dockerCli.In().FD()))
}

// signUnknown records each UNKNOWN digest of out as trusted with --key, after
// listing them and asking (unless --yes), then judges them again. Only
// UNKNOWN subjects with a digest are candidates: a revocation (UNTRUSTED,
// UNSUPPORTED) is never overridden here, and an image without a registry
// digest has nothing to sign. Each manifest is fetched and hashed again
// first, so only content the registry still serves under that digest is
// signed. It returns the statements recorded; a digest that could not be
// signed keeps its verdict and is reported on stderr.
func (o *auditOptions) signUnknown(ctx context.Context, dockerCli stdio, resolver *Resolver, out *auditOutput, j *judge, prog *progress) ([]signOutput, error) {
	digests, bySubject := unknownDigests(out.Subjects)
	stderr := dockerCli.Err()
	if len(digests) == 0 {
		fmt.Fprintln(stderr, "--sign: no UNKNOWN digest to sign")
		return nil, nil
	}
	signer, err := loadSigningKey(ctx, dockerCli, o.root, o.key)
	if err != nil {
		return nil, err
	}
	if !o.yes {
		err := confirmSign(dockerCli.In(), stderr, out.Subjects, digests, bySubject, signer)
		if errors.Is(err, ErrSignDeclined) {
			fmt.Fprintln(stderr, "nothing was signed")
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
	}
	if !acceptedKey(out.Signers, signer.keyID) {
		fmt.Fprintf(stderr, "warning: key %s (%s) is not an accepted signer of this audit: its statements do not change these verdicts\n", printable(signer.name), signer.keyID)
	}
	client := j.client
	if client == nil {
		if client, err = o.root.ledger(ctx, stderr); err != nil {
			return nil, err
		}
	}
	signed, err := o.signAll(ctx, stderr, resolver, client, signer, out.Subjects, digests, bySubject, prog)
	if err != nil {
		return signed, err
	}
	// Judge the signed digests again: the output shows what the ledger now says.
	if j.client == nil && len(j.signers) > 0 {
		j.client = client
	}
	j.rejudge(ctx, out.Subjects, signed, prog)
	return signed, nil
}

// signAll signs digests, auditJobs at a time (the ledger integrates
// concurrent submissions together), and returns what was recorded, in the
// order of digests. A digest that could not be signed is reported on stderr.
// Interrupted, it reports what was recorded so far on stderr and returns the
// context's error (exit 130).
func (o *auditOptions) signAll(ctx context.Context, stderr io.Writer, resolver *Resolver, client *ledgerclient.Client, signer *signingKey, subjects []auditSubject, digests []string, bySubject map[string]int, prog *progress) ([]signOutput, error) {
	results := make([]signOutput, len(digests))
	errs := make([]error, len(digests))
	prog.start("signing", len(digests))
	forEachBounded(len(digests), o.jobs, func(i int) {
		if errs[i] = ctx.Err(); errs[i] != nil {
			return
		}
		results[i], errs[i] = o.signSubject(ctx, stderr, resolver, client, signer, &subjects[bySubject[digests[i]]])
		prog.add(1)
	})
	prog.finish()
	var signed []signOutput
	var failed []string
	for i, d := range digests {
		if errs[i] != nil {
			failed = append(failed, fmt.Sprintf("could not sign %s: %s\n", d, printable(errs[i].Error())))
			continue
		}
		signed = append(signed, results[i])
	}
	if err := ctx.Err(); err != nil {
		fmt.Fprintf(stderr, "interrupted: %d of %d digests were recorded as trusted:\n", len(signed), len(digests))
		_ = writeSignText(stderr, signed)
		return signed, fmt.Errorf("audit --sign: %w", err)
	}
	for _, f := range failed {
		io.WriteString(stderr, f)
	}
	if len(failed) > 0 {
		fmt.Fprintf(stderr, "%d of %d digests could not be signed\n", len(failed), len(digests))
	}
	return signed, nil
}

// unknownDigests returns the distinct digests of the UNKNOWN subjects, in
// order, and the first subject of each.
func unknownDigests(subjects []auditSubject) (digests []string, bySubject map[string]int) {
	bySubject = map[string]int{}
	for i, s := range subjects {
		if s.Verdict != notarize.Unknown.String() || s.Digest == "" {
			continue
		}
		if _, ok := bySubject[s.Digest]; !ok {
			bySubject[s.Digest] = i
			digests = append(digests, s.Digest)
		}
	}
	return digests, bySubject
}

// confirmSign lists what would be signed on stderr and asks; anything but
// y or yes declines.
func confirmSign(in io.Reader, stderr io.Writer, subjects []auditSubject, digests []string, bySubject map[string]int, signer *signingKey) error {
	var b strings.Builder
	fmt.Fprintf(&b, "UNKNOWN digests:\n")
	for _, d := range digests {
		s := subjects[bySubject[d]]
		fmt.Fprintf(&b, "  %s %s\n", d, tableRefs(s))
	}
	fmt.Fprintf(&b, "Sign %d digest(s) as TRUSTED with key %s (%s)? [y/N] ", len(digests), printable(signer.name), shortKeyID(signer.keyID))
	if _, err := io.WriteString(stderr, b.String()); err != nil {
		return err
	}
	line, err := bufio.NewReaderSize(io.LimitReader(in, maxConfirmLine), 64).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read the confirmation: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return ErrSignDeclined
}

// signSubject records s's digest as trusted as sign does
// (recordStatement), after fetching and hashing its manifest again (a
// registry audit already did).
func (o *auditOptions) signSubject(ctx context.Context, stderr io.Writer, resolver *Resolver, client *ledgerclient.Client, signer *signingKey, s *auditSubject) (signOutput, error) {
	subj, err := auditSignSubject(ctx, resolver, s)
	if err != nil {
		return signOutput{}, err
	}
	return recordStatement(ctx, stderr, client, signer, *subj, notarize.StatusTrusted, nil, o.root.env.now().UTC(), lostReceiptWait)
}

// auditSignSubject is what a statement about s says: from the registry
// audit's fetch, or for a local image by fetching REPO@DIGEST from its
// registry, which must serve bytes that hash to that digest.
func auditSignSubject(ctx context.Context, resolver *Resolver, s *auditSubject) (*Subject, error) {
	d := notarize.Digest(s.Digest)
	if s.kind != "" {
		return &Subject{Name: s.References[0], Digest: d, MediaType: s.mediaType, Size: s.size, Kind: s.kind}, nil
	}
	var errs []error
	for _, ref := range s.References {
		if !strings.HasSuffix(ref, "@"+s.Digest) {
			continue
		}
		subj, err := resolver.Resolve(ctx, ref, false)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if subj.Digest != d { // Resolve checks this; a statement must never be about another digest
			return nil, fmt.Errorf("%w: %s resolved to %s", ErrDigestMismatch, ref, subj.Digest)
		}
		return subj, nil
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("no registry reference names %s", s.Digest)
	}
	return nil, errors.Join(errs...)
}

func acceptedKey(signers []auditSigner, keyID string) bool {
	for _, s := range signers {
		if s.KeyID == keyID {
			return true
		}
	}
	return false
}
