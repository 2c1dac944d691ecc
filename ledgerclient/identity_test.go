package ledgerclient_test

import (
	"crypto"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/notarize/notarizetest"
)

// TestEnrolledIdentity: the client reads a key's enrolled identity from a
// real ledger with identities, and "none" for a key without one; an
// answer for another key, an invalid identity or an unknown member is an
// error, never an identity.
func TestEnrolledIdentity(t *testing.T) {
	s := notarizetest.NewSigner(t)
	pub, err := s.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	id, err := notarize.KeyID(pub)
	if err != nil {
		t.Fatal(err)
	}
	other := strings.Repeat("ab", 32)
	srv := ledgertest.Start(t, ledgertest.WithConfig(func(c *ledger.Config) {
		c.Signers = []crypto.PublicKey{pub}
		c.Identities = map[string]notarize.Identity{id: {Name: "release", Email: "release@example.com"}}
	}))
	c, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: srv.URL, Home: t.TempDir(), VerifierKey: srv.VerifierKey})
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := c.EnrolledIdentity(t.Context(), id)
	if err != nil || !ok || got != (notarize.Identity{Name: "release", Email: "release@example.com"}) {
		t.Fatalf("EnrolledIdentity = %+v, %v, %v", got, ok, err)
	}
	if _, ok, err := c.EnrolledIdentity(t.Context(), other); ok || err != nil {
		t.Fatalf("a key without identity: %v, %v", ok, err)
	}

	for name, body := range map[string]string{
		"another key":    `{"keyID":"` + other + `","name":"release"}`,
		"bad email":      `{"keyID":"` + id + `","name":"release","email":"Release <r@example.com>"}`,
		"control char":   `{"keyID":"` + id + `","name":"rel\u001b[2Jease"}`,
		"unknown member": `{"keyID":"` + id + `","name":"release","admin":true}`,
		"not JSON":       `{`,
		"honest":         `{"keyID":"` + id + `","name":"release"}`,
	} {
		t.Run(name, func(t *testing.T) {
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, api.PathKeyIdentitySuffix) {
					_, _ = io.WriteString(w, body)
					return
				}
				http.Redirect(w, r, srv.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
			}))
			t.Cleanup(front.Close)
			fc, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: front.URL, Home: t.TempDir(), VerifierKey: srv.VerifierKey})
			if err != nil {
				t.Skipf("client through the front: %v", err)
			}
			got, ok, err := fc.EnrolledIdentity(t.Context(), id)
			if name == "honest" {
				if err != nil || !ok || got.Name != "release" {
					t.Fatalf("honest answer through the front: %+v, %v, %v", got, ok, err)
				}
				return
			}
			if err == nil || ok {
				t.Fatalf("lying answer accepted: %+v, %v, %v", got, ok, err)
			}
		})
	}
}
