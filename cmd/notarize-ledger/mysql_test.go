package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/storage/mysql"
	"golang.org/x/mod/sumdb/note"
)

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "ledger.key")
	var stdout bytes.Buffer
	if err := run(t.Context(), []string{"keygen", "--origin", "ledger.example.com/notarize", "--out", out}, noEnv, &stdout, io.Discard, nil); err != nil {
		t.Fatal(err)
	}
	skey, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v (%v), want 0600", fi.Mode(), err)
	}
	vkey, err := os.ReadFile(out + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		t.Fatal(err)
	}
	if signer.Name() != "ledger.example.com/notarize" || verifier.Name() != signer.Name() || verifier.KeyHash() != signer.KeyHash() {
		t.Fatalf("key %s and verifier %s do not match", signer.Name(), verifier.Name())
	}
	if !strings.Contains(stdout.String(), strings.TrimSpace(string(vkey))) {
		t.Errorf("verifier key not printed:\n%s", stdout.String())
	}
	// Never overwrites a key.
	if err := run(t.Context(), []string{"keygen", "--origin", "other.example/x", "--out", out}, noEnv, io.Discard, io.Discard, nil); err == nil || !errors.Is(err, os.ErrExist) {
		t.Fatalf("keygen over an existing key: %v, want an error", err)
	}
	if again, _ := os.ReadFile(out); !bytes.Equal(again, skey) {
		t.Fatal("existing key changed")
	}
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no origin", []string{"keygen", "--out", filepath.Join(dir, "a")}, "usage"},
		{"no out", []string{"keygen", "--origin", "a.example/x"}, "usage"},
		{"bad origin", []string{"keygen", "--origin", "has space", "--out", filepath.Join(dir, "b")}, "origin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := run(t.Context(), tc.args, noEnv, io.Discard, io.Discard, nil)
			switch {
			case tc.wantErr == "usage" && !errors.Is(err, errUsage):
				t.Fatalf("got %v, want a usage error", err)
			case tc.wantErr != "usage" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("got %v, want an error mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func TestMySQLFlags(t *testing.T) {
	const dsn = "u:secret@tcp(127.0.0.1:1)/notarize"
	env := func(k string) string {
		if k == envMySQLDSN {
			return dsn
		}
		return ""
	}
	// Without the shared key, an instance refuses to start, saying how to make one.
	err := run(t.Context(), []string{"--storage", "mysql", "--mysql-dsn", dsn}, noEnv, io.Discard, io.Discard, nil)
	if !errors.Is(err, mysql.ErrNoSignerKey) || !strings.Contains(err.Error(), "keygen") {
		t.Fatalf("mysql without a key: %v, want ErrNoSignerKey", err)
	}
	err = run(t.Context(), []string{"--storage", "mysql"}, noEnv, io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "DSN is required") {
		t.Fatalf("mysql without a DSN: %v", err)
	}
	// The DSN from the environment, and an unreachable database: a clear error, no password.
	skey, _, err := ledger.NewSignerKey("cmd.example/mysql")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(keyFile, []byte(skey), 0o600); err != nil {
		t.Fatal(err)
	}
	err = run(t.Context(), []string{"--storage", "mysql", "--key-file", keyFile}, env, io.Discard, io.Discard, nil)
	if !errors.Is(err, ledger.ErrUnavailable) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("unreachable database: %v, want ErrUnavailable without the password", err)
	}
	err = run(t.Context(), []string{"--storage", "s3"}, noEnv, io.Discard, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "storage") {
		t.Fatalf("unknown storage: %v", err)
	}
}
