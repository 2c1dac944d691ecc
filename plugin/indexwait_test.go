package plugin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
)

// hidingFront is a front before the ledger at upstream that never asks for
// the inline tail and answers every current lookup of a key's statements
// with the key's first statement about the digest (its genuine entry,
// inclusion proof, map proof and checkpoint, from the ledger's paginated
// lookup): an untrust after it is hidden.
func hidingFront(t *testing.T, upstream string) *httptest.Server {
	t.Helper()
	get := func(r *http.Request, path string, q string) ([]byte, int, http.Header, error) {
		req, err := http.NewRequestWithContext(r.Context(), r.Method, upstream+path+"?"+q, nil)
		if err != nil {
			return nil, 0, nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return b, resp.StatusCode, resp.Header, err
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		q.Del(api.QueryTail)
		body, code, hdr, err := get(r, r.URL.Path, q.Encode())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if code == http.StatusOK && strings.HasSuffix(r.URL.Path, api.PathCurrentSuffix) {
			var page api.LookupResponse
			pb, _, _, err := get(r, strings.TrimSuffix(r.URL.Path, api.PathCurrentSuffix), q.Encode())
			if err == nil && json.Unmarshal(pb, &page) == nil && len(page.Entries) > 1 {
				page.Entries, page.Next = page.Entries[:1], nil
				body, _ = json.Marshal(&page)
			}
		}
		w.Header().Set("Content-Type", hdr.Get("Content-Type"))
		w.WriteHeader(code)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestUntrustWaitsForTheIndex: untrust returns only once a map root covers
// the untrust and every root from before it is older than verify's default
// --max-index-lag (--index-wait, "indexed": true), so that a verify
// started after it, through a front hiding the untrust behind the root
// from before it, exits 4 even though it takes a recent root as the proof:
// without the wait that root was still recent, the untrust in the log
// after it, where such a verify takes the statements as the ledger gives
// them, and the front's TRUSTED was believed (red team 9 showed the root
// alone is not enough: TestRedteam9UntrustIndexedThenRootReplayed).
// --index-wait 0 returns at the receipt.
func TestUntrustWaitsForTheIndex(t *testing.T) {
	t.Parallel()
	h := newHarnessWith(t, []ledgertest.Option{ledgertest.WithConfig(func(c *ledger.Config) {
		c.MapCommitInterval = 2 * time.Second
	})}, "alice")
	h.indexHold = defaultIndexHold
	app := h.reg.host + "/app:v1"
	var s signResult
	if err := json.Unmarshal([]byte(h.mustRun(0, "sign", "-o", "json", app)), &s); err != nil {
		t.Fatal(err)
	}
	if s.Indexed != nil {
		t.Fatalf("sign waited for the index: %+v", s)
	}
	// A root covering the trust, so that the verify below has a recent
	// root that does not cover the untrust unless untrust waited.
	rt9WaitRoot(t, h.ledger.URL, s.Statements[0].Digest, s.Statements[0].KeyID)
	var u signResult
	if err := json.Unmarshal([]byte(h.mustRun(0, "untrust", "-o", "json", app)), &u); err != nil {
		t.Fatal(err)
	}
	if u.Indexed == nil || !*u.Indexed {
		t.Fatalf("untrust did not wait for the index: %+v", u)
	}
	front := hidingFront(t, h.ledger.URL)
	out, errOut, code := h.runWithEnv(map[string]string{EnvLedger: front.URL}, "verify", app)
	if code != ExitCouldNotVerify {
		t.Fatalf("verify through a front hiding the untrust, after untrust returned: exit %d, want %d\n%s%s", code, ExitCouldNotVerify, out, errOut)
	}
	h.mustRun(1, "verify", app)

	var n signResult
	if err := json.Unmarshal([]byte(h.mustRun(0, "unsupport", "--index-wait", "0", "-o", "json", app)), &n); err != nil {
		t.Fatal(err)
	}
	if n.Indexed != nil {
		t.Fatalf("--index-wait 0 waited: %+v", n)
	}
	if _, _, code := h.runWithEnv(nil, "untrust", "--index-wait", "-1s", app); code != ExitUsage {
		t.Fatalf("--index-wait -1s: exit %d, want %d", code, ExitUsage)
	}
}
