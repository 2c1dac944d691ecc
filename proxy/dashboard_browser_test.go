package proxy_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/notarize/docker-notarize/internal/browsertest"
	"github.com/notarize/docker-notarize/notarize"
)

// screenshot saves the tab's screenshot at path.
func screenshot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// TestDashboardInBrowser drives headless Chromium over the dashboard of a
// real proxy (real ledger, replica and upstream registry) after real
// pulls, and checks what a person sees: the counts, the refused digest with
// the command to sign it, the signers' tallies, a digest's history; at
// desktop and phone width, by keyboard, with the CSP in force (the style
// sheet and script load from the proxy itself).
func TestDashboardInBrowser(t *testing.T) {
	ctx := browsertest.Start(t, 1200, 800)
	e := newEnv(t)
	signed := digestOf(t, e.push("web/app", "v1"))
	unsigned := digestOf(t, e.push("web/unsigned", "v1"))
	revoked := digestOf(t, e.push("web/old", "v1"))
	e.push("audit/tool", "v1")
	e.sign(e.release, signed, notarize.StatusTrusted)
	e.sign(e.release, revoked, notarize.StatusTrusted)
	e.sign(e.release, revoked, notarize.StatusUntrusted)
	e.sync()
	for range 3 {
		if err := e.pull("local/web/app:v1"); err != nil {
			t.Fatal(err)
		}
	}
	for _, ref := range []string{"local/web/unsigned:v1", "local/web/old:v1"} {
		if err := e.pull(ref); err == nil {
			t.Fatalf("%s served", ref)
		}
	}
	if err := e.pull("local/audit/tool:v1"); err != nil {
		t.Fatal(err)
	}
	dir := browsertest.Artifacts(t)

	step, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(step, chromedp.Navigate(e.proxy.URL+"/ui/"), chromedp.WaitVisible(chromedp.ID("refusals"))); err != nil {
		t.Fatalf("load /ui/: %v", err)
	}
	text := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(step, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return s
	}
	for id, want := range map[string]string{"total-allowed": "3", "total-refused": "2", "total-audit": "1"} {
		if got := text(`document.getElementById("` + id + `").innerText`); got != want {
			t.Errorf("%s shows %q, want %q", id, got, want)
		}
	}
	refusals := text(`document.querySelector("ol.refusals").innerText`)
	for _, want := range []string{"local/web/unsigned", string(unsigned), "docker notarize sign " + e.upHost + "/web/unsigned@" + string(unsigned),
		"no statement from release", "local/web/old", "UNTRUSTED by release"} {
		if !strings.Contains(refusals, want) {
			t.Errorf("recent refusals lack %q:\n%s", want, refusals)
		}
	}
	if got := text(`document.querySelector('tr[data-signer="release"]').innerText`); !strings.Contains(got, "release\t1\t1\t0") {
		t.Errorf("release's tallies read %q, want 1 trusted, 1 untrusted", got)
	}
	if got := text(`document.querySelector("table.repos").innerText`); !strings.Contains(got, "local/web/app\t3\t0\t0") {
		t.Errorf("most pulled:\n%s", got)
	}
	if got := text(`document.getElementById("revocations").parentElement.innerText`); !strings.Contains(got, "UNTRUSTED") {
		t.Errorf("recent revocations:\n%s", got)
	}
	// The style sheet applied (CSP allows 'self'), and the copy script loaded.
	if got := text(`getComputedStyle(document.querySelector(".refusal")).borderLeftWidth`); got != "4px" {
		t.Errorf("style sheet not applied: border %q", got)
	}
	if os.Getenv("NOTARIZE_README_SCREENSHOT") != "" { // to refresh docs/img/ for the README
		screenshot(t, step, "../docs/img/dashboard.png")
	}
	// Keyboard: the first Tab reaches the skip link, the next ones the filters.
	if err := chromedp.Do(step, chromedp.KeyEvent("\t")); err != nil {
		t.Fatal(err)
	}
	if got := text(`document.activeElement.className`); got != "skip" {
		t.Errorf("first Tab focuses %q, want the skip link", got)
	}
	screenshot(t, step, filepath.Join(dir, "dashboard.png"))

	// Filter by verdict: the form submits, the server filters.
	if err := chromedp.Do(step, chromedp.Navigate(e.proxy.URL+"/ui/?verdict=UNKNOWN&range=1h"), chromedp.WaitVisible(chromedp.ID("refusals"))); err != nil {
		t.Fatal(err)
	}
	if got := text(`document.getElementById("total-refused").innerText + "/" + document.getElementById("total-allowed").innerText`); got != "1/0" {
		t.Errorf("filtered by UNKNOWN: refused/allowed %s, want 1/0", got)
	}

	// A digest's page, reached by its link: the whole statement history.
	if err := chromedp.Do(step, chromedp.Navigate(e.proxy.URL+"/ui/"), chromedp.WaitVisible(chromedp.ID("refusals")),
		chromedp.Click(chromedp.CSS(`a.digest[href$="`+string(revoked)+`"]`)), chromedp.WaitVisible(chromedp.CSS("table.history"))); err != nil {
		t.Fatalf("open the digest page: %v", err)
	}
	hist := text(`document.querySelector("table.history").innerText`)
	if strings.Count(hist, "\n") != 2 || !strings.Contains(hist, "TRUSTED") || !strings.Contains(hist, "UNTRUSTED") {
		t.Errorf("history of %s:\n%s", revoked, hist)
	}
	screenshot(t, step, filepath.Join(dir, "digest.png"))

	// Phone width: nothing wider than the screen.
	if err := chromedp.Do(step, chromedp.EmulateViewport(390, 844), chromedp.Navigate(e.proxy.URL+"/ui/"), chromedp.WaitVisible(chromedp.ID("refusals"))); err != nil {
		t.Fatal(err)
	}
	if got := text(`String(document.documentElement.scrollWidth <= window.innerWidth)`); got != "true" {
		t.Errorf("at 390 px the page scrolls sideways (%s px wide)", text(`String(document.documentElement.scrollWidth)`))
	}
	screenshot(t, step, filepath.Join(dir, "dashboard-phone.png"))
}
