package plugin

import (
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLedgerCA: an https ledger whose certificate chains to a private CA is
// used with --ledger-ca FILE (or NOTARIZE_LEDGER_CA); without it the
// command cannot verify (exit 4), and a CA file without a certificate is a
// usage error (125) before any request.
func TestLedgerCA(t *testing.T) {
	h := newHarness(t, "alice")
	tls := httptest.NewTLSServer(h.ledger.Ledger().Handler())
	t.Cleanup(tls.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tls.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "artifact.txt")
	if err := os.WriteFile(file, []byte("release 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := h.run("verify", "--ledger", tls.URL, "file:"+file)
	if code != ExitCouldNotVerify || !strings.Contains(errOut, "certificate") {
		t.Fatalf("without --ledger-ca: exit %d, %q; want 4 and a certificate error", code, errOut)
	}
	h.mustRun(0, "sign", "--ledger", tls.URL, "--ledger-ca", ca, "file:"+file)
	h.mustRun(0, "verify", "--ledger", tls.URL, "--ledger-ca", ca, "file:"+file)

	bad := filepath.Join(t.TempDir(), "bad.pem")
	if err := os.WriteFile(bad, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := h.run("verify", "--ledger", tls.URL, "--ledger-ca", bad, "file:"+file); code != ExitUsage || !strings.Contains(errOut, "--ledger-ca") {
		t.Fatalf("bad CA file: exit %d, %q; want 125 naming --ledger-ca", code, errOut)
	}
}
