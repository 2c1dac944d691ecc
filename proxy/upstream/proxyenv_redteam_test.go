package upstream

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/notarize/docker-notarize/notarize"
)

// Red team: the redirect guard when the operator routes egress through an
// HTTP proxy (HTTP_PROXY / HTTPS_PROXY, which the default transport
// honours). The dial guard checks the address it connects to, which is
// then the proxy's, trusted; the redirect target's name is resolved by the
// egress proxy, never checked. A public upstream that redirects a blob to
// a name resolving to the cloud metadata address (or any internal one)
// gets the proxy to send that request through the egress proxy, which
// reaches it. (The answer is then refused for its digest: a blind SSRF.)
//
// net/http reads the proxy environment once per process, so the attack
// runs in a child test process with the environment set.
func TestRedTeamBlobRedirectThroughEnvProxy(t *testing.T) {
	if os.Getenv("REDTEAM_ENVPROXY_CHILD") == "" {
		var seen []string
		var mu sync.Mutex
		egress := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.Method+" "+r.URL.String())
			mu.Unlock()
			_, _ = w.Write([]byte("instance credentials"))
		}))
		defer egress.Close()
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestRedTeamBlobRedirectThroughEnvProxy$", "-test.count=1")
		cmd.Env = append(os.Environ(), "REDTEAM_ENVPROXY_CHILD=1", "HTTP_PROXY="+egress.URL, "HTTPS_PROXY="+egress.URL,
			"http_proxy="+egress.URL, "https_proxy="+egress.URL, "NO_PROXY=registry.test", "no_proxy=registry.test")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		mu.Lock()
		defer mu.Unlock()
		cdn := false
		for _, s := range seen {
			if strings.Contains(s, "meta.test") {
				t.Errorf("BYPASS: a blob redirect to a host that resolves to 169.254.169.254 went out through the egress proxy: %s", s)
			}
			cdn = cdn || strings.Contains(s, "cdn.test")
		}
		if !cdn {
			t.Errorf("a blob redirect to a public host did not go out through the egress proxy: %q", seen)
		}
		return
	}
	// Child: a public upstream by name (registry.test, resolved to loopback
	// by the test resolver only for its own host) redirecting a blob.
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/cdn/blobs/") { // a public CDN: followed, through the egress proxy
			http.Redirect(w, r, "http://cdn.test/blob", http.StatusTemporaryRedirect)
			return
		}
		if strings.Contains(r.URL.Path, "/blobs/") {
			http.Redirect(w, r, "http://meta.test/latest/meta-data/iam/security-credentials/", http.StatusTemporaryRedirect)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer reg.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(reg.URL, "http://"))
	res := mapResolver{"registry.test": {"127.0.0.1"}, "meta.test": {"169.254.169.254"}, "cdn.test": {"203.0.113.10"}}
	r, err := New(Config{Name: "far", URL: "http://registry.test:" + port, Insecure: true, Resolver: res, Keychain: authn.NewMultiKeychain()})
	if err != nil {
		t.Fatal(err)
	}
	if r.private {
		t.Fatal("the upstream must be public for this attack")
	}
	resp, err := r.GetBlob(t.Context(), http.MethodGet, "app", notarize.DigestOf([]byte("x")))
	if err == nil {
		resp.Body.Close()
	}
	t.Logf("GetBlob: %v", err)
	if !errors.Is(err, ErrPrivateAddress) {
		t.Errorf("a blob redirect through the egress proxy to a name resolving to 169.254.169.254: %v, want ErrPrivateAddress", err)
	}
	resp, err = r.GetBlob(t.Context(), http.MethodGet, "cdn", notarize.DigestOf([]byte("x")))
	if err != nil {
		t.Errorf("a blob redirect through the egress proxy to a public name: %v", err)
	} else {
		resp.Body.Close()
	}
}

// TestCheckProxied: a request that goes through the environment's proxy is
// checked before it is sent: the upstream's own host and its auth hosts
// pass as they resolve, any other host must resolve to public addresses
// only (every one of them, and it must resolve), and nothing is checked
// for an upstream on a private network.
func TestCheckProxied(t *testing.T) {
	res := mapResolver{"registry.test": {"10.0.0.5"}, "auth.test": {"127.0.0.1"}, "cdn.test": {"203.0.113.10", "2001:4860::1"},
		"meta.test": {"169.254.169.254"}, "mixed.test": {"203.0.113.10", "10.0.0.1"}, "v6.test": {"fd00::1"}}
	g := &dialGuard{resolver: res, trusted: map[string]bool{"registry.test:443": true, "auth.test:443": true}}
	private := &dialGuard{resolver: res, private: true}
	for _, tc := range []struct {
		url         string
		ok, private bool // private: refused with ErrPrivateAddress (else with a lookup error)
	}{
		{"https://registry.test/v2/", true, false},
		{"https://auth.test/token", true, false},
		{"https://cdn.test/blob", true, false},
		{"http://meta.test/latest/", false, true},
		{"https://mixed.test/blob", false, true},
		{"https://v6.test/blob", false, true},
		{"https://10.1.2.3/blob", false, true},
		{"https://[::1]:8443/blob", false, true},
		{"https://unknown.test/blob", false, false},
		{"https://registry.test:8443/v2/", false, true}, // another port is another host
	} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, tc.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = g.checkProxied(req)
		if (err == nil) != tc.ok || !tc.ok && errors.Is(err, ErrPrivateAddress) != tc.private {
			t.Errorf("%s: %v, want ok=%v private=%v", tc.url, err, tc.ok, tc.private)
		}
		if err := private.checkProxied(req); err != nil {
			t.Errorf("%s for a private upstream: %v", tc.url, err)
		}
	}
}
