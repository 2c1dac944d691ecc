// Package browsertest starts headless Chromium for the module's browser
// tests (the proxy's dashboard, the ledger's public page): Debian's
// chromium, installed by scripts/chromium.sh when missing, driven with
// chromedp. It is imported only from _test.go files.
package browsertest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/notarize/docker-notarize/internal/testutil"
)

// Chromium returns the path of Debian's chromium, installing it with
// scripts/chromium.sh when missing. The test is skipped, loudly, only when
// the script says it cannot be installed (exit 77: not root).
func Chromium(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(moduleRoot(t), "scripts", "chromium.sh")).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 77 {
		t.Skip("SKIPPING THE BROWSER TEST: chromium is not installed and cannot be installed here (scripts/chromium.sh: " +
			strings.TrimSpace(string(ee.Stderr)) + ")")
	}
	if err != nil {
		t.Fatalf("scripts/chromium.sh: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// Start starts headless chromium with a fresh profile and a window of the
// given size, without background networking (this machine reaches no
// other host), and returns a tab; it is stopped when the test ends.
func Start(t *testing.T, width, height int) context.Context {
	t.Helper()
	path := Chromium(t)
	profile, err := os.MkdirTemp("", "notarize-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 { // chromium's children may still write for a moment after it stops
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(width, height),
		// Chromium's singleton socket directory (org.chromium.Chromium.*)
		// goes to $TMPDIR and stays there when the browser is killed, as
		// at a test's end: inside the profile, the cleanup removes it.
		chromedp.Env("TMPDIR="+profile),
	)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Run starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(width), int64(height))); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// Artifacts is where screenshots go: $NOTARIZE_ARTIFACTS, or a directory
// of the test's.
func Artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("NOTARIZE_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// moduleRoot is the directory of the module's go.mod (testutil.ModuleRoot).
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}
