package plugin

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// writeFile writes b to a new file in a temp dir and returns its path.
func writeTestFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKeyImport(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	alicePub, err := os.ReadFile(filepath.Join("testdata", "keys", "alice.pub"))
	if err != nil {
		t.Fatal(err)
	}
	path := writeTestFile(t, "alice.pub", alicePub)
	out := h.mustRun(0, "key", "import", "alice", path)
	if !strings.Contains(out, "Imported key alice") || !strings.Contains(out, "cannot sign") {
		t.Fatalf("key import output:\n%s", out)
	}
	// The key is in the store: export gives it back, verify accepts it by name.
	if got := h.mustRun(0, "key", "export", "alice"); got != string(alicePub) {
		t.Fatalf("export after import:\n%s\nwant:\n%s", got, alicePub)
	}
	list := h.mustRun(0, "key", "list")
	if !strings.Contains(list, "alice") {
		t.Fatalf("key list after import:\n%s", list)
	}
	// Signing with a public-only key is a clear error, not a missing file.
	_, errOut, code := h.run("sign", "--key", "alice", "file:"+path)
	if code == 0 || !strings.Contains(errOut, "alice") || !strings.Contains(errOut, "cannot sign") {
		t.Fatalf("sign with an imported key: exit %d, stderr:\n%s", code, errOut)
	}
}

func TestKeyImportRefuses(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	alicePub, err := os.ReadFile(filepath.Join("testdata", "keys", "alice.pub"))
	if err != nil {
		t.Fatal(err)
	}
	bobPub, err := os.ReadFile(filepath.Join("testdata", "keys", "bob.pub"))
	if err != nil {
		t.Fatal(err)
	}
	aliceKey, err := os.ReadFile(filepath.Join("testdata", "keys", "alice.key"))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	plainPriv := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	ecDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	ecPriv := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})
	newPub, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, key string
		file      []byte
		code      int
		want      string
	}{
		{"encrypted private key", "carol", aliceKey, ExitUsage, "private key"},
		{"plain PKCS#8 private key", "carol", plainPriv, ExitUsage, "private key"},
		{"EC private key", "carol", ecPriv, ExitUsage, "private key"},
		{"public key followed by its private key", "carol", append(append([]byte{}, newPub...), plainPriv...), ExitUsage, "also holds a private key"},
		{"two public keys", "carol", append(append([]byte{}, newPub...), bobPub...), ExitUsage, "more than one PEM block"},
		{"not PEM", "carol", []byte("ssh-ed25519 AAAA alice@laptop\n"), ExitUsage, "no PEM block"},
		{"certificate", "carol", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), ExitUsage, "CERTIFICATE"},
		{"name taken", "alice", bobPub, ExitError, "already exists"},
		{"key stored under another name", "alice2", alicePub, ExitError, `under another name: "alice"`},
		{"bad name", "../alice", newPub, ExitUsage, "bad key name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeTestFile(t, "key.pem", tc.file)
			_, errOut, code := h.run("key", "import", tc.key, path)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Fatalf("key import %s: exit %d, want %d with %q; stderr:\n%s", tc.key, code, tc.code, tc.want, errOut)
			}
			if tc.key != "alice" {
				if _, err := os.Lstat(filepath.Join(h.home, "keys", tc.key+".pub")); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("a refused import left %s.pub behind (%v)", tc.key, err)
				}
			}
		})
	}
	// alice's files are untouched.
	got, err := os.ReadFile(filepath.Join(h.home, "keys", "alice.pub"))
	if err != nil || string(got) != string(alicePub) {
		t.Fatalf("alice.pub changed after refused imports: %v", err)
	}
}

func TestKeyStoreImportNormalises(t *testing.T) {
	t.Parallel()
	ks := NewKeyStore(t.TempDir())
	alicePub, err := os.ReadFile(filepath.Join("testdata", "keys", "alice.pub"))
	if err != nil {
		t.Fatal(err)
	}
	// Surrounding blank lines are fine; the stored file is the canonical PEM.
	k, err := ks.Import("alice", append(append([]byte("\n\n"), alicePub...), '\n', '\n'))
	if err != nil {
		t.Fatal(err)
	}
	if k.Provider != "" {
		t.Fatalf("imported key provider = %q, want none (public only)", k.Provider)
	}
	got, err := ks.Public("alice")
	if err != nil || string(got.PEM) != string(alicePub) {
		t.Fatalf("stored %q, %v; want %q", got.PEM, err, alicePub)
	}
	if _, err := ks.ResolveSigner("alice"); !errors.Is(err, ErrPublicOnly) {
		t.Fatalf("ResolveSigner of an imported key: %v, want ErrPublicOnly", err)
	}
}
