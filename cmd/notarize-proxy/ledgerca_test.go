package main

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// TestServeLedgerCA: the proxy follows an https ledger whose certificate
// chains to a private CA given with --ledger-ca; without it the replica
// cannot verify anything and /healthz says so.
func TestServeLedgerCA(t *testing.T) {
	s := newStack(t, offPolicy)
	tls := httptest.NewTLSServer(s.ledger.Ledger().Handler())
	t.Cleanup(tls.Close)
	ca := filepath.Join(s.dir, "ledger-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tls.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	base := s.start(t, s.args("--ledger", tls.URL, "--ledger-ca", ca))
	waitHealth(t, base, http.StatusOK, "ok")

	other := newStack(t, offPolicy)
	other.ledger = s.ledger
	base = other.start(t, other.args("--ledger", tls.URL))
	waitHealth(t, base, http.StatusServiceUnavailable, "certificate")
}
