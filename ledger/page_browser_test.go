package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/notarize/docker-notarize/internal/browsertest"
	"github.com/notarize/docker-notarize/notarize"
)

// TestPageInBrowser drives headless Chromium over the ledger's public
// page at phone width: a file chosen (and one dropped) is hashed in the
// browser, and the page then shows that digest's current statements;
// the script and style sheet load under the CSP; Tab reaches the form.
func TestPageInBrowser(t *testing.T) {
	ctx := browsertest.Start(t, 375, 800)
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
		p := filepath.Join(browsertest.Artifacts(t), "ledger-page.png")
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

	// The signer's row links to the key's page: its tallies and its most
	// recent statements, the newest (a revocation) first.
	other := notarize.Digest("sha256:" + strings.Repeat("ab", 32))
	tl.submit(t, s.signNamed(t, other, notarize.StatusTrusted, time.Now().Add(-time.Hour), "release"), http.StatusCreated)
	tl.submit(t, s.signNamed(t, other, notarize.StatusUntrusted, time.Now().Add(time.Second), "release"), http.StatusCreated)
	if err := chromedp.Do(step, chromedp.Navigate(tl.url+"/?digest="+want), chromedp.WaitVisible(chromedp.ID("result")),
		chromedp.Click(chromedp.CSS("tr.st-trusted a.keylink")), chromedp.WaitVisible(chromedp.ID("tallies"))); err != nil {
		t.Fatalf("open the key's page from the digest view: %v", err)
	}
	if got := text(`document.getElementById("key-id").innerText`); got != s.keyID {
		t.Errorf("key page of %q, want %q", got, s.keyID)
	}
	if got := text(`document.getElementById("tallies").innerText`); !strings.Contains(got, "1 trusted") || !strings.Contains(got, "1 untrusted") || !strings.Contains(got, "0 unsupported") {
		t.Errorf("key page tallies %q, want 1 trusted, 1 untrusted, 0 unsupported", got)
	}
	if got := text(`document.querySelector("#recent tbody tr").innerText`); !strings.Contains(got, "untrusted") || !strings.Contains(got, string(other)) {
		t.Errorf("the newest statement row reads %q, want the revocation of %s", got, other)
	}
	if got := text(`getComputedStyle(document.querySelector("#tallies")).display`); got != "flex" {
		t.Errorf("style sheet not applied on the key page: tallies display %q", got)
	}
	if got := text(`String(document.documentElement.scrollWidth)`); got != "375" {
		t.Errorf("key page is %s px wide at a 375 px viewport", got)
	}
	if png, err := chromedp.Run(step, chromedp.CaptureScreenshot()); err != nil {
		t.Errorf("screenshot: %v", err)
	} else {
		p := filepath.Join(browsertest.Artifacts(t), "ledger-key-page.png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Errorf("screenshot: %v", err)
		}
		t.Logf("screenshot: %s", p)
	}
	// From the key's page back to a digest: its link looks it up.
	if err := chromedp.Do(step, chromedp.Click(chromedp.CSS("#recent a.digest")), chromedp.WaitVisible(chromedp.ID("result"))); err != nil {
		t.Fatalf("follow a digest link: %v", err)
	}
	if got := text(`document.getElementById("result-digest").innerText`); got != string(other) {
		t.Errorf("digest link led to %q, want %s", got, other)
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "<", `\x3c`)
	return `"` + r.Replace(s) + `"`
}
