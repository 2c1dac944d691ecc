package ledger

import (
	"context"
	"crypto"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/notarize/docker-notarize/internal/browsertest"
	"github.com/notarize/docker-notarize/notarize"
)

// TestPageIdentityInBrowser: in headless Chromium, an enrolled identity
// and a claim holding markup are text on the digest's page and the key's
// page, never elements: no <img> is created, no handler runs, and the
// claimed and enrolled identities read as typed.
func TestPageIdentityInBrowser(t *testing.T) {
	ctx := browsertest.Start(t, 375, 800)
	s := newTestSigner(t)
	hostile := `<img src=x onerror="document.title='pwned'">Eve`
	tl := startLedger(t, Config{
		Signers:    []crypto.PublicKey{s.pub},
		Identities: map[string]notarize.Identity{s.keyID: {Name: hostile, Email: "eve&co@example.com"}},
	})
	d := randomDigest(t)
	tl.submit(t, s.signAs(t, d, hostile, "eve&co@example.com"), http.StatusCreated)

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
	for _, pg := range []struct{ path, wait string }{{"/?digest=" + d.String(), "result"}, {"/keys/" + s.keyID, "enrolled"}} {
		if err := chromedp.Do(step, chromedp.Navigate(tl.url+pg.path), chromedp.WaitVisible(chromedp.ID(pg.wait))); err != nil {
			t.Fatalf("load %s: %v", pg.path, err)
		}
		if got := text(`String(document.querySelectorAll("img").length)`); got != "0" {
			t.Errorf("%s: the identity's markup made %s <img> element(s)", pg.path, got)
		}
		if got := text(`document.title`); got == "pwned" {
			t.Errorf("%s: the identity's script ran", pg.path)
		}
		if got := text(`document.querySelector("strong.enrolled").innerText`); got != hostile {
			t.Errorf("%s: enrolled name reads %q, want %q", pg.path, got, hostile)
		}
		if got := text(`document.querySelector(".claimed").innerText`); got != hostile+" <eve&co@example.com>" {
			t.Errorf("%s: claimed identity reads %q", pg.path, got)
		}
	}
}
