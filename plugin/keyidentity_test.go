package plugin

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/notarize"
)

// TestKeyStoreIdentity: a key without an identity file (every store made
// before identities) is known by its name; SetIdentity records one; a
// corrupt or hostile identity file is refused, not signed with.
func TestKeyStoreIdentity(t *testing.T) {
	ks := KeyStore{Dir: t.TempDir()}
	if _, err := ks.Generate("release", []byte("pw")); err != nil {
		t.Fatal(err)
	}
	id, err := ks.Identity("release")
	if err != nil || id != (notarize.Identity{Name: "release"}) {
		t.Fatalf("old key: %+v, %v; want its name", id, err)
	}
	want := notarize.Identity{Name: "Release Bot", Email: "release@example.com"}
	if err := ks.SetIdentity("release", want); err != nil {
		t.Fatal(err)
	}
	if id, err := ks.Identity("release"); err != nil || id != want {
		t.Fatalf("Identity = %+v, %v, want %+v", id, err, want)
	}
	if err := ks.SetIdentity("missing", want); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("identity of a missing key: %v", err)
	}
	if err := ks.SetIdentity("release", notarize.Identity{Name: "x", Email: "X <x@example.com>"}); !errors.Is(err, ErrBadKeyIdentity) {
		t.Fatalf("bad email recorded: %v", err)
	}
	for name, content := range map[string]string{
		"not JSON":      "{",
		"unknown field": `{"name":"a","role":"admin"}`,
		"display email": `{"name":"a","email":"A <a@example.com>"}`,
		"control char":  `{"name":"a\u001b[2J"}`,
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(ks.Dir, "release.id"), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := ks.Identity("release"); !errors.Is(err, ErrBadKeyIdentity) {
				t.Fatalf("Identity = %v, want ErrBadKeyIdentity", err)
			}
		})
	}
}

// TestSignRecordsIdentity: key generate --display-name/--email records the
// identity, sign puts it in the statement, inspect shows it (JSON: email,
// localIdentity), and a bad email is a usage error before anything is
// written.
func TestSignRecordsIdentity(t *testing.T) {
	h := newHarness(t)
	if _, errOut, code := h.run("key", "generate", "--name", "rel", "--email", "Rel <rel@example.com>"); code != ExitUsage || !strings.Contains(errOut, "email") {
		t.Fatalf("bad email: exit %d, %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(h.home, "keys", "rel.pub")); err == nil {
		t.Fatal("a key was generated despite the bad email")
	}
	out := h.mustRun(0, "key", "generate", "--name", "rel", "--display-name", "Release Bot", "--email", "rel@example.com")
	if !strings.Contains(out, "identity:    Release Bot <rel@example.com>") {
		t.Fatalf("generate output lacks the identity:\n%s", out)
	}
	if out := h.mustRun(0, "key", "list"); !strings.Contains(out, "rel   Release Bot <rel@example.com>  ") {
		t.Fatalf("key list:\n%s", out)
	}
	var kl keyListOutput
	if err := json.Unmarshal([]byte(h.mustRun(0, "key", "list", "-o", "json")), &kl); err != nil || len(kl.Keys) != 1 ||
		kl.Keys[0].Identity != (identityOutput{Name: "Release Bot", Email: "rel@example.com"}) {
		t.Fatalf("key list -o json: %+v, %v", kl, err)
	}
	file := filepath.Join(t.TempDir(), "app.tar")
	if err := os.WriteFile(file, []byte("app"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.mustRun(0, "sign", "--key", "rel", "file:"+file)
	var in inspectOutput
	if err := json.Unmarshal([]byte(h.mustRun(0, "inspect", "--signer", "rel", "-o", "json", "file:"+file)), &in); err != nil {
		t.Fatal(err)
	}
	if len(in.Statements) != 1 {
		t.Fatalf("statements: %+v", in.Statements)
	}
	s := in.Statements[0]
	if s.Signer != "Release Bot" || s.Email != "rel@example.com" || s.LocalIdentity == nil || *s.LocalIdentity != (identityOutput{Name: "Release Bot", Email: "rel@example.com"}) {
		t.Fatalf("statement %+v (local %+v)", s, s.LocalIdentity)
	}
	if out := h.mustRun(0, "inspect", "--signer", "rel", "file:"+file); !strings.Contains(out, "Release Bot <rel@example.com>  ") || strings.Contains(out, "claims") {
		t.Fatalf("inspect text:\n%s", out)
	}
}

// TestInspectShowsLocalNameOverClaim: a statement claiming to be
// "security-team", by a key the local key store calls "intern", is shown
// as intern, with the claim after it, never the claim alone.
func TestInspectShowsLocalNameOverClaim(t *testing.T) {
	h := newHarness(t)
	h.mustRun(0, "key", "generate", "--name", "intern", "--display-name", "security-team", "--email", "security@example.com")
	file := filepath.Join(t.TempDir(), "app.tar")
	if err := os.WriteFile(file, []byte("app"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.mustRun(0, "sign", "--key", "intern", "file:"+file) // the claim
	// The verifier's own record of the key: it is the intern's.
	if err := h.keyStore().SetIdentity("intern", notarize.Identity{Name: "intern", Email: "intern@example.com"}); err != nil {
		t.Fatal(err)
	}
	out := h.mustRun(0, "inspect", "--signer", "intern", "file:"+file)
	row := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "TRUSTED") {
			row = l
		}
	}
	if !strings.Contains(row, "intern <intern@example.com> (claims: security-team <security@example.com>)") {
		t.Fatalf("row %q: want the local identity first, the claim marked", row)
	}
	for _, all := range [][]string{{"inspect", "--all", "file:" + file}} {
		if out := h.mustRun(0, all...); !strings.Contains(out, "intern <intern@example.com> (claims: security-team") {
			t.Fatalf("%v:\n%s", all, out)
		}
	}
}

// TestSignIdentityLedgerRefusesImpersonation: against a ledger enrolling
// alice's key as "alice", a statement by that key claiming "bob" is
// refused with the ledger's reason, and one claiming alice is recorded.
func TestSignIdentityLedgerRefusesImpersonation(t *testing.T) {
	t.Parallel()
	aliceID := "4296131516ca6e70a30a4b613434ddea71746f3fd2910b9fc52c4582408c7760"
	h := newHarnessWith(t, []ledgertest.Option{ledgertest.WithConfig(func(c *ledger.Config) {
		c.Identities = map[string]notarize.Identity{aliceID: {Name: "alice", Email: "alice@example.com"}}
	})}, "alice")
	file := filepath.Join(t.TempDir(), "app.tar")
	if err := os.WriteFile(file, []byte("app"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.mustRun(0, "sign", "--key", "alice", "file:"+file) // no identity file: claims "alice"
	if err := h.keyStore().SetIdentity("alice", notarize.Identity{Name: "bob"}); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := h.run("untrust", "--key", "alice", "file:"+file)
	if code == 0 || !strings.Contains(errOut, "enrolled as") || !strings.Contains(errOut, `"bob"`) || !strings.Contains(errOut, "docker notarize key identity alice") {
		t.Fatalf("impersonation: exit %d\n%s", code, errOut)
	}
	if out := h.mustRun(0, "inspect", "--signer", "alice", "file:"+file); strings.Contains(out, "UNTRUSTED") {
		t.Fatalf("the refused statement is in the ledger:\n%s", out)
	}
}

// keyStore is the harness's key store.
func (h *harness) keyStore() KeyStore { return NewKeyStore(h.home) }

// TestKeyIdentityCommand: key identity shows a key's identity, sets its
// name and email separately, clears the email with --email "", refuses a
// bad email and a missing key (usage errors) and replaces a corrupt record.
func TestKeyIdentityCommand(t *testing.T) {
	h := newHarness(t, "alice")
	if out := h.mustRun(0, "key", "identity", "alice"); out != "alice: alice\n" {
		t.Fatalf("old key: %q", out)
	}
	if out := h.mustRun(0, "key", "identity", "alice", "--email", "alice@example.com"); out != "alice: alice <alice@example.com>\n" {
		t.Fatalf("set email: %q", out)
	}
	if out := h.mustRun(0, "key", "identity", "alice", "--display-name", "Alice Example"); out != "alice: Alice Example <alice@example.com>\n" {
		t.Fatalf("set name: %q", out)
	}
	if out := h.mustRun(0, "key", "identity", "alice", "--email", ""); out != "alice: Alice Example\n" {
		t.Fatalf("clear email: %q", out)
	}
	h.mustRun(ExitUsage, "key", "identity", "alice", "--email", "Alice <alice@example.com>")
	h.mustRun(ExitUsage, "key", "identity", "nobody")
	if err := os.WriteFile(filepath.Join(h.home, "keys", "alice.id"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, code := h.run("key", "identity", "alice"); code == 0 {
		t.Fatal("a corrupt identity was shown")
	}
	if _, _, code := h.run("sign", "--key", "alice", "file:"+filepath.Join(h.home, "keys", "alice.pub")); code != ExitUsage {
		t.Fatalf("sign with a corrupt identity: exit %d, want %d", code, ExitUsage)
	}
	if out := h.mustRun(0, "key", "identity", "alice", "--display-name", "alice"); out != "alice: alice\n" {
		t.Fatalf("replace a corrupt record: %q", out)
	}
}

// TestInspectShowsEnrolledIdentity: for a key not in the local key store,
// inspect shows the identity the ledger enrols it with, marked
// "(enrolled)" (JSON: enrolled), not the claim alone.
func TestInspectShowsEnrolledIdentity(t *testing.T) {
	aliceID := "4296131516ca6e70a30a4b613434ddea71746f3fd2910b9fc52c4582408c7760"
	h := newHarnessWith(t, []ledgertest.Option{ledgertest.WithConfig(func(c *ledger.Config) {
		c.Identities = map[string]notarize.Identity{aliceID: {Name: "Alice Example", Email: "alice@example.com"}}
	})}, "alice")
	file := filepath.Join(t.TempDir(), "app.tar")
	if err := os.WriteFile(file, []byte("app"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.mustRun(0, "key", "identity", "alice", "--display-name", "Alice Example", "--email", "alice@example.com")
	h.mustRun(0, "sign", "--key", "alice", "file:"+file)
	for _, ext := range []string{".key", ".pub", ".id"} {
		if err := os.Remove(filepath.Join(h.home, "keys", "alice"+ext)); err != nil {
			t.Fatal(err)
		}
	}
	if out := h.mustRun(0, "inspect", "--all", "file:"+file); !strings.Contains(out, "Alice Example <alice@example.com> (enrolled)") {
		t.Fatalf("inspect --all:\n%s", out)
	}
	var in inspectOutput
	if err := json.Unmarshal([]byte(h.mustRun(0, "inspect", "--all", "-o", "json", "file:"+file)), &in); err != nil {
		t.Fatal(err)
	}
	if len(in.Statements) != 1 || in.Statements[0].Enrolled == nil || *in.Statements[0].Enrolled != (identityOutput{Name: "Alice Example", Email: "alice@example.com"}) || in.Statements[0].LocalIdentity != nil {
		t.Fatalf("inspect -o json: %+v", in.Statements)
	}
}
