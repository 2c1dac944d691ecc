package notarize_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/notarize/docker-notarize/notarize"
)

const examplePolicy = `
signers:
  release: {keys: [keys/release.pub]}
  ops: {keys: [keys/ops.pub, keys/ops2.pub]}
rules:
  - match: "docker.io/library/**"
    require: [release]
    mode: enforce
  - match: "ghcr.io/acme/*"
    require: [release, ops]
    mode: audit
  - match: "local/**"
    mode: off
  - match: "**"
    require: [release]
`

func TestParsePolicy(t *testing.T) {
	p, err := notarize.ParsePolicy([]byte(examplePolicy))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Rules) != 4 || len(p.Signers["ops"].Keys) != 2 {
		t.Fatalf("parsed %+v", p)
	}
	if got := p.Rules[3].EffectiveMode(); got != notarize.ModeEnforce {
		t.Fatalf("default mode = %q, want enforce", got)
	}
}

func TestParsePolicyRefuses(t *testing.T) {
	const signers = "signers:\n  release: {keys: [k.pub]}\n"
	for name, doc := range map[string]string{
		"empty":              "",
		"not yaml":           "signers: [",
		"unknown field":      signers + "rules:\n  - match: '**'\n    require: [release]\n    when: always\n",
		"unknown top field":  signers + "extra: 1\nrules:\n  - match: '**'\n    require: [release]\n",
		"two documents":      signers + "rules:\n  - match: '**'\n    require: [release]\n---\nrules: []\n",
		"duplicate key":      signers + "signers: {}\nrules:\n  - match: '**'\n    require: [release]\n",
		"no rules":           signers,
		"bad mode":           signers + "rules:\n  - match: '**'\n    require: [release]\n    mode: warn\n",
		"undefined signer":   signers + "rules:\n  - match: '**'\n    require: [nobody]\n",
		"no require":         signers + "rules:\n  - match: '**'\n",
		"signer without key": "signers:\n  release: {keys: []}\nrules:\n  - match: '**'\n    require: [release]\n",
		"bad signer name":    "signers:\n  'a b': {keys: [k]}\nrules:\n  - match: '**'\n    mode: off\n",
		"version 2":          "version: 2\n" + signers + "rules:\n  - match: '**'\n    require: [release]\n",
		"double star inside": signers + "rules:\n  - match: 'docker.io/a**'\n    require: [release]\n",
		"empty segment":      signers + "rules:\n  - match: 'docker.io//x'\n    require: [release]\n",
		"empty match":        signers + "rules:\n  - match: ''\n    require: [release]\n",
		"bad character":      signers + "rules:\n  - match: 'docker.io/[a]'\n    require: [release]\n",
		"oversized":          signers + strings.Repeat("#", notarize.MaxPolicySize),
		"wrong type":         "signers: 3\nrules: 4\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := notarize.ParsePolicy([]byte(doc)); !errors.Is(err, notarize.ErrBadPolicy) {
				t.Fatalf("ParsePolicy() = %v, want ErrBadPolicy", err)
			}
		})
	}
}

func TestPolicyMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, target string
		want            bool
	}{
		{"**", "docker.io/library/nginx", true},
		{"docker.io/library/**", "docker.io/library/nginx", true},
		{"docker.io/library/**", "docker.io/library/a/b/c", true},
		{"docker.io/library/**", "docker.io/acme/nginx", false},
		{"docker.io/library/*", "docker.io/library/nginx", true},
		{"docker.io/library/*", "docker.io/library/a/b", false},
		{"ghcr.io/acme/*", "ghcr.io/acme/app", true},
		{"ghcr.io/acme/app-*", "ghcr.io/acme/app-web", true},
		{"ghcr.io/acme/app-*", "ghcr.io/acme/web-app", false},
		{"ghcr.io/*/app", "ghcr.io/acme/app", true},
		{"ghcr.io/**/app", "ghcr.io/app", true},
		{"ghcr.io/**/app", "ghcr.io/a/b/c/app", true},
		{"ghcr.io/**/app", "ghcr.io/a/b/c/app2", false},
		{"*/library/*", "docker.io/library/x", true},
		{"localhost:5000/**", "localhost:5000/x", true},
		{"*.gcr.io/**", "eu.gcr.io/p/x", true},
		{"docker.io/library/nginx", "docker.io/library/nginx", true},
		{"docker.io/library/nginx", "docker.io/library/nginx2", false},
		{"docker.io/library/*x*y", "docker.io/library/axbxcy", true},
		{"docker.io/library/*x*y", "docker.io/library/axbxcyz", false},
	} {
		t.Run(tc.pattern+" "+tc.target, func(t *testing.T) {
			p := &notarize.Policy{Rules: []notarize.Rule{{Match: tc.pattern, Mode: notarize.ModeOff}}}
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			if _, _, got := p.Match(tc.target); got != tc.want {
				t.Fatalf("match(%q, %q) = %v, want %v", tc.pattern, tc.target, got, tc.want)
			}
		})
	}
}

func TestPolicyFirstMatchWins(t *testing.T) {
	p, err := notarize.ParsePolicy([]byte(examplePolicy))
	if err != nil {
		t.Fatal(err)
	}
	for target, want := range map[string]int{
		"docker.io/library/nginx": 0,
		"ghcr.io/acme/app":        1,
		"ghcr.io/acme/app/sub":    3,
		"local/x/y":               2,
		"quay.io/x":               3,
	} {
		if i, _, ok := p.Match(target); !ok || i != want {
			t.Errorf("Match(%q) = %d, %v; want rule %d", target, i, ok, want)
		}
	}
}

func polKey(t testing.TB) crypto.PublicKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv.Public()
}

func polRecord(t testing.TB, idx uint64, pub crypto.PublicKey, d notarize.Digest, s notarize.Status, at time.Time) notarize.Record {
	t.Helper()
	id, err := notarize.KeyID(pub)
	if err != nil {
		t.Fatal(err)
	}
	return notarize.Record{Index: idx, KeyID: id, Statement: notarize.NewStatement(d, "x", notarize.Predicate{Status: s, Timestamp: at})}
}

func TestEvaluate(t *testing.T) {
	p, err := notarize.ParsePolicy([]byte(examplePolicy))
	if err != nil {
		t.Fatal(err)
	}
	release, ops, ops2, stranger := polKey(t), polKey(t), polKey(t), polKey(t)
	ev, err := p.Evaluator(map[string][]crypto.PublicKey{"release": {release}, "ops": {ops, ops2}})
	if err != nil {
		t.Fatal(err)
	}
	d, idx := notarize.DigestOf([]byte("child")), notarize.DigestOf([]byte("index"))
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	T, U, X := notarize.StatusTrusted, notarize.StatusUntrusted, notarize.StatusUnsupported
	for _, tc := range []struct {
		name        string
		target      string
		records     []notarize.Record
		parents     []notarize.Parent
		verdict     notarize.Verdict
		allow       bool
		mode        notarize.Mode
		signer      string
		reasonHas   string
		viaExpected bool
	}{
		{name: "trusted", target: "docker.io/library/nginx", records: []notarize.Record{polRecord(t, 1, release, d, T, at)},
			verdict: notarize.Trusted, allow: true, mode: notarize.ModeEnforce, signer: "release", reasonHas: "is TRUSTED by release (2026-05-01T12:00:00Z)"},
		{name: "never signed", target: "docker.io/library/nginx",
			verdict: notarize.Unknown, allow: false, mode: notarize.ModeEnforce, reasonHas: "is UNKNOWN: no statement from release"},
		{name: "stranger's statement ignored", target: "docker.io/library/nginx", records: []notarize.Record{polRecord(t, 1, stranger, d, T, at)},
			verdict: notarize.Unknown, allow: false, mode: notarize.ModeEnforce},
		{name: "untrusted later", target: "docker.io/library/nginx", records: []notarize.Record{polRecord(t, 1, release, d, T, at), polRecord(t, 2, release, d, U, at.Add(time.Hour))},
			verdict: notarize.Untrusted, allow: false, mode: notarize.ModeEnforce, signer: "release", reasonHas: "is UNTRUSTED by release (2026-05-01T13:00:00Z)"},
		{name: "ops not required under library", target: "docker.io/library/nginx", records: []notarize.Record{polRecord(t, 1, ops, d, T, at)},
			verdict: notarize.Unknown, allow: false, mode: notarize.ModeEnforce},
		{name: "second ops key counts in audit rule", target: "ghcr.io/acme/app", records: []notarize.Record{polRecord(t, 1, ops2, d, T, at)},
			verdict: notarize.Trusted, allow: true, mode: notarize.ModeAudit, signer: "ops"},
		{name: "audit serves untrusted", target: "ghcr.io/acme/app", records: []notarize.Record{polRecord(t, 1, ops, d, U, at)},
			verdict: notarize.Untrusted, allow: true, mode: notarize.ModeAudit, signer: "ops", reasonHas: "UNTRUSTED by ops"},
		{name: "off serves unknown", target: "local/x", verdict: notarize.Unknown, allow: true, mode: notarize.ModeOff},
		{name: "unsupported", target: "quay.io/x/y", records: []notarize.Record{polRecord(t, 1, release, d, X, at)},
			verdict: notarize.Unsupported, allow: false, mode: notarize.ModeEnforce, signer: "release", reasonHas: "UNSUPPORTED by release"},
		{name: "trusted index trusts child", target: "docker.io/library/nginx",
			parents: []notarize.Parent{{Digest: idx, Records: []notarize.Record{asIndex(polRecord(t, 1, release, idx, T, at))}}},
			verdict: notarize.Trusted, allow: true, mode: notarize.ModeEnforce, signer: "release", reasonHas: "listed by index " + idx.String(), viaExpected: true},
		{name: "untrusted index does not", target: "docker.io/library/nginx",
			parents: []notarize.Parent{{Digest: idx, Records: []notarize.Record{polRecord(t, 1, release, idx, U, at)}}},
			verdict: notarize.Unknown, allow: false, mode: notarize.ModeEnforce},
		{name: "child's own untrust beats trusted index", target: "docker.io/library/nginx", records: []notarize.Record{polRecord(t, 2, release, d, U, at)},
			parents: []notarize.Parent{{Digest: idx, Records: []notarize.Record{polRecord(t, 1, release, idx, T, at)}}},
			verdict: notarize.Untrusted, allow: false, mode: notarize.ModeEnforce, signer: "release"},
		{name: "index trusted by a signer the rule does not require", target: "docker.io/library/nginx",
			parents: []notarize.Parent{{Digest: idx, Records: []notarize.Record{polRecord(t, 1, ops, idx, T, at)}}},
			verdict: notarize.Unknown, allow: false, mode: notarize.ModeEnforce},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ev.Evaluate(tc.target, d, tc.records, tc.parents)
			if got.Verdict != tc.verdict || got.Allow != tc.allow || got.Mode != tc.mode {
				t.Fatalf("Evaluate = verdict %v allow %v mode %v, want %v %v %v (%s)", got.Verdict, got.Allow, got.Mode, tc.verdict, tc.allow, tc.mode, got.Reason())
			}
			if got.Signer() != tc.signer {
				t.Fatalf("signer = %q, want %q", got.Signer(), tc.signer)
			}
			if (got.Via != nil) != tc.viaExpected {
				t.Fatalf("via = %+v, want set=%v", got.Via, tc.viaExpected)
			}
			if !strings.Contains(got.Reason(), d.String()) || !strings.Contains(got.Reason(), tc.reasonHas) {
				t.Fatalf("reason %q does not name the digest or lacks %q", got.Reason(), tc.reasonHas)
			}
		})
	}
}

func TestEvaluateNoRule(t *testing.T) {
	p := &notarize.Policy{Signers: map[string]notarize.PolicySigner{"r": {Keys: []string{"k"}}},
		Rules: []notarize.Rule{{Match: "docker.io/**", Require: []string{"r"}}}}
	ev, err := p.Evaluator(map[string][]crypto.PublicKey{"r": {polKey(t)}})
	if err != nil {
		t.Fatal(err)
	}
	d := notarize.DigestOf([]byte("x"))
	got := ev.Evaluate("quay.io/x", d, nil, nil)
	if got.Allow || got.RuleIndex != -1 || !strings.Contains(got.Reason(), "no policy rule matches quay.io/x") {
		t.Fatalf("no rule: allow=%v rule=%d reason %q", got.Allow, got.RuleIndex, got.Reason())
	}
}

func TestEvaluatorRefusesMissingKeys(t *testing.T) {
	p, err := notarize.ParsePolicy([]byte(examplePolicy))
	if err != nil {
		t.Fatal(err)
	}
	for name, keys := range map[string]map[string][]crypto.PublicKey{
		"missing signer": {"release": {polKey(t)}},
		"extra signer":   {"release": {polKey(t)}, "ops": {polKey(t)}, "ghost": {polKey(t)}},
		"no keys":        {"release": {}, "ops": {polKey(t)}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := p.Evaluator(keys); !errors.Is(err, notarize.ErrBadPolicy) {
				t.Fatalf("Evaluator() = %v, want ErrBadPolicy", err)
			}
		})
	}
}

func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(examplePolicy))
	f.Add([]byte("signers: {a: {keys: [k]}}\nrules: [{match: '**', require: [a]}]\n"))
	f.Add([]byte("rules: [{match: 'a/**/b/*', mode: off}]\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := notarize.ParsePolicy(b)
		if err != nil {
			if !errors.Is(err, notarize.ErrBadPolicy) {
				t.Fatalf("error %v is not ErrBadPolicy", err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("parsed policy does not validate: %v", err)
		}
		out, err := yaml.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		back, err := notarize.ParsePolicy(out)
		if err != nil {
			t.Fatalf("re-encoded policy does not parse: %v\n%s", err, out)
		}
		if len(back.Rules) != len(p.Rules) || len(back.Signers) != len(p.Signers) {
			t.Fatalf("round trip changed the policy:\n%s", out)
		}
		for i := range p.Rules {
			if back.Rules[i].Match != p.Rules[i].Match || back.Rules[i].EffectiveMode() != p.Rules[i].EffectiveMode() {
				t.Fatalf("rule %d changed in round trip", i)
			}
		}
	})
}

// globRE is an independent implementation of the rule patterns, through a
// regular expression over "/"+target, to check the matcher against.
func globRE(pat string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	for _, s := range strings.Split(pat, "/") {
		if s == "**" {
			b.WriteString(`(?:/[^/]+)*`)
			continue
		}
		b.WriteString("/")
		for i, part := range strings.Split(s, "*") {
			if i > 0 {
				b.WriteString(`[^/]*`)
			}
			b.WriteString(regexp.QuoteMeta(part))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

func FuzzPolicyMatch(f *testing.F) {
	f.Add("docker.io/library/**", "docker.io/library/nginx")
	f.Add("**/x/**", "a/x/b/x/c")
	f.Add("*a*/**/b*", "xay/b1")
	f.Add("**", "")
	f.Fuzz(func(t *testing.T, pat, target string) {
		p := &notarize.Policy{Rules: []notarize.Rule{{Match: pat, Mode: notarize.ModeOff}}}
		if p.Validate() != nil || len(target) > 256 || strings.Contains(target, "//") || target == "" ||
			strings.HasPrefix(target, "/") || strings.HasSuffix(target, "/") {
			return
		}
		_, _, got := p.Match(target)
		if want := globRE(pat).MatchString("/" + target); got != want {
			t.Fatalf("match(%q, %q) = %v, regexp %s says %v", pat, target, got, globRE(pat), want)
		}
	})
}

// TestUnverifiableFailsClosed: when the statements cannot be verified, an
// enforcing rule serves nothing, audit and off serve and say why, and no
// rule serves nothing.
func TestUnverifiableFailsClosed(t *testing.T) {
	p, err := notarize.ParsePolicy([]byte(examplePolicy))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := p.Evaluator(map[string][]crypto.PublicKey{"release": {polKey(t)}, "ops": {polKey(t)}})
	if err != nil {
		t.Fatal(err)
	}
	d := notarize.DigestOf([]byte("m"))
	cause := errors.New("trust data is stale: the ledger was last verified 6m ago")
	for _, tc := range []struct {
		target string
		allow  bool
		mode   notarize.Mode
	}{
		{"docker.io/library/nginx", false, notarize.ModeEnforce},
		{"ghcr.io/acme/app", true, notarize.ModeAudit},
		{"local/x", true, notarize.ModeOff},
	} {
		got := ev.Unverifiable(tc.target, d, cause)
		if got.Verdict != notarize.Unverifiable || got.Allow != tc.allow || got.Mode != tc.mode || !errors.Is(got.Err, cause) {
			t.Errorf("%s: verdict %v allow %v mode %v err %v, want UNVERIFIABLE %v %v", tc.target, got.Verdict, got.Allow, got.Mode, got.Err, tc.allow, tc.mode)
		}
		if r := got.Reason(); !strings.Contains(r, d.String()) || !strings.Contains(r, "stale") || got.Signer() != "" {
			t.Errorf("%s: reason %q signer %q", tc.target, r, got.Signer())
		}
	}
	strict := &notarize.Policy{Signers: map[string]notarize.PolicySigner{"r": {Keys: []string{"k"}}},
		Rules: []notarize.Rule{{Match: "docker.io/**", Require: []string{"r"}}}}
	sev, err := strict.Evaluator(map[string][]crypto.PublicKey{"r": {polKey(t)}})
	if err != nil {
		t.Fatal(err)
	}
	if got := sev.Unverifiable("quay.io/x", d, cause); got.Allow || got.RuleIndex != -1 {
		t.Errorf("no rule: allow %v rule %d", got.Allow, got.RuleIndex)
	}
	if notarize.Unverifiable.String() != "UNVERIFIABLE" {
		t.Errorf("String() = %q", notarize.Unverifiable.String())
	}
}
