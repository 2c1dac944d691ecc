package ledgerclient_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestPrivateCAKeepsSystemRoots: a CA file adds to the system's roots, it
// does not replace them (README: --ledger-ca), and the roots loaded in the
// background are in place before the first request: a server of the
// system's roots and one of the private CA are reached, one of neither is
// refused. The system roots are the child process's SSL_CERT_FILE.
func TestPrivateCAKeepsSystemRoots(t *testing.T) {
	if os.Getenv("NOTARIZE_TLS_CHILD") != "" {
		tlsChild(t)
		return
	}
	dir := t.TempDir()
	urls := map[string]string{}
	for _, name := range []string{"system", "private", "stranger"} {
		cert := selfSignedTLS(t, dir, name)
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) }))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		urls[name] = srv.URL
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run", "^TestPrivateCAKeepsSystemRoots$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(),
		"NOTARIZE_TLS_CHILD=1",
		"SSL_CERT_FILE="+filepath.Join(dir, "system.pem"),
		"SSL_CERT_DIR="+t.TempDir(),
		"TLS_PRIVATE_CA="+filepath.Join(dir, "private.pem"),
		"TLS_URL_SYSTEM="+urls["system"], "TLS_URL_PRIVATE="+urls["private"], "TLS_URL_STRANGER="+urls["stranger"])
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestPrivateCAKeepsSystemRoots") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func tlsChild(t *testing.T) {
	get := func(c *http.Client, url string) error {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	withCA, err := ledgerclient.NewHTTPClient(os.Getenv("TLS_PRIVATE_CA"))
	if err != nil {
		t.Fatal(err)
	}
	// The first request, at once: it must wait for the roots, not go out
	// with Go's defaults (which would refuse the private CA's server).
	if err := get(withCA, os.Getenv("TLS_URL_PRIVATE")); err != nil {
		t.Errorf("private CA's server with the CA file: %v", err)
	}
	if err := get(withCA, os.Getenv("TLS_URL_SYSTEM")); err != nil {
		t.Errorf("system roots' server with a CA file: %v", err)
	}
	if err := get(withCA, os.Getenv("TLS_URL_STRANGER")); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a server of neither with the CA file: %v, want a certificate error", err)
	}
	system, err := ledgerclient.NewHTTPClient("")
	if err != nil {
		t.Fatal(err)
	}
	if err := get(system, os.Getenv("TLS_URL_SYSTEM")); err != nil {
		t.Errorf("system roots' server without a CA file: %v", err)
	}
	if err := get(system, os.Getenv("TLS_URL_PRIVATE")); err == nil {
		t.Error("the private CA's server was reached without the CA file")
	}
	// A request whose context ends first fails with it, whether or not the
	// roots were loaded by then.
	late, err := ledgerclient.NewHTTPClient(os.Getenv("TLS_PRIVATE_CA"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, os.Getenv("TLS_URL_PRIVATE"), nil)
	if resp, err := late.Do(req); err == nil {
		resp.Body.Close()
		t.Error("a canceled request was sent")
	} else if !errors.Is(err, context.Canceled) {
		t.Errorf("canceled request: %v, want context.Canceled", err)
	}
}

// selfSignedTLS writes dir/name.pem, a self-signed CA certificate for
// 127.0.0.1, and returns it with its key for a server.
func selfSignedTLS(t *testing.T, dir, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, name+".pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
