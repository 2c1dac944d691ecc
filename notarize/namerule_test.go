package notarize

import (
	"regexp"
	"strings"
	"testing"
)

// NameRule accepts exactly what the regexp it replaces accepts.
func TestNameRuleMatchesItsRegexp(t *testing.T) {
	rule := NameRule{Max: 64, Extra: "._-"}
	re := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	cases := []string{
		"", "a", "A", "0", "release", "team.ci_2-x", ".hidden", "-x", "_x", "a/b", "a b", "a\n", "a\x00",
		"é", "aé", "ＡＢ", "../x", "a..b", "a$", "$a", "\na",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 65), strings.Repeat("é", 20),
	}
	for _, s := range cases {
		if got, want := rule.MatchString(s), re.MatchString(s); got != want {
			t.Errorf("%q: NameRule %v, regexp %v", s, got, want)
		}
	}
}

func FuzzNameRule(f *testing.F) {
	for _, s := range []string{"", "a", "release-1.0", ".x", strings.Repeat("b", 70), "a\nb"} {
		f.Add(s)
	}
	rule := NameRule{Max: 64, Extra: "._-"}
	re := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := rule.MatchString(s), re.MatchString(s); got != want {
			t.Fatalf("%q: NameRule %v, regexp %v", s, got, want)
		}
	})
}
