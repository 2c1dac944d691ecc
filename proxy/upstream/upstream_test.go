package upstream

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{Name: "docker.io", URL: "https://registry-1.docker.io"}, true},
		{Config{Name: "local", URL: "http://127.0.0.1:5000"}, true},
		{Config{Name: "local", URL: "http://localhost:5000"}, true},
		{Config{Name: "local", URL: "http://[::1]:5000"}, true},
		{Config{Name: "lan", URL: "http://10.0.0.5:5000"}, false},
		{Config{Name: "lan", URL: "http://10.0.0.5:5000", Insecure: true}, true},
		{Config{Name: "x", URL: "ftp://example.com"}, false},
		{Config{Name: "x", URL: "https://user:pw@example.com"}, false},
		{Config{Name: "x", URL: "https://example.com/some/path"}, false},
		{Config{Name: "x", URL: "https://example.com?q=1"}, false},
		{Config{Name: "", URL: "https://example.com"}, false},
		{Config{Name: "a/b", URL: "https://example.com"}, false},
		{Config{Name: "x", URL: "https://"}, false},
	} {
		t.Run(tc.cfg.Name+" "+tc.cfg.URL, func(t *testing.T) {
			if err := tc.cfg.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

type captureRT struct{ got *http.Request }

func (c *captureRT) RoundTrip(r *http.Request) (*http.Response, error) {
	c.got = r
	return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("")), Header: http.Header{}}, nil
}

func TestCredentialGuard(t *testing.T) {
	for _, tc := range []struct {
		name, upstream, url string
		authHosts           []string
		keep                bool
		refused             bool
	}{
		{"own host", "https://ghcr.io", "https://ghcr.io/v2/x", nil, true, false},
		{"own host, explicit port", "https://ghcr.io", "https://ghcr.io:443/token", nil, true, false},
		{"other host", "https://ghcr.io", "https://evil.example/token", nil, false, false},
		{"same name, other port", "https://ghcr.io", "https://ghcr.io:8443/token", nil, false, false},
		{"configured auth host", "https://registry.gitlab.com", "https://gitlab.com/jwt/auth", []string{"gitlab.com"}, true, false},
		{"docker hub token host", "https://registry-1.docker.io", "https://auth.docker.io/token", nil, true, false},
		{"docker hub CDN", "https://registry-1.docker.io", "https://production.cloudflare.docker.com/x", nil, false, false},
		{"scheme downgrade to own host", "https://ghcr.io", "http://ghcr.io/v2/", nil, false, true},
		{"https to an http upstream", "http://127.0.0.1:5000", "https://127.0.0.1:5000/v2/", nil, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &captureRT{}
			r, err := New(Config{Name: "u", URL: tc.upstream, AuthHosts: tc.authHosts, Transport: rt})
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
			req.Header.Set("Authorization", "Basic c2VjcmV0")
			_, err = r.rt.RoundTrip(req)

			// An OAuth2 token request carries the refresh token in its body:
			// it may go only where the credentials may go.
			post := &captureRT{}
			pr, err2 := New(Config{Name: "u", URL: tc.upstream, AuthHosts: tc.authHosts, Transport: post})
			if err2 != nil {
				t.Fatal(err2)
			}
			preq, _ := http.NewRequest(http.MethodPost, tc.url, strings.NewReader("grant_type=refresh_token&refresh_token=secret"))
			_, perr := pr.rt.RoundTrip(preq)
			if sent := perr == nil && post.got != nil; sent != (tc.keep && !tc.refused) {
				t.Fatalf("POST sent = %v (err %v), want %v", sent, perr, tc.keep && !tc.refused)
			}

			if tc.refused {
				if err == nil || rt.got != nil {
					t.Fatalf("request sent: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if kept := rt.got.Header.Get("Authorization") != ""; kept != tc.keep {
				t.Fatalf("Authorization kept = %v, want %v", kept, tc.keep)
			}
			if req.Header.Get("Authorization") == "" {
				t.Fatal("the caller's request was modified")
			}
		})
	}
}
