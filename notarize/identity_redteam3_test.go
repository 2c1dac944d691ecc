package notarize_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/notarize"
)

// TestRedteam3DisplayNameLookAlikes: an enrolled display name is what the
// ledger pages, the dashboard and inspect show as authenticated, so a name
// that renders as another enrolled name must be refused. Invisible format
// characters (zero-width space and joiners, word joiner, BOM, soft hyphen,
// left-to-right and right-to-left marks, Arabic letter mark, Mongolian
// vowel separator) make "security-team" and "security-team" two different
// signers that read the same.
func TestRedteam3DisplayNameLookAlikes(t *testing.T) {
	for name, s := range map[string]string{
		"zero-width space":      "security\u200b-team",
		"zero-width non-joiner": "security-\u200cteam",
		"zero-width joiner":     "security-team\u200d",
		"left-to-right mark":    "security-team\u200e",
		"right-to-left mark":    "\u200fsecurity-team",
		"word joiner":           "secu\u2060rity-team",
		"BOM":                   "\ufeffsecurity-team",
		"soft hyphen":           "secu\u00adrity-team",
		"Arabic letter mark":    "security-team\u061c",
		"Mongolian vowel sep":   "security-team\u180e",
		"invisible separator":   "security\u2063-team",
		"tag character":         "security-team\U000e0041",
		"line separator":        "security-team\u2028",
		"paragraph separator":   "security-team\u2029",
		"bidi isolate":          "security-team\u2066",
		"no-break space at end": "security-team\u00a0",
		"ideographic space end": "security-team\u3000",
		"NUL":                   "security-team\x00",
		"DEL":                   "security-team\x7f",
		"C1 control":            "security-team\u0085",
	} {
		t.Run(name, func(t *testing.T) {
			if err := notarize.ValidateDisplayName(s); !errors.Is(err, notarize.ErrBadIdentity) {
				t.Fatalf("BYPASS: ValidateDisplayName(%q) = %v: an enrolled name that reads as %q", s, err, "security-team")
			}
		})
	}
}

// TestRedteam3CheckClaimGames: a claim matches its key's enrolment
// exactly (the email ignoring ASCII case only): another case, another
// Unicode normalization, padding, a look-alike letter or an email added to
// an enrolment without one is refused.
func TestRedteam3CheckClaimGames(t *testing.T) {
	const kid = "k"
	enrolled := notarize.Identity{Name: "José Admin", Email: "jose@example.com"}
	for name, c := range map[string]notarize.Identity{
		"name in another case":      {Name: "josé admin"},
		"name decomposed (NFD)":     {Name: "Jose\u0301 Admin"},
		"name with trailing space":  {Name: "José Admin "},
		"name with Cyrillic o":      {Name: "Jоsé Admin"},
		"email of another domain":   {Email: "jose@example.co"},
		"email with Kelvin sign":    {Email: "jose@example.co\u212a"},
		"email with dotless i":      {Email: "jose@exampl\u0131e.com"},
		"email with a subaddress":   {Email: "jose+x@example.com"},
		"email with a trailing dot": {Email: "jose@example.com."},
		"right name, wrong email":   {Name: "José Admin", Email: "eve@example.com"},
		"wrong name, right email":   {Name: "Eve", Email: "jose@example.com"},
	} {
		t.Run(name, func(t *testing.T) {
			err := notarize.CheckClaim(kid, c, enrolled)
			var mm *notarize.IdentityMismatchError
			if !errors.As(err, &mm) || !errors.Is(err, notarize.ErrIdentityMismatch) {
				t.Fatalf("BYPASS: CheckClaim(%+v) = %v: the claim passes as %+v", c, err, enrolled)
			}
		})
	}
	for name, c := range map[string]notarize.Identity{
		"nothing claimed":     {},
		"exact":               enrolled,
		"email in upper case": {Email: "JOSE@EXAMPLE.COM"},
	} {
		if err := notarize.CheckClaim(kid, c, enrolled); err != nil {
			t.Errorf("%s: CheckClaim = %v", name, err)
		}
	}
	if err := notarize.CheckClaim(kid, notarize.Identity{Email: "jose@example.com"}, notarize.Identity{Name: "José Admin"}); !errors.Is(err, notarize.ErrIdentityMismatch) {
		t.Fatalf("BYPASS: an email claimed by a key enrolled without one: %v", err)
	}
}

// TestRedteam3SignersFileTwoNames: one key may not speak for two enrolled
// signers, whatever the spelling of the names; the YAML file may not name
// a signer twice (the last would silently win) nor smuggle one in through
// a merge key.
func TestRedteam3SignersFileTwoNames(t *testing.T) {
	f, err := notarize.ParseSignersFile([]byte("signers:\n  alice: {keys: [a.pub]}\n  Alice: {keys: [a.pub]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.IdentitiesByKey(map[string][]string{"alice": {"k1"}, "Alice": {"k1"}}); !errors.Is(err, notarize.ErrBadIdentity) {
		t.Fatalf("BYPASS: one key enrolled as alice and Alice: %v", err)
	}
	got, err := f.IdentitiesByKey(map[string][]string{"alice": {"k1", "k1"}, "Alice": {"k2"}})
	if err != nil || got["k1"].Name != "alice" || got["k2"].Name != "Alice" {
		t.Fatalf("IdentitiesByKey = %v, %v", got, err)
	}
	for name, doc := range map[string]string{
		"signer twice":             "signers:\n  alice: {keys: [a.pub]}\n  alice: {keys: [b.pub]}\n",
		"email twice":              "signers:\n  alice: {email: a@example.com, email: b@example.com, keys: [a.pub]}\n",
		"merge key":                "base: &b {keys: [a.pub]}\nsigners:\n  alice: {<<: *b}\n",
		"unknown member":           "signers:\n  alice: {keys: [a.pub], admin: true}\n",
		"name with markup and LRM": "signers:\n  \"<b>alice</b>\\u200e\": {keys: [a.pub]}\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := notarize.ParseSignersFile([]byte(doc)); !errors.Is(err, notarize.ErrBadIdentity) {
				t.Fatalf("BYPASS: ParseSignersFile(%q) = %v, want ErrBadIdentity", doc, err)
			}
		})
	}
	if _, err := notarize.ParseSignersFile([]byte("signers:\n  x: {keys: [" + strings.Repeat("a", 1<<20) + "]}\n")); !errors.Is(err, notarize.ErrBadIdentity) {
		t.Fatalf("an oversized signers file: %v", err)
	}
}
