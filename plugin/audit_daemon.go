//go:build !notarize_verifyonly

package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/docker/cli/cli/command"
	cliflags "github.com/docker/cli/cli/flags"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"
	"github.com/notarize/docker-notarize/notarize"
)

// dockerDaemon is what audit asks of the Docker daemon (a subset of
// client.APIClient, which dockerCli.Client() returns).
type dockerDaemon interface {
	ImageList(ctx context.Context, options client.ImageListOptions) (client.ImageListResult, error)
	ContainerList(ctx context.Context, options client.ContainerListOptions) (client.ContainerListResult, error)
}

// maxAuditLocal bounds the images and containers an audit judges: a daemon
// (DOCKER_HOST may be anyone's) that lists more fails the audit instead of
// sending a ledger lookup for each. (The docker client has decoded the lists
// by then.)
const maxAuditLocal = 100_000

// noDigestReason explains an image without a registry digest.
const noDigestReason = "no registry digest: the image was built here, loaded from a tar or no longer has its registry name, so nothing says which manifest it came from; it cannot be checked against the ledger (push it and pull it by digest, then sign that digest)"

// daemonSubjects lists the daemon's images and containers and turns them into
// subjects: one per (image, registry digest), one per image without a
// registry digest, and one per image that containers use but the daemon no
// longer has.
func (o *auditOptions) daemonSubjects(ctx context.Context, dockerCli command.Cli) ([]auditSubject, error) {
	d := o.daemon
	if d == nil {
		var err error
		if d, err = daemonOf(dockerCli); err != nil {
			return nil, err
		}
	}
	images, err := d.ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list the daemon's images: %w", err)
	}
	containers, err := d.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("list the daemon's containers: %w", err)
	}
	if len(images.Items) > maxAuditLocal || len(containers.Items) > maxAuditLocal {
		return nil, fmt.Errorf("the daemon lists %d images and %d containers, more than %d", len(images.Items), len(containers.Items), maxAuditLocal)
	}
	return localSubjects(images.Items, containers.Items), nil
}

// daemonOf returns the Docker client of dockerCli. Run as a plugin, docker
// has initialized it; run standalone it is initialized here from the
// environment and the docker config (DOCKER_HOST, DOCKER_CONTEXT, the current
// context). A context that does not exist is refused here: dockerCli.Client()
// would exit the process with status 1, which audit means as UNTRUSTED.
func daemonOf(dockerCli command.Cli) (dockerDaemon, error) {
	if dockerCli.CurrentContext() == "" {
		ini, ok := dockerCli.(interface {
			Initialize(*cliflags.ClientOptions, ...command.CLIOption) error
		})
		if !ok {
			return nil, errors.New("docker client: not initialized")
		}
		if err := ini.Initialize(cliflags.NewClientOptions()); err != nil {
			return nil, fmt.Errorf("docker client: %w", err)
		}
	}
	if cn := dockerCli.CurrentContext(); cn != command.DefaultContextName {
		if _, err := dockerCli.ContextStore().GetMetadata(cn); err != nil {
			return nil, fmt.Errorf("docker context %q: %w", cn, err)
		}
	} else if h := os.Getenv(client.EnvOverrideHost); h != "" {
		if _, err := client.ParseHostURL(h); err != nil {
			return nil, fmt.Errorf("%s=%q: %w", client.EnvOverrideHost, h, err)
		}
	}
	c := dockerCli.Client()
	if c == nil {
		return nil, errors.New("docker client: not initialized")
	}
	return c, nil
}

// localSubjects groups images and containers into subjects. Every string is
// kept as the daemon gave it (JSON escapes it; the table goes through
// printable).
func localSubjects(images []image.Summary, containers []container.Summary) []auditSubject {
	byImage := map[string][]auditContainer{}
	for _, c := range containers {
		byImage[c.ImageID] = append(byImage[c.ImageID], auditContainer{ID: c.ID, Name: containerName(c), State: string(c.State)})
	}
	for _, cs := range byImage {
		sort.Slice(cs, func(i, j int) bool { return cs[i].Name < cs[j].Name })
	}
	var subjects []auditSubject
	seen := map[string]bool{}
	for _, im := range images {
		seen[im.ID] = true
		subjects = append(subjects, imageSubjects(im, byImage[im.ID])...)
	}
	var gone []string
	for id := range byImage {
		if !seen[id] {
			gone = append(gone, id)
		}
	}
	sort.Strings(gone)
	for _, id := range gone {
		cs := byImage[id]
		refs := []string{}
		for _, c := range containers {
			if c.ImageID == id && c.Image != "" && !containsString(refs, c.Image) {
				refs = append(refs, c.Image)
			}
		}
		subjects = append(subjects, auditSubject{
			References: refs, ImageID: id, Verdict: statusNoDigest, Containers: cs, Signers: []auditSignerStatus{},
			Reason: "the daemon no longer has the image these containers were created from, so nothing says which manifest it came from; it cannot be checked against the ledger",
		})
	}
	return subjects
}

// imageSubjects returns the subjects of one image: one per distinct registry
// digest, each with the tags of its repository (tags of repositories with
// no digest go with every one), or one UNVERIFIABLE subject when the image
// has no registry digest.
func imageSubjects(im image.Summary, cs []auditContainer) []auditSubject {
	if cs == nil {
		cs = []auditContainer{}
	}
	var tags []string
	for _, t := range im.RepoTags {
		if t != "" && t != "<none>:<none>" {
			tags = append(tags, t)
		}
	}
	groups, order, reposWithDigest := groupRepoDigests(im.RepoDigests)
	if len(order) == 0 {
		return []auditSubject{{
			References: orEmpty(tags), ImageID: im.ID, Verdict: statusNoDigest, Reason: noDigestReason,
			Signers: []auditSignerStatus{}, Containers: cs,
		}}
	}
	subjects := make([]auditSubject, 0, len(order))
	for _, key := range order {
		g := groups[key]
		s := auditSubject{ImageID: im.ID, Containers: cs, Signers: []auditSignerStatus{}}
		if g.err != nil {
			s.References, s.Verdict = g.refs, statusError
			s.Reason = fmt.Sprintf("the daemon reports a registry digest that cannot be looked up: %v", g.err)
			subjects = append(subjects, s)
			continue
		}
		s.Digest = key
		for _, t := range tags {
			if containsString(g.repos, tagRepo(t)) || !reposWithDigest[tagRepo(t)] {
				s.References = append(s.References, t)
			}
		}
		s.References = append(s.References, g.refs...)
		subjects = append(subjects, s)
	}
	return subjects
}

// groupRepoDigests groups an image's RepoDigests entries by digest (an
// entry that does not parse is a group of its own, with its error), in the
// order first seen, and returns the repositories that have a digest.
func groupRepoDigests(repoDigests []string) (groups map[string]*digestGroup, order []string, reposWithDigest map[string]bool) {
	groups, reposWithDigest = map[string]*digestGroup{}, map[string]bool{}
	for _, rd := range repoDigests {
		if rd == "" || rd == "<none>@<none>" {
			continue
		}
		repo, d, err := parseRepoDigest(rd)
		key := string(d)
		if err != nil {
			key = "bad:" + rd
		}
		g, ok := groups[key]
		if !ok {
			g = &digestGroup{err: err}
			groups[key] = g
			order = append(order, key)
		}
		g.repos = append(g.repos, repo)
		g.refs = append(g.refs, rd)
		if err == nil {
			reposWithDigest[repo] = true
		}
	}
	return groups, order, reposWithDigest
}

// parseRepoDigest splits a RepoDigests entry (REPO@sha256:HEX) into its
// repository and a digest the ledger can be asked about.
func parseRepoDigest(rd string) (repo string, d notarize.Digest, err error) {
	ref, err := name.NewDigest(rd)
	if err != nil {
		return "", "", fmt.Errorf("%q: %w", rd, err)
	}
	if d, err = notarize.ParseDigest(ref.DigestStr()); err != nil {
		return "", "", fmt.Errorf("%q: %w", rd, err)
	}
	return ref.Context().Name(), d, nil
}

// tagRepo is the repository of a REPO:TAG, normalized as name does
// ("" when it does not parse).
func tagRepo(t string) string {
	ref, err := name.NewTag(t)
	if err != nil {
		return ""
	}
	return ref.Context().Name()
}

// digestGroup is the RepoDigests entries of one image that name one digest.
type digestGroup struct {
	repos []string // their repositories
	refs  []string // the entries
	err   error    // why the digest cannot be looked up
}

func containerName(c container.Summary) string {
	if len(c.Names) == 0 {
		if len(c.ID) > 12 {
			return c.ID[:12]
		}
		return c.ID
	}
	return strings.TrimPrefix(c.Names[0], "/")
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
