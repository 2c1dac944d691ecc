package plugin

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ErrPlainHTTP is returned (wrapped) for a plain-http request to a host that is
// neither loopback nor a registry named with --insecure-registry.
var ErrPlainHTTP = errors.New("plain http refused")

// plainHTTPGuard is an http.RoundTripper that lets https through and refuses
// http:// to anything but loopback hosts (localhost, 127.0.0.0/8, ::1) and the
// insecure registries it was given. go-containerregistry on its own would also
// talk plain http to RFC 1918 addresses; this guard fails closed instead. It
// sees every hop, redirects and token servers included.
type plainHTTPGuard struct {
	next http.RoundTripper
	// insecure holds lowercased "host" (any port) or "host:port" entries.
	insecure map[string]bool
}

// newPlainHTTPGuard wraps next (http.DefaultTransport if nil). insecure lists
// registries allowed over plain http, as HOST or HOST:PORT.
func newPlainHTTPGuard(next http.RoundTripper, insecure []string) (*plainHTTPGuard, error) {
	if next == nil {
		next = http.DefaultTransport
	}
	g := &plainHTTPGuard{next: next, insecure: map[string]bool{}}
	for _, h := range insecure {
		n, err := normalizeHost(h)
		if err != nil {
			return nil, fmt.Errorf("--insecure-registry %q: %w", h, err)
		}
		g.insecure[n] = true
	}
	return g, nil
}

// RoundTrip implements http.RoundTripper.
func (g *plainHTTPGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	switch req.URL.Scheme {
	case "https":
	case "http":
		if !g.allowsPlain(req.URL.Host) {
			if req.Body != nil {
				_ = req.Body.Close()
			}
			return nil, fmt.Errorf("%w to %s: only loopback registries and those named with --insecure-registry may use http", ErrPlainHTTP, req.URL.Host)
		}
	default:
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("%w: unsupported URL scheme %q", ErrPlainHTTP, req.URL.Scheme)
	}
	return g.next.RoundTrip(req)
}

// allowsPlain reports whether hostport (a URL host, port optional) may be
// reached over plain http.
func (g *plainHTTPGuard) allowsPlain(hostport string) bool {
	hostport = strings.ToLower(hostport)
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if isLoopbackHost(host) {
		return true
	}
	return g.insecure[hostport] || g.insecure[host]
}

// isLoopbackHost reports whether host (no port) is localhost or a loopback IP.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// normalizeHost lowercases a HOST or HOST:PORT and strips IPv6 brackets from
// a bare host, refusing anything with a scheme or path.
func normalizeHost(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" || strings.ContainsAny(s, "/@ ") {
		return "", errors.New("want HOST or HOST:PORT")
	}
	if h, p, err := net.SplitHostPort(s); err == nil {
		if h == "" || p == "" {
			return "", errors.New("want HOST or HOST:PORT")
		}
		return net.JoinHostPort(h, p), nil
	}
	return strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), nil
}
