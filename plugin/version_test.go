package plugin

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestEveryCommandHasExamples: every command's help has an Examples
// section, and each example runs this command.
func TestEveryCommandHasExamples(t *testing.T) {
	root := newRootCmd("docker-notarize", false, nil, defaultEnv())
	checked := 0
	visitAll(root, func(c *cobra.Command) {
		if !c.Runnable() || c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		checked++
		path := strings.TrimPrefix(c.CommandPath(), "docker-notarize")
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%q has no Example", "docker notarize"+path)
			return
		}
		if c == root {
			return
		}
		for line := range strings.SplitSeq(c.Example, "\n") {
			if !strings.Contains(line, "docker notarize") {
				continue
			}
			// The line runs this command: its words, in order, once the
			// root's flags are skipped (in a pipeline, one of its
			// commands does).
			want := strings.Fields(path)
			ok, ran := false, []string{}
			for seg := range strings.SplitSeq(line, "|") {
				at := strings.Index(seg, "docker notarize")
				if at < 0 {
					continue
				}
				words := strings.Fields(seg[at+len("docker notarize"):])
				got := []string{}
				for i := 0; i < len(words) && len(got) < len(want); i++ {
					if words[i] == "--ledger" || words[i] == "--ledger-key" || words[i] == "--witness-policy" {
						i++
						continue
					}
					got = append(got, words[i])
				}
				ok = ok || strings.Join(got, " ") == strings.Join(want, " ")
				for _, alias := range c.Aliases {
					ok = ok || strings.Join(got, " ") == strings.Join(append(want[:len(want)-1:len(want)-1], alias), " ")
				}
				ran = append(ran, strings.Join(got, " "))
			}
			if !ok {
				t.Errorf("%q: example %q runs %q", "docker notarize"+path, strings.TrimSpace(line), ran)
			}
		}
	})
	if checked < 16 { // root, key ×4, sign ×3, verify, audit, inspect, ledger ×4, version
		t.Errorf("checked %d commands, want every one (16)", checked)
	}
}

// TestVersion: `version` prints the plugin's metadata version and the Go
// version, as text and as JSON; the standalone binary has --version.
func TestVersion(t *testing.T) {
	old := Version
	Version = "1.2.3-test"
	t.Cleanup(func() { Version = old })
	h := newHarness(t)

	out := h.mustRun(0, "version")
	for _, want := range []string{"1.2.3-test", runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}
	var v versionOutput
	if err := json.Unmarshal([]byte(h.mustRun(0, "version", "-o", "json")), &v); err != nil {
		t.Fatal(err)
	}
	if v.Version != "1.2.3-test" || v.GoVersion != runtime.Version() || v.OS != runtime.GOOS || v.Arch != runtime.GOARCH {
		t.Errorf("version -o json = %+v", v)
	}
	if Metadata(Version).Version != v.Version {
		t.Errorf("metadata says %q, version says %q", Metadata(Version).Version, v.Version)
	}
	// cobra prints --version on the command's output (stdout in the binary).
	root := newRootCmd("docker-notarize", false, nil, defaultEnv())
	var buf strings.Builder
	root.SetOut(&buf)
	root.SetArgs([]string{"--version"})
	if err := root.Execute(); err != nil || buf.String() != "docker-notarize version 1.2.3-test\n" {
		t.Errorf("--version: %v, printed %q", err, buf.String())
	}
	if _, _, code := h.run("version", "-o", "yaml"); code != ExitUsage {
		t.Errorf("version -o yaml exits %d, want %d", code, ExitUsage)
	}
	if _, _, code := h.run("version", "extra"); code != ExitUsage {
		t.Errorf("version extra exits %d, want %d", code, ExitUsage)
	}
}
