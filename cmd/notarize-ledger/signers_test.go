package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/notarize/docker-notarize/notarize"
)

// TestSignersFlagYAML: --signers takes a YAML identities file (keys by
// path relative to the file) as well as PEM keys, and a bad one is an
// error naming the file.
func TestSignersFlagYAML(t *testing.T) {
	dir := t.TempDir()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "keys", "release.pub"), pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	id, _ := notarize.KeyID(priv.Public())
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	load := func(path string) (int, map[string]notarize.Identity, error) {
		o, err := parseFlags([]string{"--signers", path, "--data", t.TempDir()}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config(o, func(string) string { return "" }, slog.New(slog.DiscardHandler))
		return len(cfg.Signers), cfg.Identities, err
	}
	n, ids, err := load(write("signers.yaml", "signers:\n  release-bot:\n    email: release@example.com\n    keys: [keys/release.pub]\n"))
	if err != nil || n != 1 || ids[id] != (notarize.Identity{Name: "release-bot", Email: "release@example.com"}) {
		t.Fatalf("YAML: %d keys, %v, %v", n, ids, err)
	}
	n, ids, err = load(write("signers.pem", string(pemBytes)))
	if err != nil || n != 1 || len(ids) != 0 {
		t.Fatalf("PEM: %d keys, %v, %v", n, ids, err)
	}
	bad := write("bad.yaml", "signers:\n  release-bot:\n    email: Release <release@example.com>\n    keys: [keys/release.pub]\n")
	if _, _, err := load(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "email") {
		t.Fatalf("bad file: %v", err)
	}
}

// TestExampleSignersFile: examples/signers.yaml loads as the ledger loads
// it, enrolling its keys with their identities.
func TestExampleSignersFile(t *testing.T) {
	path := filepath.Join("..", "..", "examples", "signers.yaml")
	o, err := parseFlags([]string{"--signers", path, "--data", t.TempDir()}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config(o, func(string) string { return "" }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Signers) != 2 || len(cfg.Identities) != 2 {
		t.Fatalf("%d keys, identities %v", len(cfg.Signers), cfg.Identities)
	}
	names := map[string]string{}
	for _, id := range cfg.Identities {
		names[id.Name] = id.Email
	}
	if names["release"] != "release@example.com" || names["security"] != "security@example.com" {
		t.Fatalf("identities %v", cfg.Identities)
	}
}
