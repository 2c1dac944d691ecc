package proxy

import (
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/notarize/docker-notarize/proxy/upstream"
)

// maxNameLen bounds a repository name (OCI distribution-spec).
const maxNameLen = 255

// pathComponentRE is one repository path component (OCI distribution-spec).
var pathComponentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)

// tagRE is a tag (OCI distribution-spec).
var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

// hostRE is a registry host[:port] as containerd sends in ns.
var hostRE = regexp.MustCompile(`^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?(?::[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?$`)

// target is where a request goes: an upstream and the repository there.
type target struct {
	up   *upstream.Registry
	repo string
}

// String returns "UPSTREAM/REPO", what policy rules match.
func (t target) String() string { return t.up.Name() + "/" + t.repo }

// router maps the names clients use to configured upstreams. It never
// invents an upstream: a name or ns it does not know is NAME_UNKNOWN.
type router struct {
	byName map[string]*upstream.Registry
	byHost map[string]*upstream.Registry // lower-case host[:port] as in the URL
	def    *upstream.Registry
}

func newRouter(ups []*upstream.Registry, def string) *router {
	r := &router{byName: map[string]*upstream.Registry{}, byHost: map[string]*upstream.Registry{}}
	for _, u := range ups {
		r.byName[u.Name()] = u
		r.byHost[strings.ToLower(u.Host())] = u
		if u.IsDockerHub() {
			for _, h := range []string{"docker.io", "index.docker.io", upstream.DockerHubHost} {
				if _, ok := r.byHost[h]; !ok {
					r.byHost[h] = u
				}
			}
		}
		if u.Name() == def {
			r.def = u
		}
	}
	return r
}

// routeError is a request naming no configured upstream or no valid repository.
type routeError struct {
	unknown bool // NAME_UNKNOWN rather than NAME_INVALID
	// registry is, for NAME_UNKNOWN, the registry the request named (ns or
	// the first path segment, clipped); "" when it named none and there is
	// no default upstream.
	registry string
	msg      string
}

func (e *routeError) Error() string { return e.msg }

// resolve maps the repository name of a request and containerd's ns query
// parameter (empty when absent) to a target:
//
//   - ns set: the upstream whose name or URL host is ns; name is the
//     repository there, less a first segment that is that upstream's name;
//   - else a first path segment that is an upstream's name: that upstream,
//     the rest is the repository;
//   - else a first segment that looks like a registry host (has '.' or ':',
//     or is "localhost"): NAME_UNKNOWN, never the default upstream;
//   - else the default upstream.
//
// On Docker Hub a one-segment repository is under "library/".
func (r *router) resolve(name, ns string) (target, error) {
	if len(name) > maxNameLen {
		return target{}, &routeError{msg: fmt.Sprintf("repository name longer than %d characters", maxNameLen)}
	}
	var up *upstream.Registry
	repo := name
	switch {
	case ns != "":
		if !hostRE.MatchString(ns) {
			return target{}, &routeError{unknown: true, registry: clip(ns, 80), msg: fmt.Sprintf("ns %q is not a registry host", clip(ns, 80))}
		}
		up = r.byName[ns]
		if up == nil {
			up = r.byHost[strings.ToLower(ns)]
		}
		if up == nil {
			return target{}, &routeError{unknown: true, registry: clip(ns, 80), msg: fmt.Sprintf("registry %q is not an upstream of this proxy", clip(ns, 80))}
		}
		// containerd adds ns also to a server URL that already carries the
		// upstream's prefix (override_path): do not count it twice.
		if first, rest, ok := strings.Cut(name, "/"); ok && first == up.Name() {
			repo = rest
		}
	default:
		first, rest, hasRest := strings.Cut(name, "/")
		if u, ok := r.byName[first]; ok && hasRest {
			up, repo = u, rest
			break
		}
		if hasRest && looksLikeHost(first) {
			return target{}, &routeError{unknown: true, registry: clip(first, 80), msg: fmt.Sprintf("registry %q is not an upstream of this proxy", clip(first, 80))}
		}
		if r.def == nil {
			return target{}, &routeError{unknown: true, msg: "no default upstream: name the registry with ?ns= or a /v2/REGISTRY/… prefix"}
		}
		up = r.def
	}
	if err := validRepo(repo); err != nil {
		return target{}, err
	}
	if up.IsDockerHub() && !strings.Contains(repo, "/") {
		repo = "library/" + repo
	}
	return target{up: up, repo: repo}, nil
}

func looksLikeHost(s string) bool {
	return strings.ContainsAny(s, ".:") || s == "localhost" || net.ParseIP(strings.Trim(s, "[]")) != nil
}

func validRepo(repo string) error {
	if repo == "" {
		return &routeError{msg: "empty repository name"}
	}
	for _, c := range strings.Split(repo, "/") {
		if !pathComponentRE.MatchString(c) {
			return &routeError{msg: fmt.Sprintf("invalid repository name %q", clip(repo, 80))}
		}
	}
	return nil
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
