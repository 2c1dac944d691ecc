package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/internal/testutil"

	"golang.org/x/mod/sumdb/note"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/witnesstest"
)

// testCA makes a CA and a server certificate for 127.0.0.1 it issued, in
// dir; it returns the files and a pool holding the CA.
func testCA(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "notarize test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "ledger"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "ledger.crt"), filepath.Join(dir, "ledger.key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return certFile, keyFile, pool
}

// startRun runs the command with args and the signer key in the
// environment until the test ends, and returns the URL it prints.
func startRun(t *testing.T, skey string, args ...string) (string, *testutil.SyncBuffer) {
	t.Helper()
	env := func(k string) string {
		if k == envSignerKey {
			return skey
		}
		return ""
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	var stdout, stderr testutil.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, env, &stdout, &stderr, nil) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(40 * time.Second):
			t.Error("run did not return after cancel")
		}
	})
	urlRE := regexp.MustCompile(`serving (https?://127\.0\.0\.1:\d+)`)
	for deadline := time.Now().Add(20 * time.Second); ; {
		if m := urlRE.FindStringSubmatch(stdout.String()); m != nil {
			return m[1], &stdout
		}
		select {
		case err := <-done:
			done <- err
			t.Fatalf("run returned early: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no URL printed:\n%s\n%s", stdout.String(), stderr.String())
		}
	}
}

// TestRunTLSWitnessed runs notarize-ledger with --tls-cert/--tls-key and
// a 2-of-2 --witness-policy against real omniwitness processes: it serves
// HTTPS only (a client that does not trust the CA, or speaks plain HTTP,
// gets nothing), and /checkpoint carries both witnesses' cosignatures.
func TestRunTLSWitnessed(t *testing.T) {
	dir := t.TempDir()
	const origin = "cmd.example/witnessed-ledger"
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	ws := witnesstest.StartN(t, 2, origin, vkey)
	policy := filepath.Join(dir, "witnesses.policy")
	if err := os.WriteFile(policy, witnesstest.Policy(2, ws...), 0o644); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, pool := testCA(t, dir)
	url, stdout := startRun(t, skey, "--addr", "127.0.0.1:0", "--data", filepath.Join(dir, "data"),
		"--tls-cert", certFile, "--tls-key", keyFile, "--witness-policy", policy,
		"--checkpoint-republish-interval", "1s")
	if !strings.HasPrefix(url, "https://") || !strings.Contains(stdout.String(), "witnessed:") {
		t.Fatalf("not serving witnessed HTTPS:\n%s", stdout.String())
	}
	trusting := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := trusting.Get(url + "/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	cp, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /checkpoint: %d, %v", resp.StatusCode, err)
	}
	if got, _, err := witnesstest.Cosigners(cp, ws...); err != nil || len(got) != 2 {
		t.Fatalf("checkpoint cosigned by %v (%v), want both witnesses:\n%s", got, err, cp)
	}

	if _, err := http.Get(url + api.PathInfo); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client that does not trust the CA: %v, want a certificate error", err)
	}
	plain := "http://" + strings.TrimPrefix(url, "https://")
	if resp, err := http.Get(plain + api.PathInfo); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP answered 200 on the HTTPS port")
		}
	}
}

// TestRunRefusesBadWitnessAndTLSFlags: half a TLS pair, an unreadable
// certificate, and a witness policy that is missing or unreadable by
// Tessera stop the command before it serves.
func TestRunRefusesBadWitnessAndTLSFlags(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("witness w1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"cert without key", []string{"--tls-cert", garbage}, "go together"},
		{"key without cert", []string{"--tls-key", garbage}, "go together"},
		{"unreadable pair", []string{"--tls-cert", garbage, "--tls-key", garbage}, "--tls-cert"},
		{"missing policy", []string{"--witness-policy", filepath.Join(dir, "missing")}, "--witness-policy"},
		{"bad policy", []string{"--witness-policy", garbage}, "witness policy"},
		{"republish below checkpoint interval", []string{"--checkpoint-republish-interval", "10ms"}, "CheckpointRepublishInterval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--data", filepath.Join(dir, "data"), "--addr", "127.0.0.1:0"}, tc.args...)
			err := run(t.Context(), args, noEnv, io.Discard, io.Discard, nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.wantErr)
			}
		})
	}
}
