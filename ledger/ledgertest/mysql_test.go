package ledgertest_test

import (
	"net/http"
	"testing"

	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
)

// TestMySQLInstances starts two test ledgers on one MariaDB database: one
// ledger, two instances.
func TestMySQLInstances(t *testing.T) {
	servers := ledgertest.StartInstances(t, 2, "ledgertest.example/mysql")
	a, b := servers[0], servers[1]
	if a.VerifierKey != b.VerifierKey || a.Origin != b.Origin {
		t.Fatalf("instances disagree: %s %s", a.VerifierKey, b.VerifierKey)
	}
	sv, _ := newSigner(t)
	body := entry(t, sv)
	status, rec := submit(t, a.URL, body)
	if status != http.StatusCreated {
		t.Fatalf("submit to a: %d", status)
	}
	if status, dup := submit(t, b.URL, body); status != http.StatusOK || !dup.Duplicate || dup.Index != rec.Index {
		t.Fatalf("submit to b: %d %+v, want a duplicate of %d", status, dup, rec.Index)
	}
	e, err := notarize.ParseEntry(body)
	if err != nil {
		t.Fatal(err)
	}
	v, err := e.Verify()
	if err != nil {
		t.Fatal(err)
	}
	c, err := ledgerclient.New(t.Context(), ledgerclient.Config{URL: b.URL, VerifierKey: b.VerifierKey, Home: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Lookup(t.Context(), v.Statement.Digest())
	if err != nil || len(r.Records) != 1 || r.Records[0].Index != rec.Index {
		t.Fatalf("lookup through b: %+v, %v", r, err)
	}
	b.Restart(t)
	if _, err := c.Latest(t.Context()); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}
