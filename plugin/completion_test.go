package plugin

import (
	"slices"
	"strings"
	"testing"
)

// completions runs cobra's hidden __complete command as a shell would and
// returns the candidates (without descriptions) and the directive line.
func completions(t *testing.T, h *harness, args ...string) (names []string, directive string) {
	t.Helper()
	out, errOut, code := h.run(append([]string{"__complete"}, args...)...)
	if code != 0 {
		t.Fatalf("__complete %v: exit %d\n%s\n%s", args, code, out, errOut)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(line, ":") {
			directive = line
			continue
		}
		name, _, _ := strings.Cut(line, "\t")
		names = append(names, name)
	}
	return names, directive
}

// TestCompletion: key names complete for --key, --signer and key export;
// a path is allowed there too (file completion stays on, ShellCompDirective
// 0), but not for key export's NAME (4, no files); --ledger-ca and
// --witness-policy complete files; the ledger flags are not offered where
// they do not apply.
func TestCompletion(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice", "bob")
	for _, tc := range []struct {
		args          []string
		want          []string
		wantDirective string
	}{
		{[]string{"sign", "--key", ""}, []string{"alice", "bob"}, ":0"},
		{[]string{"untrust", "--key", "b"}, []string{"bob"}, ":0"},
		{[]string{"verify", "--signer", ""}, []string{"alice", "bob"}, ":0"},
		{[]string{"inspect", "--signer", "al"}, []string{"alice"}, ":0"},
		{[]string{"audit", "--signer", ""}, []string{"alice", "bob"}, ":0"},
		{[]string{"ls", "--signer", ""}, []string{"alice", "bob"}, ":0"},
		{[]string{"key", "export", ""}, []string{"alice", "bob"}, ":4"},
		{[]string{"key", "export", "alice", ""}, nil, ":4"},
		{[]string{"verify", "-o", ""}, []string{"text", "json"}, ":4"},
		{[]string{"verify", "--ledger-ca", ""}, []string{"pem", "crt", "cer"}, ":8"},
		{[]string{"ledger", "trust", "http://127.0.0.1:7070", "--ledger-ca", ""}, []string{"pem", "crt", "cer"}, ":8"},
		{[]string{"verify", "--witness-policy", ""}, nil, ":0"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			got, dir := completions(t, h, tc.args...)
			if !slices.Equal(got, tc.want) || dir != tc.wantDirective {
				t.Fatalf("completions %q %s, want %q %s", got, dir, tc.want, tc.wantDirective)
			}
		})
	}

	// The ledger flags are offered where a command talks to a ledger, and
	// nowhere else.
	for _, tc := range []struct {
		args   []string
		offers bool
	}{
		{[]string{"verify", "--"}, true},
		{[]string{"sign", "--"}, true},
		{[]string{"inspect", "--"}, true},
		{[]string{"audit", "--"}, true},
		{[]string{"ls", "--"}, true},
		{[]string{"key", "list", "--"}, false},
		{[]string{"key", "export", "--"}, false},
		{[]string{"ledger", "list", "--"}, false},
		{[]string{"version", "--"}, false},
	} {
		got, _ := completions(t, h, tc.args...)
		if slices.Contains(got, "--ledger") != tc.offers || slices.Contains(got, "--ledger-key") != tc.offers {
			t.Errorf("%v offers %q: want the ledger flags %v", tc.args, got, tc.offers)
		}
	}
}

// TestLedgerFlagsOnlyWhereUsed: a command that does not talk to a ledger
// refuses the ledger flags after its name (exit 125) and does not list them
// in its help; before the command's name they are still taken, as before.
func TestLedgerFlagsOnlyWhereUsed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "alice")
	for _, args := range [][]string{
		{"key", "list", "--ledger", "http://127.0.0.1:1"},
		{"key", "export", "--ledger-key", "x", "alice"},
		{"ledger", "list", "--witness-policy", "p"},
		{"version", "--ledger-ca", "ca.pem"},
	} {
		if _, errOut, code := h.run(args...); code != ExitUsage || !strings.Contains(errOut, "unknown flag") {
			t.Errorf("%v: exit %d, stderr %q; want %d, unknown flag", args, code, errOut, ExitUsage)
		}
	}
	for _, args := range [][]string{{"key", "list", "--help"}, {"version", "--help"}, {"ledger", "list", "--help"}, {"--help"}} {
		out := h.mustRun(0, args...)
		if strings.Contains(out, "--ledger string") || strings.Contains(out, "--ledger-key") || strings.Contains(out, "--witness-policy") {
			t.Errorf("%v lists the ledger flags:\n%s", args, out)
		}
	}
	for _, args := range [][]string{{"verify", "--help"}, {"sign", "--help"}, {"inspect", "--help"}, {"audit", "--help"}, {"ls", "--help"}} {
		out := h.mustRun(0, args...)
		for _, f := range []string{"--ledger string", "--ledger-key string", "--ledger-ca string", "--witness-policy string"} {
			if !strings.Contains(out, f) {
				t.Errorf("%v does not list %s:\n%s", args, f, out)
			}
		}
	}
	// Before the command's name, as `docker notarize --ledger URL key list`.
	h.mustRun(0, "--ledger", "http://127.0.0.1:1", "key", "list")
}
