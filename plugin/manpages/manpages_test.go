package manpages

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/notarize/docker-notarize/plugin"
)

// TestGenerate: one page per command of the tree, named as
// docker's own (docker-notarize-key-list.1), with the command's examples,
// its flags, and no default taken from the environment of who generated
// them.
func TestGenerate(t *testing.T) {
	t.Setenv(plugin.EnvLedger, "http://ledger.from-my-shell.example")
	dir := t.TempDir()
	if err := Generate(dir); err != nil {
		t.Fatal(err)
	}
	root, err := plugin.ManCommandTree()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	visitAll(root, func(c *cobra.Command) {
		if c.IsAvailableCommand() || c == root {
			want = append(want, strings.ReplaceAll(c.CommandPath(), " ", "-")+".1")
		}
	})
	for _, name := range want {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("no man page %s: %v", name, err)
		}
		if !strings.Contains(string(b), `.TH "DOCKER-NOTARIZE" "1"`) {
			t.Errorf("%s: no man header:\n%.300s", name, b)
		}
	}
	sign, err := os.ReadFile(filepath.Join(dir, "docker-notarize-sign.1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"EXAMPLE", "docker notarize sign --key release", "--ledger-key", "SEE ALSO", "docker-notarize(1)"} {
		if !strings.Contains(string(sign), s) {
			t.Errorf("docker-notarize-sign.1 lacks %q:\n%s", s, sign)
		}
	}
	if strings.Contains(string(sign), "from-my-shell") {
		t.Errorf("docker-notarize-sign.1 has a default from the environment:\n%s", sign)
	}
	keyList, err := os.ReadFile(filepath.Join(dir, "docker-notarize-key-list.1"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(keyList), "ledger-key") {
		t.Errorf("key list's page lists the ledger flags:\n%s", keyList)
	}
}

func visitAll(cmd *cobra.Command, fn func(*cobra.Command)) {
	for _, c := range cmd.Commands() {
		visitAll(c, fn)
	}
	fn(cmd)
}
