package ledger

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/storage/posix"
	"github.com/notarize/docker-notarize/notarize"
	bolt "go.etcd.io/bbolt"
)

// TestBoltIndexOfOldFormatIsRebuilt: an index.db written by the previous
// release (no format key; identities hashed from the entry bytes; digests
// mapped to indices alone) is rebuilt from the log on start, so lookups by
// key, current statements and duplicate detection by statement identity
// work on the log's old entries.
func TestBoltIndexOfOldFormatIsRebuilt(t *testing.T) {
	t.Setenv(envTestEngine, posix.EngineBbolt) // a bbolt file of an old format
	dir := t.TempDir()
	tl := startLedgerIn(t, dir, Config{})
	owner, other := newTestSigner(t), newTestSigner(t)
	d := randomDigest(t)
	now := time.Now()
	var entries [][]byte
	var want []uint64
	for i, e := range []*notarize.Entry{
		owner.signAt(t, d, notarize.StatusTrusted, now.Add(-time.Minute)),
		other.signAt(t, d, notarize.StatusTrusted, now),
		owner.signAt(t, d, notarize.StatusUntrusted, now),
	} {
		rec := tl.submit(t, e, http.StatusCreated)
		entries = append(entries, mustMarshal(t, e))
		if i != 1 {
			want = append(want, rec.Index)
		}
	}
	tl.close(t)

	// Rewrite index.db as the previous release left it.
	db, err := bolt.Open(filepath.Join(dir, posix.IndexFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(d.Hex())
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range []string{"meta", "ids", "entries", "bytime", "digests", "data", "keys"} {
			if err := tx.DeleteBucket([]byte(b)); err != nil {
				return err
			}
		}
		meta, _ := tx.CreateBucket([]byte("meta"))
		ids, _ := tx.CreateBucket([]byte("ids"))
		digests, _ := tx.CreateBucket([]byte("digests"))
		for i, e := range entries {
			h := sha256.Sum256(e)
			if err := ids.Put(h[:], be64(uint64(i))); err != nil {
				return err
			}
			if err := digests.Put(cat(raw, be64(uint64(i))), []byte{}); err != nil {
				return err
			}
		}
		return meta.Put([]byte("next"), be64(uint64(len(entries))))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	tl.open(t)
	resp, _ := tl.getLookup(t, lookupURL(tl.url, d, "", keyQuery(owner.keyID)))
	if got := indices(resp); !slices.Equal(got, want) {
		t.Fatalf("owner's lookup after the upgrade: %v, want %v", got, want)
	}
	resp, _ = tl.getLookup(t, lookupURL(tl.url, d, api.PathCurrentSuffix, keyQuery(owner.keyID)))
	if got := indices(resp); !slices.Equal(got, want[1:]) {
		t.Fatalf("owner's current statement after the upgrade: %v, want %v", got, want[1:])
	}
	// A re-signed replay of an old entry is a duplicate.
	old, err := notarize.ParseEntry(entries[0])
	if err != nil {
		t.Fatal(err)
	}
	v, err := old.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if rec := tl.submit(t, owner.resign(t, v.Statement, 1)[0], http.StatusOK); !rec.Duplicate || rec.Index != want[0] {
		t.Fatalf("re-signed replay of an old entry: %+v", rec)
	}
}

// cat returns a new slice holding the parts one after the other.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// be64 is v as 8 big-endian bytes.
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
