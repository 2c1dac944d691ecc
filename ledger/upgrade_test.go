package ledger

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
	bolt "go.etcd.io/bbolt"
)

// TestBoltIndexOfOldFormatIsRebuilt: an index.db written by the previous
// release (no format key; identities hashed from the entry bytes; digests
// mapped to indices alone) is rebuilt from the log on start, so lookups by
// key, current statements and duplicate detection by statement identity
// work on the log's old entries.
func TestBoltIndexOfOldFormatIsRebuilt(t *testing.T) {
	dir := t.TempDir()
	tl := startLedger(t, Config{DataDir: dir})
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
	db, err := bolt.Open(filepath.Join(dir, indexFileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(d.Hex())
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range boltBuckets {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		meta, _ := tx.CreateBucket(bucketMeta)
		ids, _ := tx.CreateBucket(bucketIDs)
		digests, _ := tx.CreateBucket(bucketDigests)
		for i, e := range entries {
			h := sha256.Sum256(e)
			if err := ids.Put(h[:], be64(uint64(i))); err != nil {
				return err
			}
			if err := digests.Put(cat(raw, be64(uint64(i))), []byte{}); err != nil {
				return err
			}
		}
		return meta.Put(nextKey, be64(uint64(len(entries))))
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
