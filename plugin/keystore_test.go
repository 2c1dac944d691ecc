package plugin

import (
	"context"
	"crypto/elliptic"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

func TestValidateKeyName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"ci-bot_2.prod", true},
		{"A1", true},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{"", false},
		{".hidden", false},
		{"-flag", false},
		{"../etc", false},
		{"a/b", false},
		{`a\b`, false},
		{"a b", false},
		{"ålice", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateKeyName(tc.name)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidateKeyName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrBadKeyName) {
				t.Fatalf("error %v is not ErrBadKeyName", err)
			}
		})
	}
}

func TestKeyStoreGenerateListSign(t *testing.T) {
	t.Parallel() // scrypt makes key generation and decryption slow
	ks := NewKeyStore(t.TempDir())
	keys, err := ks.List()
	if err != nil || len(keys) != 0 {
		t.Fatalf("List on a missing store = %v, %v; want empty", keys, err)
	}
	k, err := ks.Generate("alice", []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}

	privPath := filepath.Join(ks.Dir, "alice.key")
	fi, err := os.Stat(privPath)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("private key mode %o, want 600", perm)
	}
	if fi, err := os.Stat(ks.Dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("key dir: %v, mode %o; want 700", err, fi.Mode().Perm())
	}
	privPEM, err := os.ReadFile(privPath)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(privPEM); b == nil || b.Type != string(cryptoutils.EncryptedSigstorePrivateKeyPEMType) {
		t.Fatalf("private key PEM is not %q", cryptoutils.EncryptedSigstorePrivateKeyPEMType)
	}
	leftovers, _ := filepath.Glob(filepath.Join(ks.Dir, ".*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}

	if _, err := ks.Generate("alice", []byte("other")); !errors.Is(err, ErrKeyExists) {
		t.Fatalf("second Generate: %v, want ErrKeyExists", err)
	}
	if again, err := os.ReadFile(privPath); err != nil || string(again) != string(privPEM) {
		t.Fatal("second Generate touched the existing key")
	}

	// List reads the public halves only; a second entry needs no key generation.
	if err := os.WriteFile(filepath.Join(ks.Dir, "bob.pub"), k.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ks.Dir, "not a key name.pub"), k.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	keys, err = ks.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].Name != "alice" || keys[1].Name != "bob" {
		t.Fatalf("List = %+v, want alice and bob", keys)
	}
	if keys[0].KeyID != k.KeyID {
		t.Errorf("List key ID %s, Generate said %s", keys[0].KeyID, k.KeyID)
	}
	id, err := notarize.KeyID(k.PublicKey)
	if err != nil || id != k.KeyID {
		t.Errorf("KeyID %s, notarize.KeyID %s (%v)", k.KeyID, id, err)
	}

	pemBytes, name, err := ks.ResolvePrivate("alice")
	if err != nil || name != "alice" {
		t.Fatalf("ResolvePrivate = %q, %v", name, err)
	}
	if _, err := LoadSigner(pemBytes, []byte("wrong")); err == nil {
		t.Fatal("LoadSigner with the wrong password succeeded")
	}
	signer, err := LoadSigner(pemBytes, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	st := notarize.NewStatement(notarize.DigestOf([]byte("x")), "x", notarize.Predicate{Status: notarize.StatusTrusted, Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
	e, err := notarize.Sign(context.Background(), signer, st)
	if err != nil {
		t.Fatal(err)
	}
	v, err := e.Verify()
	if err != nil || v.KeyID != k.KeyID {
		t.Fatalf("Verify = %v, key %s; want key %s", err, v.KeyID, k.KeyID)
	}
}

func TestKeyStoreResolve(t *testing.T) {
	ks := NewKeyStore(t.TempDir())
	if err := os.MkdirAll(ks.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	pubPEM, err := os.ReadFile(filepath.Join("testdata", "keys", "alice.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ks.Dir, "alice.pub"), pubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := ks.Public("alice")
	if err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "carol.pub")
	if err := os.WriteFile(outside, k.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(t.TempDir(), "garbage.pub")
	if err := os.WriteFile(garbage, []byte("not a key"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ref      string
		wantName string
		wantErr  error
	}{
		{ref: "alice", wantName: "alice"},
		{ref: outside, wantName: "carol"},
		{ref: "carol.pub", wantErr: ErrKeyNotFound},
		{ref: "nobody", wantErr: ErrKeyNotFound},
		{ref: "../alice", wantErr: os.ErrNotExist},
		{ref: "a b", wantErr: ErrBadKeyName},
		{ref: garbage, wantErr: notarize.ErrBadSignature},
		{ref: filepath.Join(t.TempDir(), "missing.pub"), wantErr: os.ErrNotExist},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			got, err := ks.ResolvePublic(tc.ref)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("ResolvePublic(%q) = %v, want %v", tc.ref, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != tc.wantName || got.KeyID != k.KeyID {
				t.Fatalf("ResolvePublic(%q) = %s %s, want %s %s", tc.ref, got.Name, got.KeyID, tc.wantName, k.KeyID)
			}
		})
	}
}

func TestLoadSignerRefusesUnencryptedKey(t *testing.T) {
	priv, _, err := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigner(priv, nil); !errors.Is(err, ErrKeyNotEncrypted) {
		t.Fatalf("LoadSigner(unencrypted) = %v, want ErrKeyNotEncrypted", err)
	}
	if _, err := LoadSigner([]byte("junk"), nil); err == nil {
		t.Fatal("LoadSigner(junk) succeeded")
	}
}
