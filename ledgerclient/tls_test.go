package ledgerclient_test

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
)

// TestLedgerOverTLSWithPrivateCA: an https ledger whose certificate chains
// to a private CA is reached with that CA's file (NewHTTPClient), and
// refused without it; a CA file with no certificate is an error.
func TestLedgerOverTLSWithPrivateCA(t *testing.T) {
	srv := ledgertest.Start(t)
	tls := httptest.NewTLSServer(srv.Ledger().Handler())
	t.Cleanup(tls.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tls.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}

	system, err := ledgerclient.NewHTTPClient("")
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: tls.URL, Home: t.TempDir(), VerifierKey: srv.VerifierKey, HTTPClient: system})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pinned.Latest(t.Context()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("the system roots and a private CA's certificate: %v, want a certificate error", err)
	}
	c, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: tls.URL, Home: t.TempDir(), HTTPClient: mustClient(t, ca)})
	if err != nil {
		t.Fatalf("with the private CA: %v", err)
	}
	if _, err := c.Latest(t.Context()); err != nil {
		t.Fatalf("latest checkpoint over TLS: %v", err)
	}
	if c.VerifierKey() != srv.VerifierKey {
		t.Fatalf("pinned %q, want %q", c.VerifierKey(), srv.VerifierKey)
	}

	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ledgerclient.NewHTTPClient(empty); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("CA file without a certificate: %v", err)
	}
	if _, err := ledgerclient.NewHTTPClient(filepath.Join(t.TempDir(), "missing.pem")); err == nil {
		t.Fatal("a missing CA file was accepted")
	}
}

func mustClient(t *testing.T, ca string) *http.Client {
	t.Helper()
	c, err := ledgerclient.NewHTTPClient(ca)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
