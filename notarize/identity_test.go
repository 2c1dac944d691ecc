package notarize_test

import (
	"bytes"
	"errors"
	"net/mail"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/notarize"
)

func TestValidateEmail(t *testing.T) {
	good := []string{"alice@example.com", "a.b+tag@sub.example.org", "ci_bot-1@example.co.uk", "x@localhost", "a@xn--bcher-kva.example"}
	for _, s := range good {
		if err := notarize.ValidateEmail(s); err != nil {
			t.Errorf("ValidateEmail(%q) = %v, want nil", s, err)
		}
	}
	bad := map[string]string{
		"empty":           "",
		"no at":           "alice.example.com",
		"display name":    "Alice <alice@example.com>",
		"angle brackets":  "<alice@example.com>",
		"quoted display":  `"Alice" alice@example.com`,
		"comment":         "alice@example.com (Alice)",
		"two addresses":   "alice@example.com,bob@example.com",
		"space":           "alice @example.com",
		"newline":         "alice@example.com\nBcc: x@y",
		"trailing at":     "alice@",
		"leading at":      "@example.com",
		"quoted local":    `"a b"@example.com`,
		"dot-dot local":   "a..b@example.com",
		"too long":        strings.Repeat("a", 250) + "@example.com",
		"not UTF-8":       "al\xffce@example.com",
		"html":            "<script>@example.com",
		"bidi override":   "alice\u202e@example.com",
		"non-ASCII":       "zoë@example.com",
		"kelvin sign":     "\u212aate@example.com",
		"IDN unencoded":   "a@bücher.example",
		"unquoted at x 2": "a@b@example.com",
	}
	for name, s := range bad {
		t.Run(name, func(t *testing.T) {
			if err := notarize.ValidateEmail(s); !errors.Is(err, notarize.ErrBadEmail) {
				t.Fatalf("ValidateEmail(%q) = %v, want ErrBadEmail", s, err)
			}
		})
	}
}

func TestValidateDisplayName(t *testing.T) {
	for _, s := range []string{"release", "Alice Example", "Zoë Ünïcode", "security-team"} {
		if err := notarize.ValidateDisplayName(s); err != nil {
			t.Errorf("ValidateDisplayName(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", " padded", "tab\there", "line\nbreak", "rtl\u202eevil", strings.Repeat("n", notarize.MaxNameLen+1)} {
		if err := notarize.ValidateDisplayName(s); !errors.Is(err, notarize.ErrBadIdentity) {
			t.Errorf("ValidateDisplayName(%q) = %v, want ErrBadIdentity", s, err)
		}
	}
}

// TestStatementEmail: a statement may carry an email next to the name; it
// round-trips, a statement without one is unchanged, a bad one is refused.
func TestStatementEmail(t *testing.T) {
	st := notarize.NewStatement(digestA, "registry.example/app:1", notarize.Predicate{
		Status: notarize.StatusTrusted, Timestamp: t0, Name: "release", Email: "release@example.com"})
	b, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"name":"release","email":"release@example.com","timestamp"`)) {
		t.Fatalf("email not next to the name: %s", b)
	}
	got, err := notarize.ParseStatement(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Claimed() != (notarize.Identity{Name: "release", Email: "release@example.com"}) {
		t.Fatalf("claimed = %+v", got.Claimed())
	}
	// An old statement (no email) keeps its one encoding.
	old := notarize.NewStatement(digestA, "x", notarize.Predicate{Status: notarize.StatusTrusted, Timestamp: t0, Name: "release"})
	ob, err := old.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ob, []byte("email")) {
		t.Fatalf("a statement without email names it: %s", ob)
	}
	if _, err := notarize.ParseStatement(ob); err != nil {
		t.Fatalf("statement without email refused: %v", err)
	}
	for _, e := range []string{"Release <release@example.com>", "release", "release@example.com (bot)"} {
		bad := strings.Replace(string(b), "release@example.com", e, 1)
		if _, err := notarize.ParseStatement([]byte(bad)); !errors.Is(err, notarize.ErrBadStatement) || !errors.Is(err, notarize.ErrBadEmail) {
			t.Errorf("email %q: ParseStatement = %v, want ErrBadStatement wrapping ErrBadEmail", e, err)
		}
	}
}

// TestStatementEmailReEncodingRefused: the one-encoding rule holds for the
// email too — the same address spelled with JSON escapes, or a statement
// with an empty email member, is another payload and refused.
func TestStatementEmailReEncodingRefused(t *testing.T) {
	st := notarize.NewStatement(digestA, "x", notarize.Predicate{
		Status: notarize.StatusTrusted, Timestamp: t0, Name: "release", Email: "a&b@example.com"})
	b, err := st.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := notarize.ParseStatement(b); err != nil {
		t.Fatalf("canonical statement refused: %v", err)
	}
	canon := `"email":"a\u0026b@example.com"`
	if !bytes.Contains(b, []byte(canon)) {
		t.Fatalf("canonical spelling changed: %s", b)
	}
	for name, repl := range map[string]string{
		"raw ampersand": `"email":"a&b@example.com"`,
		"escaped at":    `"email":"a\u0026b\u0040example.com"`,
		"escaped a":     `"email":"\u0061\u0026b@example.com"`,
	} {
		t.Run(name, func(t *testing.T) {
			re := bytes.Replace(b, []byte(canon), []byte(repl), 1)
			if bytes.Equal(re, b) {
				t.Fatal("not re-encoded")
			}
			_, err := notarize.ParseStatement(re)
			if !errors.Is(err, notarize.ErrNotCanonical) {
				t.Fatalf("ParseStatement = %v, want ErrNotCanonical", err)
			}
		})
	}
	t.Run("empty email member", func(t *testing.T) {
		old := notarize.NewStatement(digestA, "x", notarize.Predicate{Status: notarize.StatusTrusted, Timestamp: t0, Name: "release"})
		ob, _ := old.Marshal()
		re := bytes.Replace(ob, []byte(`"name":"release",`), []byte(`"name":"release","email":"",`), 1)
		if _, err := notarize.ParseStatement(re); !errors.Is(err, notarize.ErrNotCanonical) {
			t.Fatalf("ParseStatement = %v, want ErrNotCanonical", err)
		}
	})
}

func TestCheckClaim(t *testing.T) {
	enrolled := notarize.Identity{Name: "intern", Email: "intern@example.com"}
	ok := []notarize.Identity{{}, {Name: "intern"}, {Email: "intern@example.com"}, {Name: "intern", Email: "Intern@Example.com"}}
	for _, c := range ok {
		if err := notarize.CheckClaim("k", c, enrolled); err != nil {
			t.Errorf("claim %+v refused: %v", c, err)
		}
	}
	bad := []notarize.Identity{{Name: "security-team"}, {Name: "Intern"}, {Email: "security@example.com"}, {Name: "intern", Email: "ceo@example.com"}}
	for _, c := range bad {
		err := notarize.CheckClaim("k", c, enrolled)
		var me *notarize.IdentityMismatchError
		if !errors.Is(err, notarize.ErrIdentityMismatch) || !errors.As(err, &me) || me.Enrolled != enrolled {
			t.Errorf("claim %+v: %v, want an IdentityMismatchError", c, err)
		}
	}
	// Only ASCII letters fold: the Kelvin sign is not k.
	if err := notarize.CheckClaim("k", notarize.Identity{Email: "\u212aate@example.com"}, notarize.Identity{Name: "kate", Email: "kate@example.com"}); err == nil {
		t.Error("a claim with a Kelvin sign matched kate@example.com")
	}
	if err := notarize.CheckClaim("k", notarize.Identity{Email: "x@example.com"}, notarize.Identity{Name: "bot"}); err == nil {
		t.Error("an email claimed by a key enrolled without one was accepted")
	}
}

func TestParseSignersFile(t *testing.T) {
	f, err := notarize.ParseSignersFile([]byte("signers:\n  Alice Example:\n    email: alice@example.com\n    keys: [alice.pub]\n  ci:\n    keys: [ci.pub, ci2.pub]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Names(); len(got) != 2 || got[0] != "Alice Example" || f.Signers["Alice Example"].Email != "alice@example.com" {
		t.Fatalf("parsed %+v", f)
	}
	ids, err := f.IdentitiesByKey(map[string][]string{"Alice Example": {"k1"}, "ci": {"k2", "k3"}})
	if err != nil || ids["k1"].Email != "alice@example.com" || ids["k3"].Name != "ci" {
		t.Fatalf("IdentitiesByKey = %v, %v", ids, err)
	}
	if _, err := f.IdentitiesByKey(map[string][]string{"Alice Example": {"k1"}, "ci": {"k1"}}); !errors.Is(err, notarize.ErrBadIdentity) {
		t.Fatalf("a key under two names: %v, want ErrBadIdentity", err)
	}
	bad := map[string]string{
		"empty":         "",
		"no signers":    "signers: {}\n",
		"unknown field": "signers:\n  a:\n    keys: [a.pub]\n    role: admin\n",
		"no keys":       "signers:\n  a:\n    email: a@example.com\n",
		"bad email":     "signers:\n  a:\n    email: A <a@example.com>\n    keys: [a.pub]\n",
		"bad name":      "signers:\n  \"a\\nb\":\n    keys: [a.pub]\n",
		"two docs":      "signers:\n  a:\n    keys: [a.pub]\n---\nsigners: {}\n",
		"empty key ref": "signers:\n  a:\n    keys: ['  ']\n",
	}
	for name, doc := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := notarize.ParseSignersFile([]byte(doc)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestPolicySignerEmail: a policy signer may carry an email, a bare
// address like a statement's; anything else is a bad policy.
func TestPolicySignerEmail(t *testing.T) {
	const doc = "signers:\n  intern:\n    email: %s\n    keys: [intern.pub]\nrules:\n  - match: \"**\"\n    require: [intern]\n"
	p, err := notarize.ParsePolicy([]byte(strings.Replace(doc, "%s", "intern@example.com", 1)))
	if err != nil || p.Signers["intern"].Email != "intern@example.com" {
		t.Fatalf("ParsePolicy = %+v, %v", p, err)
	}
	for _, bad := range []string{"'Intern <intern@example.com>'", "intern", "'a@b (c)'"} {
		if _, err := notarize.ParsePolicy([]byte(strings.Replace(doc, "%s", bad, 1))); !errors.Is(err, notarize.ErrBadPolicy) {
			t.Errorf("email %s: ParsePolicy = %v, want ErrBadPolicy", bad, err)
		}
	}
}

// FuzzValidateEmail: an address ValidateEmail accepts is one bare
// addr-spec that net/mail reads back as itself, within the bound.
func FuzzValidateEmail(f *testing.F) {
	for _, s := range []string{"alice@example.com", "A <a@b>", `"a b"@c`, "a@b (c)", "a\u202e@b", "a&b@example.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if notarize.ValidateEmail(s) != nil {
			return
		}
		a, err := mail.ParseAddress(s)
		if err != nil || a.Name != "" || a.Address != s || len(s) > notarize.MaxEmailLen || strings.ContainsAny(s, "<>\" \n\r\t") {
			t.Fatalf("accepted %q: %v %+v", s, err, a)
		}
	})
}

// FuzzParseSignersFile: the signers file parser never panics, and what it
// accepts has valid identities only.
func FuzzParseSignersFile(f *testing.F) {
	f.Add([]byte("signers:\n  a:\n    email: a@example.com\n    keys: [a.pub]\n"))
	f.Add([]byte("signers: {b: {keys: ['-----BEGIN PUBLIC KEY-----']}}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sf, err := notarize.ParseSignersFile(b)
		if err != nil {
			return
		}
		for _, name := range sf.Names() {
			if err := (notarize.Identity{Name: name, Email: sf.Signers[name].Email}).Validate(); err != nil {
				t.Fatalf("accepted an invalid identity %q: %v", name, err)
			}
		}
	})
}
