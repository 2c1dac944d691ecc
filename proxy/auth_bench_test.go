package proxy_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy"
	"github.com/notarize/docker-notarize/proxy/replica"
	"github.com/notarize/docker-notarize/proxy/upstream"
)

// noRecords is a TrustSource for benchmarks that never reach a decision.
type noRecords struct{}

func (noRecords) Records(context.Context, notarize.Digest) ([]notarize.Record, error) {
	return nil, nil
}
func (noRecords) RecordsBy(context.Context, notarize.Digest, []string) ([]notarize.Record, error) {
	return nil, nil
}
func (noRecords) Refresh(context.Context) error                           { return nil }
func (noRecords) Fresh() error                                            { return nil }
func (noRecords) Status() replica.Status                                  { return replica.Status{} }
func (noRecords) Witnesses() replica.WitnessHealth                        { return replica.WitnessHealth{} }
func (noRecords) Tallies([]string) ([]replica.Tally, error)               { return nil, nil }
func (noRecords) Revocations([]string, int) ([]replica.Revocation, error) { return nil, nil }
func (noRecords) History(notarize.Digest, func(string) bool, int) ([]notarize.Record, int, error) {
	return nil, 0, nil
}

// BenchmarkAuthCost is what client authentication adds to each request:
// GET /v2/ (no upstream, no decision) with auth off, htpasswd entries of
// bcrypt cost 5 (htpasswd -B's default) and 10 (Go's default), and a bearer
// token checked against a CA. A token is verified on every request; an
// htpasswd credential once a minute (credentialCache), the first request
// paying bcrypt.
//
//	go test -run '^$' -bench AuthCost ./proxy/
func BenchmarkAuthCost(b *testing.B) {
	dir := b.TempDir()
	writeKey(b, filepath.Join(dir, "release.pub"), newSigner(b))
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("signers: {release: {keys: [release.pub]}}\nrules: [{match: '**', mode: off}]\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	ev, err := proxy.LoadPolicy(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	issuer := newTokenIssuer(b, "bench-issuer")
	bundle := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(bundle, issuer.CAPEM, 0o600); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	token := issuer.Sign(b, tokenClaims{Issuer: "bench-issuer", Subject: "alice", Audience: "proxy",
		Expiration: now.Add(time.Hour).Unix(), NotBefore: now.Add(-time.Minute).Unix(), IssuedAt: now.Unix()})
	htpasswd := func(cost int) proxy.AuthConfig {
		h, err := bcrypt.GenerateFromPassword([]byte("pw"), cost)
		if err != nil {
			b.Fatal(err)
		}
		p := filepath.Join(dir, fmt.Sprintf("htpasswd-%d", cost))
		if err := os.WriteFile(p, append([]byte("alice:"), h...), 0o600); err != nil {
			b.Fatal(err)
		}
		return proxy.AuthConfig{Htpasswd: &proxy.HtpasswdAuth{Path: p}}
	}
	for _, tc := range []struct {
		name string
		auth proxy.AuthConfig
		set  func(*http.Request)
	}{
		{"off", proxy.AuthConfig{}, func(*http.Request) {}},
		{"htpasswd-cost5", htpasswd(5), func(r *http.Request) { r.SetBasicAuth("alice", "pw") }},
		{"htpasswd-cost10", htpasswd(10), func(r *http.Request) { r.SetBasicAuth("alice", "pw") }},
		{"token", proxy.AuthConfig{Token: &proxy.TokenAuth{Realm: "https://auth/token", Service: "proxy", Issuer: "bench-issuer", RootCertBundle: bundle}},
			func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srv, err := proxy.New(proxy.Config{DataDir: b.TempDir(), Policy: ev, Trust: noRecords{}, Auth: tc.auth,
				Upstreams: []upstream.Config{{Name: "local", URL: "http://127.0.0.1:1", Keychain: anonymous()}}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = srv.Close(context.Background()) })
			hs := httptest.NewServer(srv.Handler())
			b.Cleanup(hs.Close)
			req, _ := http.NewRequest(http.MethodGet, hs.URL+"/v2/", nil)
			tc.set(req)
			for b.Loop() {
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("HTTP %d", resp.StatusCode)
				}
			}
		})
	}
}
