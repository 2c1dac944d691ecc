package notarize

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Access rules say which users may pull which targets. They are the
// policy's `access` section:
//
//	access:                                # first match wins; no match: denied
//	  - match: "docker.io/library/**"
//	    users: ["*"]                       # any authenticated user
//	  - match: "ghcr.io/acme/**"
//	    users: [alice, ci]
//
// Patterns are the rules' globs over "UPSTREAM/REPO". A policy without an
// access section leaves pulls to the proxy's authentication alone: every
// client it let in may pull every target. The user of an unauthenticated
// request is "" and matches no rule, so a policy with access rules serves
// nobody who is not authenticated.

// Limits on the access section. Policy.Validate refuses anything larger.
const (
	MaxAccessRules = 1024
	MaxAccessUsers = 1024
	MaxUserNameLen = 256
)

// AnyUser in an access rule's Users stands for every authenticated user.
const AnyUser = "*"

// AccessRule grants pulling the targets ("UPSTREAM/REPO") its Match pattern
// matches to the users it lists.
type AccessRule struct {
	// Match is a glob over "UPSTREAM/REPO", as a Rule's.
	Match string `yaml:"match"`
	// Users are user names as the proxy's authentication knows them
	// (htpasswd user, token subject), or AnyUser. An empty list grants
	// nobody: a rule that closes an area to everyone.
	Users []string `yaml:"users"`
}

// validateAccess checks the access section: at most MaxAccessRules rules,
// valid patterns, user names of printable characters without spaces.
func validateAccess(rules []AccessRule) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: access: %s", ErrBadPolicy, fmt.Sprintf(format, a...))
	}
	if len(rules) > MaxAccessRules {
		return bad("%d rules, at most %d", len(rules), MaxAccessRules)
	}
	for i, r := range rules {
		if err := validatePattern(r.Match); err != nil {
			return bad("rule %d: match %q: %v", i+1, truncate(r.Match, 80), err)
		}
		if len(r.Users) > MaxAccessUsers {
			return bad("rule %d (%s): %d users, at most %d", i+1, r.Match, len(r.Users), MaxAccessUsers)
		}
		for _, u := range r.Users {
			if err := validUserName(u); err != nil {
				return bad("rule %d (%s): user %q: %v", i+1, r.Match, truncate(u, 80), err)
			}
		}
	}
	return nil
}

func validUserName(u string) error {
	if u == "" {
		return fmt.Errorf("empty user name")
	}
	if len(u) > MaxUserNameLen {
		return fmt.Errorf("longer than %d bytes", MaxUserNameLen)
	}
	if !utf8.ValidString(u) {
		return fmt.Errorf("not valid UTF-8")
	}
	if strings.IndexFunc(u, func(c rune) bool { return unicode.IsSpace(c) || !unicode.IsPrint(c) }) >= 0 {
		return fmt.Errorf("spaces and control characters are not allowed")
	}
	if u != AnyUser && strings.Contains(u, "*") {
		return fmt.Errorf(`"*" stands alone (any authenticated user); user names are not patterns`)
	}
	return nil
}

// AccessDecision is the outcome of the access rules for one user and target.
type AccessDecision struct {
	// Allow says whether the user may pull the target.
	Allow bool
	// RuleIndex is the position of the access rule that decided, -1 when
	// none did (no access section, or no rule matches).
	RuleIndex int
}

// MayPull applies the access rules to user ("" when unauthenticated) and
// target ("UPSTREAM/REPO"): the first rule whose Match matches target
// decides, allowing the users it lists (AnyUser: every authenticated
// user); no matching rule denies. A policy without access rules allows
// everyone, authentication being the caller's.
func (p *Policy) MayPull(user, target string) AccessDecision {
	if len(p.Access) == 0 {
		return AccessDecision{Allow: true, RuleIndex: -1}
	}
	for i, r := range p.Access {
		if !globMatch(r.Match, target) {
			continue
		}
		allow := false
		if user != "" {
			for _, u := range r.Users {
				if u == user || u == AnyUser {
					allow = true
					break
				}
			}
		}
		return AccessDecision{Allow: allow, RuleIndex: i}
	}
	return AccessDecision{RuleIndex: -1}
}
