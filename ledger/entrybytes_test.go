package ledger

import (
	"bytes"
	"encoding/binary"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	mysqlstorage "github.com/notarize/docker-notarize/ledger/storage/mysql"
	"github.com/notarize/docker-notarize/ledger/storage/posix"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
	bolt "go.etcd.io/bbolt"
)

// The index keeps every entry's bytes (lookups read no entry bundle): an
// index written before it did is rebuilt from the log on start.

// entryBytesLedger logs two statements by one key about a digest and
// returns their indices and entries as logged.
func entryBytesLedger(t *testing.T, tl *testLedger) (*testSigner, notarize.Digest, []uint64, [][]byte) {
	t.Helper()
	owner := newTestSigner(t)
	d := randomDigest(t)
	now := time.Now()
	var idx []uint64
	var logged [][]byte
	for i, st := range []notarize.Status{notarize.StatusTrusted, notarize.StatusUntrusted} {
		rec := tl.submit(t, owner.signAt(t, d, st, now.Add(time.Duration(i)*time.Second)), http.StatusCreated)
		idx = append(idx, rec.Index)
		logged = append(logged, rec.Entry)
	}
	return owner, d, idx, logged
}

// checkEntryBytes checks that lookups and a duplicate's receipt answer with
// the logged entries.
func checkEntryBytes(t *testing.T, tl *testLedger, owner *testSigner, d notarize.Digest, idx []uint64, logged [][]byte) {
	t.Helper()
	resp, _ := tl.getLookup(t, lookupURL(tl.url, d, "", keyQuery(owner.keyID)))
	if got := indices(resp); !slices.Equal(got, idx) {
		t.Fatalf("lookup after the rebuild: %v, want %v", got, idx)
	}
	for k, e := range resp.Entries {
		if !bytes.Equal(e.Entry, logged[k]) {
			t.Fatalf("entry %d: bytes differ from the logged ones", e.Index)
		}
	}
	resp, _ = tl.getLookup(t, lookupURL(tl.url, d, api.PathCurrentSuffix, keyQuery(owner.keyID)))
	if got := indices(resp); !slices.Equal(got, idx[1:]) {
		t.Fatalf("current after the rebuild: %v, want %v", got, idx[1:])
	}
	old, err := notarize.ParseEntry(logged[0])
	if err != nil {
		t.Fatal(err)
	}
	v, err := old.Verify()
	if err != nil {
		t.Fatal(err)
	}
	rec := tl.submit(t, owner.resign(t, v.Statement, 1)[0], http.StatusOK)
	if !rec.Duplicate || rec.Index != idx[0] || !bytes.Equal(rec.Entry, logged[0]) {
		t.Fatalf("re-signed replay after the rebuild: %+v, want the entry logged at %d", rec, idx[0])
	}
}

// TestBoltIndexFormat2IsRebuilt: a format 2 index (no data bucket) is
// rebuilt, so lookups find every entry's bytes.
func TestBoltIndexFormat2IsRebuilt(t *testing.T) {
	t.Setenv(envTestEngine, posix.EngineBbolt) // a bbolt file of an old format
	dir := t.TempDir()
	tl := startLedgerIn(t, dir, Config{})
	owner, d, idx, logged := entryBytesLedger(t, tl)
	tl.close(t)

	db, err := bolt.Open(filepath.Join(dir, posix.IndexFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket([]byte("data")); err != nil {
			return err
		}
		v := make([]byte, 8)
		binary.BigEndian.PutUint64(v, 2)
		return tx.Bucket([]byte("meta")).Put([]byte("format"), v)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	tl.open(t)
	checkEntryBytes(t, tl, owner, d, idx, logged)
}

// TestMySQLMigrationV3StoresEntryBytes: a database at schema version 2 (no
// notarize_entry_data, no position row 2) is migrated on start and the
// entry bytes filled in from the log.
func TestMySQLMigrationV3StoresEntryBytes(t *testing.T) {
	dsn := mysqlEnv.database(t)
	tl := startLedgerAt(t, mysqlAt(dsn), mysqlConfig(t, noteKey(t, "mysql.example/migrate3")))
	owner, d, idx, logged := entryBytesLedger(t, tl)
	tl.close(t)

	db := openSQL(t, dsn)
	for _, stmt := range []string{
		"DROP TABLE `notarize_entry_data`",
		"DROP TABLE `notarize_key_current`",
		"DELETE FROM `notarize_follow` WHERE `id` >= 2",
		"UPDATE `notarize_schema` SET `version` = 2",
	} {
		if _, err := db.ExecContext(t.Context(), stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	tl.open(t)
	checkEntryBytes(t, tl, owner, d, idx, logged)
	var version int
	if err := db.QueryRowContext(t.Context(), "SELECT `version` FROM `notarize_schema` WHERE `id` = 0").Scan(&version); err != nil || version != mysqlstorage.SchemaVersion {
		t.Fatalf("schema version %d (%v), want %d", version, err, mysqlstorage.SchemaVersion)
	}
}
