package ledger

import (
	"context"
	"crypto"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// signAs returns an entry by s saying d is trusted, claiming the identity
// (name, email) given.
func (s *testSigner) signAs(t testing.TB, d notarize.Digest, name, email string) *notarize.Entry {
	t.Helper()
	st := notarize.NewStatement(d, "registry.example/app:1", notarize.Predicate{
		Status: notarize.StatusTrusted, Kind: notarize.KindImage, Name: name, Email: email,
		Timestamp: time.Now().UTC().Truncate(time.Second)})
	e, err := notarize.Sign(context.Background(), s.sv, st)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func pubPEM(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	b, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// indent prefixes every line of s with n spaces (inline PEM in YAML).
func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+pad) + "\n"
}

func TestLoadSigners(t *testing.T) {
	intern, team := newTestSigner(t), newTestSigner(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "intern.pub"), []byte(pubPEM(t, intern.pub)), 0o644); err != nil {
		t.Fatal(err)
	}
	yml := "signers:\n  intern:\n    email: intern@example.com\n    keys: [intern.pub]\n  security-team:\n    keys:\n      - |\n" + indent(pubPEM(t, team.pub), 8)
	s, err := LoadSigners([]byte(yml), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Keys) != 2 || s.Identities[intern.keyID] != (notarize.Identity{Name: "intern", Email: "intern@example.com"}) ||
		s.Identities[team.keyID] != (notarize.Identity{Name: "security-team"}) {
		t.Fatalf("loaded %+v", s)
	}
	// The PEM form still works, with comments before the blocks.
	p, err := LoadSigners([]byte("# our signers: the release team\n"+pubPEM(t, intern.pub)+pubPEM(t, team.pub)), dir)
	if err != nil || len(p.Keys) != 2 || len(p.Identities) != 0 {
		t.Fatalf("PEM form: %+v, %v", p, err)
	}
	for name, doc := range map[string]string{
		"missing key file":   "signers:\n  a:\n    keys: [nope.pub]\n",
		"not a key":          "signers:\n  a:\n    keys: ['-----BEGIN PUBLIC KEY-----\n      garbage\n      -----END PUBLIC KEY-----']\n",
		"key under 2 names":  "signers:\n  a:\n    keys: [intern.pub]\n  b:\n    keys: [intern.pub]\n",
		"display name email": "signers:\n  a:\n    email: 'A <a@example.com>'\n    keys: [intern.pub]\n",
		"unknown field":      "signers:\n  a:\n    keys: [intern.pub]\n    admin: true\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := LoadSigners([]byte(doc), dir); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestIdentityImpersonationRefused: with enrolled identities, a key the
// signers file calls "intern" cannot log a statement claiming to be
// "security-team" (or another's email): 403 IDENTITY_MISMATCH, nothing
// appended. Its own identity, or no claim, is accepted.
func TestIdentityImpersonationRefused(t *testing.T) {
	intern, team, bare := newTestSigner(t), newTestSigner(t), newTestSigner(t)
	tl := startLedger(t, Config{
		Signers: []crypto.PublicKey{intern.pub, team.pub, bare.pub},
		Identities: map[string]notarize.Identity{
			intern.keyID: {Name: "intern", Email: "intern@example.com"},
			team.keyID:   {Name: "security-team", Email: "security@example.com"},
		},
	})
	refused := []struct {
		name        string
		s           *testSigner
		claim, mail string
		code        string
	}{
		{"another's name", intern, "security-team", "", api.CodeIdentityMismatch},
		{"another's name and email", intern, "security-team", "security@example.com", api.CodeIdentityMismatch},
		{"own name, another's email", intern, "intern", "security@example.com", api.CodeIdentityMismatch},
		{"another's email only", intern, "", "security@example.com", api.CodeIdentityMismatch},
		{"name differing in case", intern, "Intern", "", api.CodeIdentityMismatch},
		{"enrolled key without identity", bare, "", "", api.CodeNotEnrolled},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			d := randomDigest(t)
			status, _, b := do(t, http.MethodPost, tl.url+api.PathEntries, mustMarshal(t, tc.s.signAs(t, d, tc.claim, tc.mail)))
			er := decodeError(t, b)
			if status != http.StatusForbidden || er.Code != tc.code {
				t.Fatalf("got %d %+v, want 403 %s", status, er, tc.code)
			}
			if tc.code == api.CodeIdentityMismatch && (!strings.Contains(er.Message, intern.keyID) || !strings.Contains(er.Message, `"intern"`)) {
				t.Errorf("message %q does not name the key and its enrolled identity", er.Message)
			}
			if got := tl.lookup(t, d); len(got.Entries) != 0 {
				t.Fatalf("refused statement was logged: %+v", got.Entries)
			}
		})
	}
	for _, tc := range []struct{ name, claim, mail string }{
		{"own identity", "intern", "intern@example.com"},
		{"own email in another case", "intern", "Intern@Example.COM"},
		{"own name only", "intern", ""},
		{"no claim", "", ""},
	} {
		t.Run("accepted: "+tc.name, func(t *testing.T) {
			tl.submit(t, intern.signAs(t, randomDigest(t), tc.claim, tc.mail), http.StatusCreated)
		})
	}
	_, err := tl.Submit(t.Context(), intern.signAs(t, randomDigest(t), "security-team", ""))
	var me *notarize.IdentityMismatchError
	if !errors.As(err, &me) || me.KeyID != intern.keyID || me.Enrolled.Name != "intern" {
		t.Fatalf("Submit = %v, want an IdentityMismatchError", err)
	}
}

// TestIdentityWithoutIdentitiesUnchecked: a ledger enrolling PEM keys only
// (or open) does not check claims, as before.
func TestIdentityWithoutIdentitiesUnchecked(t *testing.T) {
	s := newTestSigner(t)
	tl := startLedger(t, Config{Signers: []crypto.PublicKey{s.pub}})
	tl.submit(t, s.signAs(t, randomDigest(t), "anyone", "anyone@example.com"), http.StatusCreated)
}

func TestConfigValidateIdentities(t *testing.T) {
	k := strings.Repeat("ab", 32)
	c := Config{Identities: map[string]notarize.Identity{k: {Name: "a\nb"}}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "identity of key "+k) {
		t.Fatalf("Validate = %v", err)
	}
	c = Config{Identities: map[string]notarize.Identity{"k": {Name: "a"}}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "not a key ID") {
		t.Fatalf("Validate = %v", err)
	}
}

// TestPageShowsIdentityEscaped: the public page and the key's page show a
// statement's claimed name and email, marked as claimed, and the key's
// enrolled identity, marked as enrolled; markup in either is escaped.
func TestPageShowsIdentityEscaped(t *testing.T) {
	s, open := newTestSigner(t), newTestSigner(t)
	hostile := `<img src=x onerror=alert(1)>Eve`
	tl := startLedger(t, Config{
		Signers:    []crypto.PublicKey{s.pub, open.pub},
		Identities: map[string]notarize.Identity{s.keyID: {Name: hostile, Email: "eve&co@example.com"}, open.keyID: {Name: "open"}},
	})
	d := randomDigest(t)
	tl.submit(t, s.signAs(t, d, hostile, "eve&co@example.com"), http.StatusCreated)
	for _, path := range []string{"/?digest=" + d.String(), "/keys/" + s.keyID} {
		status, _, body := do(t, http.MethodGet, tl.url+path, nil)
		if status != http.StatusOK {
			t.Fatalf("%s: status %d\n%s", path, status, body)
		}
		page := string(body)
		if strings.Contains(page, "<img src=x") {
			t.Errorf("%s holds the identity unescaped:\n%s", path, page)
		}
		if !strings.Contains(page, `<strong class="enrolled">&lt;img src=x onerror=alert(1)&gt;Eve</strong> <span class="email">&lt;eve&amp;co@example.com&gt;</span>`) {
			t.Errorf("%s lacks the escaped enrolled identity:\n%s", path, page)
		}
		if !strings.Contains(page, `<span class="claimed">&lt;img src=x onerror=alert(1)&gt;Eve &lt;eve&amp;co@example.com&gt;</span>`) {
			t.Errorf("%s lacks the escaped claimed identity:\n%s", path, page)
		}
	}
	// A key with no enrolled identity (open ledger) shows the claim only.
	tl2 := startLedger(t, Config{})
	d2 := randomDigest(t)
	tl2.submit(t, s.signAs(t, d2, "release", ""), http.StatusCreated)
	_, _, body := do(t, http.MethodGet, tl2.url+"/?digest="+d2.String(), nil)
	if page := string(body); strings.Contains(page, `class="enrolled"`) || !strings.Contains(page, `<span class="claimed">release</span>`) {
		t.Errorf("open ledger page:\n%s", page)
	}
}
