package notarize_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/notarize"
)

const accessPolicy = `
signers:
  release: {keys: [release.pub]}
rules:
  - match: "**"
    require: [release]
access:
  - match: "docker.io/library/**"
    users: ["*"]
  - match: "ghcr.io/acme/secret/**"
    users: [alice]
  - match: "ghcr.io/acme/**"
    users: [alice, ci]
  - match: "ghcr.io/closed/**"
    users: []
`

func TestMayPull(t *testing.T) {
	p, err := notarize.ParsePolicy([]byte(accessPolicy))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user, target string
		allow        bool
		rule         int
	}{
		{"alice", "docker.io/library/nginx", true, 0},
		{"bob", "docker.io/library/nginx", true, 0},
		{"", "docker.io/library/nginx", false, 0}, // "*" is any authenticated user
		{"alice", "ghcr.io/acme/secret/db", true, 1},
		{"ci", "ghcr.io/acme/secret/db", false, 1}, // first match wins, not the broader rule below
		{"ci", "ghcr.io/acme/app", true, 2},
		{"bob", "ghcr.io/acme/app", false, 2},
		{"alice", "ghcr.io/closed/x", false, 3},
		{"alice", "quay.io/other/x", false, -1}, // no match: denied
		{"alice", "docker.io/acme/app", false, -1},
		{"*", "ghcr.io/acme/app", false, 2}, // a user literally named "*" is not everyone
		{"Alice", "ghcr.io/acme/app", false, 2},
	} {
		d := p.MayPull(tc.user, tc.target)
		if d.Allow != tc.allow || d.RuleIndex != tc.rule {
			t.Errorf("MayPull(%q, %q) = %+v, want allow %v by rule %d", tc.user, tc.target, d, tc.allow, tc.rule)
		}
	}
}

func TestMayPullWithoutAccessRules(t *testing.T) {
	p, err := notarize.ParsePolicy([]byte(examplePolicy))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"", "alice"} {
		if d := p.MayPull(u, "ghcr.io/acme/app"); !d.Allow || d.RuleIndex != -1 {
			t.Errorf("no access section: MayPull(%q) = %+v, want allowed (authentication alone decides)", u, d)
		}
	}
}

func TestAccessRefused(t *testing.T) {
	head := "signers: {r: {keys: [k]}}\nrules: [{match: '**', require: [r]}]\n"
	for name, access := range map[string]string{
		"bad pattern":     "access: [{match: 'a/**b', users: [x]}]\n",
		"empty pattern":   "access: [{match: '', users: [x]}]\n",
		"empty user":      "access: [{match: '**', users: ['']}]\n",
		"user with space": "access: [{match: '**', users: ['a b']}]\n",
		"user pattern":    "access: [{match: '**', users: ['ci-*']}]\n",
		"control char":    "access: [{match: '**', users: [\"a\\tb\"]}]\n",
		"long user":       "access: [{match: '**', users: [" + strings.Repeat("u", notarize.MaxUserNameLen+1) + "]}]\n",
		"unknown field":   "access: [{match: '**', users: [x], groups: [y]}]\n",
		"not a list":      "access: {match: '**'}\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := notarize.ParsePolicy([]byte(head + access)); !errors.Is(err, notarize.ErrBadPolicy) {
				t.Fatalf("accepted or wrong error: %v", err)
			}
		})
	}
	var b strings.Builder
	b.WriteString(head + "access:\n")
	for range notarize.MaxAccessRules + 1 {
		b.WriteString("  - {match: '**', users: [x]}\n")
	}
	if _, err := notarize.ParsePolicy([]byte(b.String())); !errors.Is(err, notarize.ErrBadPolicy) {
		t.Fatalf("%d access rules accepted: %v", notarize.MaxAccessRules+1, err)
	}
}

func FuzzMayPull(f *testing.F) {
	f.Add("ghcr.io/acme/**", "alice", "ghcr.io/acme/app")
	f.Add("**", "*", "")
	f.Fuzz(func(t *testing.T, pat, user, target string) {
		p := &notarize.Policy{Access: []notarize.AccessRule{{Match: pat, Users: []string{user}}}}
		d := p.MayPull("", target)
		if d.Allow {
			t.Fatalf("unauthenticated user allowed by %q", pat)
		}
		_ = p.MayPull(user, target)
	})
}
