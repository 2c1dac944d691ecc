package ledger

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/notarize/docker-notarize/ledger/api"
)

// FuzzLookupQuery: any query string either is refused as a bad request or
// gives options within the contract's bounds.
func FuzzLookupQuery(f *testing.F) {
	for _, q := range []string{"", "after=0&limit=1000", "keyid=" + strings.Repeat("a", 64), "after=-1", "limit=0",
		"after=18446744073709551615", "limit=1&limit=2", "after=%2B1", "limit=0001"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		r := httptest.NewRequest("GET", "/x", nil)
		r.URL.RawQuery = q
		r.SetPathValue("digest", "sha256:"+strings.Repeat("ab", 32))
		_, opts, err := lookupQuery(r)
		if err != nil {
			return
		}
		if opts.Limit < 0 || opts.Limit > api.MaxLookupLimit || len(opts.KeyIDs) > api.MaxLookupKeyIDs {
			t.Fatalf("query %q gave %+v", q, opts)
		}
		if _, err := lookupKeyIDs(opts.KeyIDs, 0, api.MaxLookupKeyIDs); err == nil {
			for _, k := range opts.KeyIDs {
				if !isKeyID(k) {
					t.Fatalf("key ID %q accepted", k)
				}
			}
		}
	})
}
