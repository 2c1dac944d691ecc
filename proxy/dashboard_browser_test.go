package proxy_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/notarize/docker-notarize/internal/browsertest"
	"github.com/notarize/docker-notarize/internal/witnesstest"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
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

	// The witnesses panel of a proxy with a witness policy: each witness's
	// cosignature on the last verified checkpoint, a forged one named so.
	w := witnessedEnv(t)
	if err := chromedp.Do(step, chromedp.EmulateViewport(1200, 800), chromedp.Navigate(w.proxy.URL+"/ui/"), chromedp.WaitVisible(chromedp.ID("witnesses"))); err != nil {
		t.Fatalf("load the witnessed dashboard: %v", err)
	}
	panel := text(`document.getElementById("witnesses").innerText`)
	for _, want := range []string{"w1 (witness1.test)", "w2 (witness2.test)", "w3 (witness3.test)", "FORGED cosignature", "none on this checkpoint"} {
		if !strings.Contains(panel, want) {
			t.Errorf("witnesses panel lacks %q:\n%s", want, panel)
		}
	}
	if strings.Count(panel, "cosigned") < 2 {
		t.Errorf("witnesses panel shows no cosigned witness:\n%s", panel)
	}
	if got := text(`document.getElementById("witness-quorum").innerText`); !strings.Contains(got, "quorum fresh") || !strings.Contains(got, "2 of 3") {
		t.Errorf("quorum line %q", got)
	}
	if err := chromedp.Do(step, chromedp.ScrollIntoView(chromedp.ID("health"))); err != nil {
		t.Fatal(err)
	}
	screenshot(t, step, filepath.Join(dir, "dashboard-witnesses.png"))
}

// witnessedEnv is a proxy whose replica checks a 2-of-3 witness policy and
// follows the ledger through a front where w1 and w2 cosign every
// checkpoint and a line under w3's key is forged.
func witnessedEnv(t *testing.T) *env {
	t.Helper()
	ledger := ledgertest.Start(t)
	w1, w2, w3 := witnesstest.Three(t)
	policy, err := ledgerclient.ParseWitnessPolicy(witnesstest.Policy(2, w1, w2, w3))
	if err != nil {
		t.Fatal(err)
	}
	front := witnesstest.NewFront(t, ledger.URL, w1, w2)
	u, err := url.Parse(front.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		if resp.StatusCode != http.StatusOK || !strings.HasSuffix(resp.Request.URL.Path, "/checkpoint") {
			return nil
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return err
		}
		b = w3.Forge(b, time.Now())
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
		resp.Header.Set("Content-Length", strconv.Itoa(len(b)))
		return nil
	}
	forger := httptest.NewServer(rp)
	t.Cleanup(forger.Close)
	e := newEnv(t, withLedger(ledger), withFollow(forger.URL), withWitnesses(policy))
	e.sign(e.release, digestOf(t, e.push("web/app", "v1")), notarize.StatusTrusted)
	e.sync()
	return e
}

// witnessRows returns each witness row of the dashboard's witnesses table
// as "NAME: STATE".
func witnessRows(t *testing.T, body string) map[string]string {
	t.Helper()
	re := regexp.MustCompile(`<tr data-witness="([^"]+)">.*?<td class="w-(\w+)">`)
	out := map[string]string{}
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// TestDashboardWitnessPanel: the dashboard shows the witness policy's
// quorum and each witness's cosignature on the replica's last verified
// checkpoint; a forged line under a witness's key is shown as forged,
// never as a cosignature. Without a policy the panel says so.
func TestDashboardWitnessPanel(t *testing.T) {
	e := witnessedEnv(t)
	code, _, body := e.do(http.MethodGet, "/ui/", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /ui/: %d", code)
	}
	page := string(body)
	rows := witnessRows(t, page)
	want := map[string]string{"w1 (witness1.test)": "cosigned", "w2 (witness2.test)": "cosigned", "w3 (witness3.test)": "forged"}
	if len(rows) != 3 || rows["w1 (witness1.test)"] != want["w1 (witness1.test)"] || rows["w2 (witness2.test)"] != want["w2 (witness2.test)"] || rows["w3 (witness3.test)"] != want["w3 (witness3.test)"] {
		t.Fatalf("witness rows %v, want %v", rows, want)
	}
	for _, s := range []string{"quorum fresh", "2 of 3 must cosign", "FORGED cosignature", "size " + strconv.FormatUint(e.replica.Status().CheckpointSize, 10)} {
		if !strings.Contains(page, s) {
			t.Errorf("the dashboard lacks %q", s)
		}
	}

	plain := newEnv(t)
	_, _, body = plain.do(http.MethodGet, "/ui/", nil)
	if !strings.Contains(string(body), "No witness policy") || strings.Contains(string(body), `id="witnesses"`) {
		t.Fatalf("the dashboard of a proxy without witnesses:\n%s", body)
	}
}
