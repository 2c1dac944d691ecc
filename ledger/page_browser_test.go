package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/notarize/docker-notarize/notarize"
)

// pageChromium returns the path of Debian's chromium, installing it with
// scripts/chromium.sh when missing; the test is skipped, loudly, only when
// the script says it cannot be installed (exit 77).
func pageChromium(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("../scripts/chromium.sh").Output()
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

// pageBrowser starts headless chromium with a fresh profile at the given
// viewport and returns a tab.
func pageBrowser(t *testing.T, width, height int) context.Context {
	t.Helper()
	path := pageChromium(t)
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
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(width, height),
	)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(width), int64(height))); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// TestPageInBrowser drives headless Chromium over the ledger's public
// page at phone width: a file chosen (and one dropped) is hashed in the
// browser, and the page then shows that digest's current statements;
// the script and style sheet load under the CSP; Tab reaches the form.
func TestPageInBrowser(t *testing.T) {
	ctx := pageBrowser(t, 375, 800)
	tl := startLedger(t, Config{})
	content := []byte("a file whose SHA-256 the browser computes\n")
	sum := sha256.Sum256(content)
	want := "sha256:" + hex.EncodeToString(sum[:])
	s := newTestSigner(t)
	tl.submit(t, s.signNamed(t, notarize.Digest(want), notarize.StatusTrusted, time.Now(), "release"), http.StatusCreated)
	file := filepath.Join(t.TempDir(), "release.tar")
	if err := os.WriteFile(file, content, 0o600); err != nil {
		t.Fatal(err)
	}

	step, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	text := func(js string) string {
		t.Helper()
		v, err := chromedp.Run(step, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return v
	}
	if err := chromedp.Do(step, chromedp.Navigate(tl.url+"/"), chromedp.WaitVisible(chromedp.ID("drop"))); err != nil {
		t.Fatalf("load /: %v", err)
	}
	// The style sheet applied under the CSP; nothing overflows at phone width.
	if got := text(`getComputedStyle(document.getElementById("drop")).borderTopStyle`); got != "dashed" {
		t.Errorf("style sheet not applied: drop zone border %q", got)
	}
	if got := text(`String(document.documentElement.scrollWidth)`); got != "375" {
		t.Errorf("page is %s px wide at a 375 px viewport", got)
	}
	// Keyboard: the first Tab reaches the digest field.
	if err := chromedp.Do(step, chromedp.KeyEvent("\t")); err != nil {
		t.Fatal(err)
	}
	if got := text(`document.activeElement.id`); got != "digest" {
		t.Errorf("first Tab focuses %q, want the digest field", got)
	}

	// Choose the file: the browser hashes it and looks the digest up.
	if err := chromedp.Do(step, chromedp.SetUploadFiles(chromedp.ID("file"), []string{file}),
		chromedp.WaitVisible(chromedp.ID("result"))); err != nil {
		t.Fatalf("choose a file: %v", err)
	}
	if got := text(`document.getElementById("result-digest").innerText`); got != want {
		t.Errorf("looked-up digest %q, want the file's SHA-256 %q", got, want)
	}
	if got := text(`document.querySelector("tr.st-trusted code.keyid").innerText`); got != s.keyID {
		t.Errorf("the signer's row shows key %q, want %q", got, s.keyID)
	}
	if png, err := chromedp.Run(step, chromedp.CaptureScreenshot()); err != nil {
		t.Errorf("screenshot: %v", err)
	} else {
		dir := os.Getenv("NOTARIZE_ARTIFACTS") // as the proxy's browser test; else a temp dir
		if dir == "" {
			dir = t.TempDir()
		}
		p := filepath.Join(dir, "ledger-page.png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Errorf("screenshot: %v", err)
		}
		t.Logf("screenshot: %s", p)
	}

	// Drop a file (made in the page) on the drop zone: same path.
	if err := chromedp.Do(step, chromedp.Navigate(tl.url+"/"), chromedp.WaitVisible(chromedp.ID("drop"))); err != nil {
		t.Fatal(err)
	}
	drop := `(() => {
		const dt = new DataTransfer();
		dt.items.add(new File([` + jsString(string(content)) + `], "dropped.bin"));
		document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
		return "";
	})()`
	if _, err := chromedp.Run(step, chromedp.Evaluate[string](drop)); err != nil {
		t.Fatalf("drop: %v", err)
	}
	if err := chromedp.Do(step, chromedp.WaitVisible(chromedp.ID("result"))); err != nil {
		t.Fatalf("after the drop: %v", err)
	}
	if got := text(`document.getElementById("result-digest").innerText`); got != want {
		t.Errorf("dropped file: looked-up digest %q, want %q", got, want)
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "<", `\x3c`)
	return `"` + r.Replace(s) + `"`
}
