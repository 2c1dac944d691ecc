package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
)

// ErrRedirectRefused: the upstream redirected where the proxy does not
// follow: any host but its own for manifests, tags and referrers, or, for a
// blob, a scheme other than http(s) or too many hops.
var ErrRedirectRefused = errors.New("upstream redirect refused")

// ErrPrivateAddress: a connection for the upstream to a host other than its
// own and its auth hosts would reach a loopback, link-local, private or
// otherwise non-public address, and the upstream is not on such a network.
var ErrPrivateAddress = errors.New("refusing to connect to a non-public address for an upstream that is not on a private network")

// Resolver looks up a host's addresses; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// nonPublic are the prefixes, besides what netip.Addr's own predicates
// (loopback, private, link-local, multicast, unspecified) cover, that a
// redirect may not reach: "this network", shared address space (CGNAT),
// IETF protocol assignments, benchmarking, reserved and the IPv6 prefixes
// that embed IPv4 addresses (NAT64, 6to4, Teredo), discard-only.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2002::/16"),
	netip.MustParsePrefix("2001::/32"),
	netip.MustParsePrefix("100::/64"),
}

// IsNonPublic reports whether a is loopback, link-local, private,
// multicast, unspecified or in another range that is not the public
// internet (see nonPublic).
func IsNonPublic(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return true
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// hostIsNonPublic reports whether a URL hostname is localhost or a
// non-public IP literal.
func hostIsNonPublic(host string) bool {
	host = strings.Trim(host, "[]")
	if IsLoopback(host) || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		if i := strings.IndexByte(host, '%'); i >= 0 { // zone
			a, err = netip.ParseAddr(host[:i])
		}
	}
	return err == nil && IsNonPublic(a)
}

// dialGuard dials the connections of the default transport. The upstream's
// own host and its configured auth hosts are dialed as any client would;
// any other host (a redirect target, a token realm elsewhere) is resolved
// here and each resolved address checked before it is connected to, so a
// name cannot resolve to one address when checked and another when dialed
// (DNS rebinding). Unless the upstream is on a private network, a
// non-public address is refused (ErrPrivateAddress).
type dialGuard struct {
	dialer   *net.Dialer
	resolver Resolver
	trusted  map[string]bool // canonical host:port dialed without checks
	private  bool            // the upstream is on a private network: no checks

	mu      sync.Mutex
	proxies map[string]bool // canonical host:port of the environment's HTTP proxies
}

// proxyFunc returns the environment's proxy for req (as
// http.ProxyFromEnvironment) and remembers it as a trusted dial target:
// a proxy is configured by the operator. A request that goes through it
// is connected by the proxy, out of DialContext's sight, so its host is
// checked here first (checkProxied).
func (g *dialGuard) proxyFunc(req *http.Request) (*url.URL, error) {
	u, err := http.ProxyFromEnvironment(req)
	if u == nil || err != nil {
		return u, err
	}
	g.mu.Lock()
	if g.proxies == nil {
		g.proxies = map[string]bool{}
	}
	g.proxies[canonicalHost(u.Host, u.Scheme)] = true
	g.mu.Unlock()
	if err := g.checkProxied(req); err != nil {
		return nil, err
	}
	return u, nil
}

// checkProxied refuses, before it is sent, a request through the
// environment's proxy to a host other than the upstream's own and its auth
// hosts (a redirect target, a token realm elsewhere) whose name resolves to
// any non-public address, unless the upstream is on a private network. The
// egress proxy resolves the name again, maybe to other addresses (its DNS,
// or a rebinding answer): it must refuse internal ranges itself too. A
// name that does not resolve here is refused: closed.
func (g *dialGuard) checkProxied(req *http.Request) error {
	if g.private || g.trusted[canonicalHost(req.URL.Host, req.URL.Scheme)] {
		return nil
	}
	host := req.URL.Hostname()
	ips, err := g.lookup(req.Context(), host)
	if err != nil {
		return fmt.Errorf("checking %s before sending it through the HTTP proxy: %w", host, err)
	}
	for _, a := range ips {
		if IsNonPublic(a) {
			return fmt.Errorf("%s (%s) through the HTTP proxy: %w", host, a, ErrPrivateAddress)
		}
	}
	return nil
}

func (g *dialGuard) isTrusted(addr string) bool {
	if g.private || g.trusted[addr] {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.proxies[addr]
}

// DialContext dials addr ("host:port", as net/http passes it).
func (g *dialGuard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	canon := canonicalHost(addr, "")
	if g.isTrusted(canon) {
		if g.resolver == nil {
			return g.dialer.DialContext(ctx, network, addr)
		}
		ips, err := g.lookup(ctx, host)
		if err != nil {
			return nil, err
		}
		return g.dialFirst(ctx, network, ips, port, nil)
	}
	ips, err := g.lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	return g.dialFirst(ctx, network, ips, port, func(a netip.Addr) error {
		if IsNonPublic(a) {
			return fmt.Errorf("dial %s (%s): %w", host, a, ErrPrivateAddress)
		}
		return nil
	})
}

// lookup resolves host: an IP literal is itself.
func (g *dialGuard) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{a}, nil
	}
	r := g.resolver
	if r == nil {
		r = net.DefaultResolver
	}
	ips, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("lookup %s: no addresses", host)
	}
	return ips, nil
}

// dialFirst connects to the first of ips that check accepts and answers.
func (g *dialGuard) dialFirst(ctx context.Context, network string, ips []netip.Addr, port string, check func(netip.Addr) error) (net.Conn, error) {
	var errs []error
	for _, a := range ips {
		if check != nil {
			if err := check(a); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		c, err := g.dialer.DialContext(ctx, network, net.JoinHostPort(a.Unmap().String(), port))
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// redirectPolicy returns the CheckRedirect of an http.Client for the
// upstream: with anyHost false (manifests, tags, referrers) a redirect is
// followed only to the upstream's own scheme and host; with anyHost true
// (a blob, whose digest the caller checks) to any http(s) URL whose host is
// not a non-public literal when the upstream is public. The dial guard
// checks resolved names.
func (r *Registry) redirectPolicy(anyHost bool) func(*http.Request, []*http.Request) error {
	own := canonicalHost(r.base.Host, r.base.Scheme)
	return func(req *http.Request, via []*http.Request) error {
		u := req.URL
		switch {
		case len(via) >= maxRedirects:
			return fmt.Errorf("%w: stopped after %d redirects", ErrRedirectRefused, len(via))
		case u.Scheme == r.base.Scheme && canonicalHost(u.Host, u.Scheme) == own:
			return nil
		case !anyHost:
			return fmt.Errorf("%w: to %s://%s, not the upstream's host (followed only for blobs)", ErrRedirectRefused, u.Scheme, u.Host)
		case u.Scheme != "https" && u.Scheme != "http":
			return fmt.Errorf("%w: scheme %q", ErrRedirectRefused, u.Scheme)
		case !r.private && hostIsNonPublic(u.Hostname()):
			return fmt.Errorf("%w: to %s: %w", ErrRedirectRefused, u.Host, ErrPrivateAddress)
		}
		return nil
	}
}
