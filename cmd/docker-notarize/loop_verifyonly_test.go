//go:build notarize_verifyonly && unix

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/plugin"
)

// Two verify-only builds, each installed as the other's full CLI: neither
// is the other's file (os.SameFile does not see it), and without
// NOTARIZE_VERIFYONLY_EXECUTED they would execute each other forever
// (review: dropping that check passed every test).
func TestVerifyOnlyFrontsInACycle(t *testing.T) {
	dir1, dir2 := t.TempDir(), t.TempDir()
	front1 := filepath.Join(dir1, "docker-notarize")
	if out, err := exec.Command("go", "build", "-tags", "notarize_verifyonly", "-o", front1, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	b, err := os.ReadFile(front1)
	if err != nil {
		t.Fatal(err)
	}
	front2 := filepath.Join(dir2, "docker-notarize")
	if err := os.WriteFile(front2, b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range [][2]string{{front2, filepath.Join(dir1, plugin.FullCLIName)}, {front1, filepath.Join(dir2, plugin.FullCLIName)}} {
		if err := os.Symlink(l[0], l[1]); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, front1, "key", "list")
	cmd.Env = append(os.Environ(), "NOTARIZE_VERIFYONLY_EXECUTED=")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the two fronts executed each other until killed: %s", out)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != plugin.ExitUsage || !strings.Contains(string(out), "verify-only build too") {
		t.Fatalf("err %v, output %s; want exit %d naming the loop", err, out, plugin.ExitUsage)
	}
}
