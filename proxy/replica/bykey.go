package replica

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/notarize/docker-notarize/notarize"
)

// bucketByKey indexes the records by signer: digest (32) ‖ key ID (32) ‖
// log index (8) → nothing; the record itself stays under digest ‖ index in
// bucketRecords. A decision reads only the accepted keys' records about a
// digest through it, so strangers who flood a digest (or a key's
// revocation digest) with statements by their own keys neither slow a
// decision down nor push it past maxRecordsPerDigest into UNVERIFIABLE.
var bucketByKey = []byte("bykey")

// byKeyEntry returns the bucketByKey key of the record at index about the
// digest dh by the raw key ID kid.
func byKeyEntry(dh, kid []byte, index uint64) []byte {
	k := make([]byte, 0, 72)
	k = append(k, dh...)
	k = append(k, kid...)
	return binary.BigEndian.AppendUint64(k, index)
}

// RecordsBy returns the verified records about d by the keys keyIDs, in
// log order; records by other keys are not read. Each key's records are
// bounded by maxRecordsPerDigest, as Records bounds all of a digest's. It
// fails with ErrStale as Records does.
func (r *Replica) RecordsBy(ctx context.Context, d notarize.Digest, keyIDs []string) ([]notarize.Record, error) {
	if err := r.Fresh(); err != nil {
		return nil, err
	}
	if _, err := notarize.ParseDigest(string(d)); err != nil {
		return nil, err
	}
	dh, _ := hex.DecodeString(d.Hex())
	ids := slices.Clone(keyIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	var recs []notarize.Record
	err := r.db.View(func(tx *bolt.Tx) error {
		rb := tx.Bucket(bucketRecords)
		c := tx.Bucket(bucketByKey).Cursor()
		for _, id := range ids {
			kid, err := hex.DecodeString(id)
			if err != nil || len(kid) != 32 {
				return fmt.Errorf("key ID %q is not 64 hex digits", id)
			}
			prefix := append(slices.Clone(dh), kid...)
			n := 0
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				if n++; n > maxRecordsPerDigest {
					return fmt.Errorf("more than %d records about %s by key %s", maxRecordsPerDigest, d, id)
				}
				if len(k) != 72 {
					return fmt.Errorf("corrupt key index entry %x", k)
				}
				index := binary.BigEndian.Uint64(k[64:])
				rk := binary.BigEndian.AppendUint64(slices.Clone(dh), index)
				v := rb.Get(rk)
				sr, err := decodeRecord(v)
				if err != nil || sr.KeyID != id {
					return fmt.Errorf("key index entry %x has no record of that key", k)
				}
				recs = append(recs, sr.record(d, index))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("replica lookup %s by key: %w", d, err)
	}
	slices.SortFunc(recs, func(a, b notarize.Record) int { return cmp.Compare(a.Index, b.Index) })
	return recs, nil
}
