package ledger

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// TestDefaultOriginIsUniquePerLedger: two ledgers started without --origin
// on one host (or one ledger reset) must be two logs to their clients, each
// named after its own key, and a ledger keeps its origin across restarts.
// Without it both were "<hostname>/notarize-ledger" and a client that had
// seen one refused the other for good.
func TestDefaultOriginIsUniquePerLedger(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	a := startLedgerIn(t, dirA, Config{})
	b := startLedgerIn(t, dirB, Config{})
	if a.Origin() == b.Origin() {
		t.Fatalf("two ledgers share the default origin %q", a.Origin())
	}
	for _, tl := range []*testLedger{a, b} {
		v, err := note.NewVerifier(tl.VerifierKey())
		if err != nil {
			t.Fatal(err)
		}
		if v.Name() != tl.Origin() {
			t.Fatalf("origin %q, key named %q", tl.Origin(), v.Name())
		}
		// The suffix is derived from the ledger's own public key.
		raw, err := base64.StdEncoding.DecodeString(strings.SplitN(tl.VerifierKey(), "+", 3)[2])
		if err != nil || len(raw) != 33 {
			t.Fatalf("verifier key %q: %v", tl.VerifierKey(), err)
		}
		sum := sha256.Sum256(raw[1:])
		host, _ := os.Hostname()
		if !strings.HasSuffix(tl.Origin(), "/notarize-ledger/"+hex.EncodeToString(sum[:4])) || !strings.HasPrefix(tl.Origin(), host+"/") && !strings.HasPrefix(tl.Origin(), "localhost/") {
			t.Fatalf("default origin %q", tl.Origin())
		}
	}

	// Persisted: a restart keeps the origin and key.
	origin, vkey := a.Origin(), a.VerifierKey()
	a.close(t)
	a2 := startLedgerIn(t, dirA, Config{})
	if a2.Origin() != origin || a2.VerifierKey() != vkey {
		t.Fatalf("restart changed the identity: %s %s", a2.Origin(), a2.VerifierKey())
	}
	if b, err := os.ReadFile(filepath.Join(dirA, "origin")); err != nil || strings.TrimSpace(string(b)) != origin {
		t.Fatalf("persisted origin %q, %v", b, err)
	}

	// An existing data dir with the old default origin keeps it.
	dirC := t.TempDir()
	old := "example.test/notarize-ledger"
	if err := os.WriteFile(filepath.Join(dirC, "origin"), []byte(old+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c := startLedgerIn(t, dirC, Config{}); c.Origin() != old {
		t.Fatalf("persisted origin %q replaced by %q", old, c.Origin())
	}

	// --origin wins on first start.
	if d := startLedgerIn(t, t.TempDir(), Config{Origin: "example.test/mine"}); d.Origin() != "example.test/mine" {
		t.Fatalf("configured origin ignored: %q", d.Origin())
	}
}
