package upstream

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestIsNonPublic(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1", true}, {"127.8.9.10", true}, {"::1", true}, {"::ffff:127.0.0.1", true},
		{"10.1.2.3", true}, {"172.16.0.1", true}, {"192.168.1.1", true}, {"fd00::1", true},
		{"169.254.169.254", true}, {"fe80::1", true}, {"0.0.0.0", true}, {"::", true},
		{"100.64.0.1", true}, {"224.0.0.1", true}, {"255.255.255.255", true},
		{"64:ff9b::a00:1", true}, {"2002:a00:1::", true},
		{"8.8.8.8", false}, {"140.82.112.3", false}, {"2606:4700::1111", false}, {"::ffff:8.8.8.8", false},
	} {
		if got := IsNonPublic(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("IsNonPublic(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"localhost", true}, {"LOCALHOST", true}, {"x.localhost", true}, {"127.0.0.1", true}, {"[::1]", true},
		{"fe80::1%eth0", true}, {"10.0.0.1", true}, {"registry.test", false}, {"8.8.8.8", false},
	} {
		if got := hostIsNonPublic(tc.host); got != tc.want {
			t.Errorf("hostIsNonPublic(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
}

type mapResolver map[string][]string

func (m mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, a := range m[host] {
		out = append(out, netip.MustParseAddr(a))
	}
	if out == nil {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return out, nil
}

// TestDialGuard: a host other than the upstream's own is dialed only at an
// address the guard checked, whatever the name resolves to; the upstream's
// own host and its auth hosts are dialed as they resolve; a private
// upstream's guard checks nothing.
func TestDialGuard(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	res := mapResolver{"registry.test": {"127.0.0.1"}, "auth.test": {"127.0.0.1"}, "cdn.test": {"127.0.0.1"}, "mixed.test": {"10.0.0.1", "127.0.0.1"}}
	g := &dialGuard{dialer: &net.Dialer{Timeout: time.Second}, resolver: res,
		trusted: map[string]bool{net.JoinHostPort("registry.test", port): true, net.JoinHostPort("auth.test", port): true}}
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"registry.test", true}, {"auth.test", true},
		{"cdn.test", false}, {"mixed.test", false}, {"127.0.0.1", false}, {"[::1]", false}, {"unknown.test", false},
	} {
		c, err := g.DialContext(t.Context(), "tcp", net.JoinHostPort(strings.Trim(tc.host, "[]"), port))
		if c != nil {
			c.Close()
		}
		if (err == nil) != tc.ok {
			t.Errorf("dial %s: %v, want ok=%v", tc.host, err, tc.ok)
		}
		if !tc.ok && tc.host != "unknown.test" && !errors.Is(err, ErrPrivateAddress) {
			t.Errorf("dial %s: %v, want ErrPrivateAddress", tc.host, err)
		}
	}
	g.private = true
	c, err := g.DialContext(t.Context(), "tcp", net.JoinHostPort("cdn.test", port))
	if err != nil {
		t.Fatalf("private upstream: %v", err)
	}
	c.Close()
}

// TestRedirectPolicy: Do follows a redirect only to the upstream's own
// scheme and host; GetBlob also to another public host, never to a
// non-public literal unless the upstream is private.
func TestRedirectPolicy(t *testing.T) {
	pub, err := New(Config{Name: "hub", URL: "https://registry.example"})
	if err != nil {
		t.Fatal(err)
	}
	priv, err := New(Config{Name: "lan", URL: "http://127.0.0.1:5000"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		r       *Registry
		anyHost bool
		to      string
		ok      bool
	}{
		{pub, false, "https://registry.example/v2/x/manifests/y", true},
		{pub, false, "https://registry.example:443/v2/x", true},
		{pub, false, "http://registry.example/v2/x", false},
		{pub, false, "https://cdn.example/x", false},
		{pub, true, "https://cdn.example/x", true},
		{pub, true, "http://cdn.example/x", true},
		{pub, true, "ftp://cdn.example/x", false},
		{pub, true, "http://169.254.169.254/latest/meta-data/", false},
		{pub, true, "http://localhost:8080/x", false},
		{pub, true, "http://[::1]/x", false},
		{priv, true, "http://localhost:9000/x", true},
		{priv, false, "http://localhost:9000/x", false},
	} {
		req, _ := http.NewRequest(http.MethodGet, tc.to, nil)
		err := tc.r.redirectPolicy(tc.anyHost)(req, []*http.Request{{}})
		if (err == nil) != tc.ok {
			t.Errorf("%s anyHost=%v to %s: %v, want ok=%v", tc.r.Name(), tc.anyHost, tc.to, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrRedirectRefused) {
			t.Errorf("%s: %v is not ErrRedirectRefused", tc.to, err)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, "https://registry.example/v2/", nil)
	if err := pub.redirectPolicy(true)(req, make([]*http.Request, maxRedirects)); !errors.Is(err, ErrRedirectRefused) {
		t.Errorf("after %d redirects: %v", maxRedirects, err)
	}
}
