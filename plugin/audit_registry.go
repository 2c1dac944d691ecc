//go:build !notarize_verifyonly

package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Bounds of a repository's tag list: a registry that keeps announcing another
// page, or sends pages without end, fails the audit instead of holding it.
const (
	// maxAuditTags bounds the tags of one repository an audit reads.
	maxAuditTags = 10_000
	// maxTagPages bounds the pages of a tag list.
	maxTagPages = 1_000
	// maxTagPageSize bounds one registry answer while listing tags.
	maxTagPageSize = 4 << 20
)

// ErrTooManyTags is returned (wrapped) when a repository lists more than
// maxAuditTags tags or maxTagPages pages.
var ErrTooManyTags = errors.New("too many tags")

// registrySubjects lists repoArg's tags, keeps those keep accepts, fetches
// and hashes each one's manifest, and returns one subject per distinct
// digest with the tags that name it. A tag that cannot be resolved is an
// ERROR subject of its own.
func registrySubjects(ctx context.Context, r *Resolver, repoArg string, keep func(string) bool, prog *progress) ([]auditSubject, error) {
	repo, err := r.parseRepository(repoArg)
	if err != nil {
		return nil, err
	}
	all, err := r.listTags(ctx, repo)
	if err != nil {
		return nil, fmt.Errorf("list the tags of %s: %w", repo.Name(), err)
	}
	var tags []string
	for _, t := range all {
		if keep(t) {
			tags = append(tags, t)
		}
	}
	sort.Strings(tags)
	if len(tags) == 0 {
		return []auditSubject{}, nil
	}
	tr, err := r.transport(ctx, repo)
	if err != nil {
		return nil, err
	}
	resolved := make([]auditSubject, len(tags))
	prog.start("resolving", len(tags))
	forEachBounded(len(tags), auditJobs, func(i int) {
		resolved[i] = r.tagSubject(ctx, tr, repo, tags[i])
		prog.add(1)
	})
	prog.finish()
	// One subject per digest, with every tag that names it.
	var subjects []auditSubject
	byDigest := map[string]int{}
	for _, s := range resolved {
		if s.Digest == "" {
			subjects = append(subjects, s)
			continue
		}
		if k, ok := byDigest[s.Digest]; ok {
			subjects[k].References = append(subjects[k].References, s.References...)
			continue
		}
		byDigest[s.Digest] = len(subjects)
		subjects = append(subjects, s)
	}
	return subjects, nil
}

// tagSubject resolves one tag to its manifest, fetched and hashed here.
func (r *Resolver) tagSubject(ctx context.Context, tr http.RoundTripper, repo name.Repository, tag string) auditSubject {
	s := auditSubject{References: []string{repo.Name() + ":" + tag}, Signers: []auditSignerStatus{}, Containers: []auditContainer{}}
	if _, err := name.NewTag(repo.Name()+":"+tag, name.StrictValidation); err != nil {
		s.References = []string{repo.Name() + ":" + clip(tag, 128)}
		s.Verdict, s.Reason = statusError, fmt.Sprintf("the registry lists a tag that is not a valid tag: %v", err)
		return s
	}
	m, err := r.fetchManifest(ctx, tr, repo.Scheme(), repo, tag)
	if err != nil {
		s.Verdict, s.Reason = statusError, fmt.Sprintf("could not verify: resolve %s: %v", s.References[0], err)
		return s
	}
	s.Digest, s.kind, s.mediaType, s.size = string(m.Digest), m.Kind, m.MediaType, int64(len(m.Bytes))
	return s
}

// parseRepository parses REGISTRY/REPO, allowing plain http where the guard
// does (loopback, --insecure-registry).
func (r *Resolver) parseRepository(arg string) (name.Repository, error) {
	repo, err := name.NewRepository(arg)
	if err != nil {
		return name.Repository{}, err
	}
	if r.guard.allowsPlain(repo.RegistryStr()) {
		return name.NewRepository(arg, name.Insecure)
	}
	return repo, nil
}

// listTags reads repo's tag list page by page through the plain-http guard,
// with the keychain's credentials, each page within the registry timeout and
// maxTagPageSize, at most maxTagPages pages and maxAuditTags tags.
func (r *Resolver) listTags(ctx context.Context, repo name.Repository) ([]string, error) {
	p, err := remote.NewPuller(
		remote.WithAuthFromKeychain(r.keychain),
		remote.WithTransport(limitedBodies{next: r.guard, limit: maxTagPageSize}),
		remote.WithContext(ctx),
	)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, r.timeout)
	l, err := p.Lister(pctx, repo)
	cancel()
	if err != nil {
		return nil, err
	}
	var tags []string
	for pages := 0; l.HasNext(); pages++ {
		if pages == maxTagPages {
			return nil, fmt.Errorf("%w: more than %d pages", ErrTooManyTags, maxTagPages)
		}
		pctx, cancel := context.WithTimeout(ctx, r.timeout)
		page, err := l.Next(pctx)
		cancel()
		if err != nil {
			return nil, err
		}
		if len(tags)+len(page.Tags) > maxAuditTags {
			return nil, fmt.Errorf("%w: more than %d", ErrTooManyTags, maxAuditTags)
		}
		tags = append(tags, page.Tags...)
	}
	return tags, nil
}

// limitedBodies is an http.RoundTripper whose response bodies fail after
// limit bytes.
type limitedBodies struct {
	next  http.RoundTripper
	limit int64
}

// RoundTrip implements http.RoundTripper.
func (l limitedBodies) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{r: resp.Body, left: l.limit}
	return resp, nil
}

// errBodyTooLarge is a registry answer larger than the bound of its kind.
var errBodyTooLarge = errors.New("registry answer too large")

type limitedBody struct {
	r    io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One more byte tells a body of exactly the limit from a longer one.
		var one [1]byte
		if n, _ := b.r.Read(one[:]); n > 0 {
			return 0, errBodyTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.r.Close() }

// clip shortens s to at most n bytes for messages.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
