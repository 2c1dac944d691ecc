package ledger

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/storage/posix"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"golang.org/x/mod/sumdb/note"
)

func TestConfigValidate(t *testing.T) {
	skey, _, err := note.GenerateKey(rand.Reader, "example.com/log")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"minimal", Config{}, ""},
		{"everything", Config{Origin: "example.com/log", NoteSignerKey: skey, Signers: []crypto.PublicKey{newTestSigner(t).pub},
			MaxFutureSkew: time.Minute, BatchMaxAge: time.Millisecond, CheckpointInterval: time.Second}, ""},
		{"origin with space", Config{Origin: "a b"}, "origin"},
		{"origin with plus", Config{Origin: "a+b"}, "origin"},
		{"bad note key", Config{NoteSignerKey: "PRIVATE+KEY+nope"}, "note signer key"},
		{"negative skew", Config{MaxFutureSkew: -time.Second}, "MaxFutureSkew"},
		{"negative batch age", Config{BatchMaxAge: -time.Second}, "BatchMaxAge"},
		{"negative key tables", Config{KeyTables: -1}, "KeyTables"},
		{"more key tables than keys held", Config{KeyTables: notarize.DefaultKeyCacheSize + 1}, "KeyTables"},
		{"checkpoint too often", Config{CheckpointInterval: 10 * time.Millisecond}, "CheckpointInterval"},
		{"unusable signer key", Config{Signers: []crypto.PublicKey{"not a key"}}, "signer 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseSigners(t *testing.T) {
	pemOf := func(pub crypto.PublicKey) string {
		b, err := cryptoutils.MarshalPublicKeyToPEM(pub)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	a, b := newTestSigner(t), newTestSigner(t)
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		in      string
		want    int
		wantErr bool
	}{
		{"one", pemOf(a.pub), 1, false},
		{"two with comments", "# team\n" + pemOf(a.pub) + "\n# ci\n" + pemOf(b.pub), 2, false},
		{"empty", "", 0, true},
		{"no PEM", "hello", 0, true},
		{"private key block", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})), 0, true},
		{"garbage key", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}})), 0, true},
		{"unsupported curve", pemOf(p224.Public()), 0, true},
		{"weak RSA", pemOf(rsa1024.Public()), 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := ParseSigners([]byte(tc.in))
			if (err != nil) != tc.wantErr || len(keys) != tc.want {
				t.Fatalf("got %d keys, err %v; want %d keys, error %v", len(keys), err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestIdentity checks the note key and origin: generated and persisted on
// first start, and refused when a later start disagrees with them.
func TestIdentity(t *testing.T) {
	dir := t.TempDir()
	tl := startLedgerIn(t, dir, Config{Origin: "example.com/ledger"})
	origin, vkey := tl.Origin(), tl.VerifierKey()
	if origin != "example.com/ledger" || !strings.HasPrefix(vkey, origin+"+") {
		t.Fatalf("origin %q verifier key %q", origin, vkey)
	}
	fi, err := os.Stat(filepath.Join(dir, posix.KeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, mode %v; want 0600", posix.KeyFile, err, fi.Mode())
	}
	skey, err := os.ReadFile(filepath.Join(dir, posix.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	// Submit something so there is a signed, non-empty checkpoint.
	s := newTestSigner(t)
	tl.submit(t, s.sign(t, randomDigest(t), "trusted", time.Now()), 201)

	t.Run("second process on the same dir", func(t *testing.T) {
		_, err := openPOSIX(t, dir, Config{})
		if err == nil || !strings.Contains(err.Error(), "in use") {
			t.Fatalf("got %v, want the data dir to be in use", err)
		}
	})
	tl.close(t)

	otherKey, _, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	renamedKey, _, err := note.GenerateKey(rand.Reader, "other.example/ledger")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"another origin", Config{Origin: "other.example/ledger"}},
		{"another key with the same name", Config{NoteSignerKey: otherKey}},
		{"a key named otherwise", Config{NoteSignerKey: renamedKey}},
		{"key and origin disagree", Config{NoteSignerKey: strings.TrimSpace(string(skey)), Origin: "other.example/ledger"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := openPOSIX(t, dir, tc.cfg)
			if err == nil {
				_ = l.Close(t.Context())
				t.Fatal("New accepted a conflicting identity")
			}
			if !errors.Is(err, ErrIdentityMismatch) {
				t.Fatalf("error %v, want ErrIdentityMismatch", err)
			}
		})
	}
	t.Run("same key given explicitly", func(t *testing.T) {
		tl := startLedgerIn(t, dir, Config{NoteSignerKey: strings.TrimSpace(string(skey))})
		if tl.Origin() != origin || tl.VerifierKey() != vkey {
			t.Fatalf("identity changed: %s %s", tl.Origin(), tl.VerifierKey())
		}
	})
	t.Run("default origin", func(t *testing.T) {
		tl := startLedger(t, Config{})
		if !strings.Contains(tl.Origin(), "/notarize-ledger/") {
			t.Fatalf("default origin %q", tl.Origin())
		}
	})
}
