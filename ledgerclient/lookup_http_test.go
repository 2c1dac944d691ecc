package ledgerclient

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/ledger/api"
)

// TestHTTPLookupQueries: pages and current statements are asked with the
// wire contract's paths and query parameters, and an answer over the bound
// of what was asked is refused while it is read.
func TestHTTPLookupQueries(t *testing.T) {
	var got []string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/digests/{d}", func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.Path+"?"+r.URL.RawQuery)
		io.WriteString(w, "page")
	})
	mux.HandleFunc("GET /api/v1/digests/{d}/current", func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.URL.Path+"?"+r.URL.RawQuery)
		if r.URL.Query().Get(api.QueryKeyID) == "big" {
			io.WriteString(w, strings.Repeat("x", int(maxLookupAnswer(1))+1))
			return
		}
		io.WriteString(w, "current")
	})
	o, _ := testOps(t, mux)
	after := uint64(41)
	if b, err := o.Lookup(t.Context(), digestA, lookupQuery{keyIDs: []string{"k1", "k2"}, after: &after, limit: 7}); err != nil || string(b) != "page" {
		t.Fatalf("lookup: %q, %v", b, err)
	}
	if b, err := o.Lookup(t.Context(), digestA, lookupQuery{}); err != nil || string(b) != "page" {
		t.Fatalf("lookup: %q, %v", b, err)
	}
	if b, err := o.Current(t.Context(), digestA, []string{"k1"}); err != nil || string(b) != "current" {
		t.Fatalf("current: %q, %v", b, err)
	}
	if _, err := o.Current(t.Context(), digestA, []string{"big"}); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("oversized current answer: %v", err)
	}
	path := api.PathDigests + digestA.String()
	want := []string{
		path + "?" + url.Values{api.QueryKeyID: {"k1", "k2"}, api.QueryAfter: {"41"}, api.QueryLimit: {"7"}, api.QueryTail: {api.TailInline}}.Encode(),
		path + "?",
		path + api.PathCurrentSuffix + "?keyid=k1&tail=inline",
		path + api.PathCurrentSuffix + "?keyid=big&tail=inline",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
