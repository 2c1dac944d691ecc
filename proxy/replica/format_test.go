package replica_test

import (
	"encoding/binary"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/replica"
)

// writeFormat writes a replica file of the given format holding one record
// and a size, as an older proxy left it (format nil: before formats).
func writeFormat(t *testing.T, path string, format []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		m, err := tx.CreateBucketIfNotExists([]byte("meta"))
		if err != nil {
			return err
		}
		if format != nil {
			if err := m.Put([]byte("format"), format); err != nil {
				return err
			}
		}
		if err := m.Put([]byte("size"), binary.BigEndian.AppendUint64(nil, 7)); err != nil {
			return err
		}
		recs, err := tx.CreateBucketIfNotExists([]byte("records"))
		if err != nil {
			return err
		}
		return recs.Put(make([]byte, 40), []byte{1, 0})
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestReplicaOfAnOlderFormatIsRebuilt: a file written by an older proxy
// (records without the media type, no tallies, or no format at all) is
// emptied, to be rebuilt from the ledger, every entry proven again; until
// it has caught up it answers no lookup (fail closed). A file of a newer
// format is refused: this proxy cannot read it.
func TestReplicaOfAnOlderFormatIsRebuilt(t *testing.T) {
	for _, tc := range []struct {
		name   string
		format []byte
	}{{"before formats", nil}, {"format 1", []byte{1}}, {"format 2", []byte{2}}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "r.db")
			writeFormat(t, path, tc.format)
			r, err := replica.Open(replica.Config{Path: path, Source: &fakeSource{}})
			if err != nil {
				t.Fatalf("Open: %v, want the file rebuilt", err)
			}
			defer r.Close()
			if st := r.Status(); st.Size != 0 || st.Records != 0 || !st.VerifiedAt.IsZero() {
				t.Fatalf("the old file was kept: %+v, want an empty replica", st)
			}
			if _, err := r.Records(t.Context(), notarize.DigestOf([]byte("x"))); err == nil {
				t.Fatal("a replica being rebuilt answered a lookup: it must fail closed until it has caught up")
			}
		})
	}
	t.Run("newer format", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "r.db")
		writeFormat(t, path, []byte{99})
		if _, err := replica.Open(replica.Config{Path: path, Source: &fakeSource{}}); err == nil || !strings.Contains(err.Error(), "newer") {
			t.Fatalf("Open of a newer format: %v, want a refusal", err)
		}
	})
}
