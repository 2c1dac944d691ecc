package ledger

import (
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	mysqlstorage "github.com/notarize/docker-notarize/ledger/storage/mysql"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
)

// The flood, pagination, current-statement and replay defences on MySQL
// storage, and the migration of a schema version 1 database.

func TestMySQLLookupFloodByStranger(t *testing.T) {
	t.Parallel()
	tl := startLedgerAt(t, mysqlAt(mysqlEnv.database(t)), mysqlConfig(t, noteKey(t, "mysql.example/flood")))
	floodLookups(t, tl, 60)
}

func TestMySQLCurrentAndReplays(t *testing.T) {
	tl := startLedgerAt(t, mysqlAt(mysqlEnv.database(t)), mysqlConfig(t, noteKey(t, "mysql.example/current")))
	a, b := newTestSigner(t), newTestSigner(t)
	d := randomDigest(t)
	t0 := time.Now().Add(-time.Hour)
	revoked := tl.submit(t, a.signAt(t, d, notarize.StatusUntrusted, t0.Add(2*time.Minute+time.Nanosecond)), http.StatusCreated)
	tl.submit(t, a.signAt(t, d, notarize.StatusTrusted, t0.Add(2*time.Minute)), http.StatusCreated)
	bs := tl.submit(t, b.signAt(t, d, notarize.StatusTrusted, t0), http.StatusCreated)
	resp, _ := tl.getLookup(t, lookupURL(tl.url, d, api.PathCurrentSuffix, keyQuery(a.keyID, b.keyID)))
	if got := indices(resp); !slices.Equal(got, []uint64{revoked.Index, bs.Index}) {
		t.Fatalf("current: %v, want [%d %d]", got, revoked.Index, bs.Index)
	}
	entries := a.resign(t, statementAbout(randomDigest(t)), 2)
	first := tl.submit(t, entries[0], http.StatusCreated)
	if rec := tl.submit(t, entries[1], http.StatusOK); !rec.Duplicate || rec.Index != first.Index {
		t.Fatalf("re-signed replay: %+v, want a duplicate of %d", rec, first.Index)
	}
}

// TestMySQLMigrationRebuildsIndex: a database at schema version 1 (no
// notarize_entry, no notarize_statement) is migrated on start and its
// index rebuilt from the log.
func TestMySQLMigrationRebuildsIndex(t *testing.T) {
	dsn := mysqlEnv.database(t)
	tl := startLedgerAt(t, mysqlAt(dsn), mysqlConfig(t, noteKey(t, "mysql.example/migrate")))
	owner := newTestSigner(t)
	d := randomDigest(t)
	now := time.Now()
	first := owner.signAt(t, d, notarize.StatusTrusted, now.Add(-time.Minute))
	r1 := tl.submit(t, first, http.StatusCreated)
	r2 := tl.submit(t, owner.signAt(t, d, notarize.StatusUntrusted, now), http.StatusCreated)
	tl.close(t)

	db := openSQL(t, dsn)
	for _, stmt := range []string{
		"DROP TABLE `notarize_entry`",
		"DROP TABLE `notarize_statement`",
		"DROP TABLE `notarize_key_current`",
		"DELETE FROM `notarize_follow` WHERE `id` >= 1",
		"UPDATE `notarize_schema` SET `version` = 1",
	} {
		if _, err := db.ExecContext(t.Context(), stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	tl.open(t)
	resp, _ := tl.getLookup(t, lookupURL(tl.url, d, "", keyQuery(owner.keyID)))
	if got := indices(resp); !slices.Equal(got, []uint64{r1.Index, r2.Index}) {
		t.Fatalf("lookup after migration: %v", got)
	}
	resp, _ = tl.getLookup(t, lookupURL(tl.url, d, api.PathCurrentSuffix, keyQuery(owner.keyID)))
	if got := indices(resp); !slices.Equal(got, []uint64{r2.Index}) {
		t.Fatalf("current after migration: %v", got)
	}
	v, err := first.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if rec := tl.submit(t, owner.resign(t, v.Statement, 1)[0], http.StatusOK); !rec.Duplicate || rec.Index != r1.Index {
		t.Fatalf("re-signed replay after migration: %+v", rec)
	}
	var version int
	if err := db.QueryRowContext(t.Context(), "SELECT `version` FROM `notarize_schema` WHERE `id` = 0").Scan(&version); err != nil || version != mysqlstorage.SchemaVersion {
		t.Fatalf("schema version %d (%v), want %d", version, err, mysqlstorage.SchemaVersion)
	}
}

// TestMySQLConcurrentReplaysAcrossInstances: copies of one statement, each
// signed anew, submitted at once to two instances sharing a database, are
// appended once; every receipt names that entry.
func TestMySQLConcurrentReplaysAcrossInstances(t *testing.T) {
	dsn := mysqlEnv.database(t)
	skey := noteKey(t, "mysql.example/replays")
	ledgers := []*testLedger{startLedgerAt(t, mysqlAt(dsn), mysqlConfig(t, skey)), startLedgerAt(t, mysqlAt(dsn), mysqlConfig(t, skey))}
	s := newTestSigner(t)
	for round := range 5 {
		d := randomDigest(t)
		entries := s.resign(t, statementAbout(d), 8)
		recs := make([]api.Receipt, len(entries))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, e := range entries {
			body := mustMarshal(t, e)
			wg.Go(func() {
				<-start
				var err error
				if _, recs[i], err = post(t.Context(), http.DefaultClient, ledgers[i%2].url, body); err != nil {
					t.Errorf("submit %d: %v", i, err)
				}
			})
		}
		close(start)
		wg.Wait()
		for i := range recs {
			if recs[i].Index != recs[0].Index {
				t.Errorf("round %d: receipts name indices %d and %d", round, recs[0].Index, recs[i].Index)
			}
		}
		if got := ledgers[0].walk(t, d, nil); len(got) != 1 {
			t.Fatalf("round %d: %d entries about the digest, want 1", round, len(got))
		}
	}
}
