package ledgertest_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/ledgertest"
	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
)

// TestMySQLInstances starts two test ledgers on one MariaDB database: one
// ledger, two instances.
func TestMySQLInstances(t *testing.T) {
	db, err := ledgertest.StartMariaDB(t.Context())
	if errors.Is(err, ledgertest.ErrNoMariaDB) {
		ledgertest.SkipNoMariaDB(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := db.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	dsn := db.Database(t)
	skey, _, err := ledger.NewSignerKey("ledgertest.example/mysql")
	if err != nil {
		t.Fatal(err)
	}
	a := ledgertest.Start(t, ledgertest.WithMySQL(dsn), ledgertest.WithSignerKey(skey))
	b := ledgertest.Start(t, ledgertest.WithMySQL(dsn), ledgertest.WithSignerKey(skey))
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
