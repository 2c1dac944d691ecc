package replica

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/notarize/docker-notarize/notarize"
)

// What the dashboard reads, kept as entries are applied (in the same
// transaction as the records, so they never disagree with them):
//
//   - current: digest (32) ‖ key ID (32) → status code (1) ‖ timestamp
//     (seconds 8, nanoseconds 4) ‖ log index (8): the current statement of
//     each key about each digest, chosen as notarize.Current chooses it
//     (greatest signed timestamp, ties by log index), so a replayed older
//     statement does not change a tally;
//   - tallies: key ID (32) → three counters (8 bytes each, in statusCodes
//     order): how many digests the key currently says are trusted,
//     untrusted, unsupported;
//   - revocations: key ID (32) ‖ log index (8) → digest (32) ‖ status code
//     (1) ‖ timestamp (12): each key's last MaxRevocations untrusted or
//     unsupported statements that became current, its oldest deleted
//     first. Per key, so that a stranger's flood of revocations cannot push
//     the policy signers' out (the bucket is a subset of the records, so it
//     grows no faster than the replica).
var (
	bucketCurrent     = []byte("current")
	bucketTallies     = []byte("tallies")
	bucketRevocations = []byte("revocations")
)

// MaxRevocations bounds the recent revocations the replica keeps per key.
const MaxRevocations = 1000

// Tally counts the digests one key currently vouches for or revokes: each
// (digest, key) pair counts once, under the status of the key's current
// statement about the digest.
type Tally struct {
	KeyID       string `json:"keyID"`
	Trusted     uint64 `json:"trusted"`
	Untrusted   uint64 `json:"untrusted"`
	Unsupported uint64 `json:"unsupported"`
}

// Revoked is the number of digests the key says are untrusted or
// unsupported.
func (t Tally) Revoked() uint64 { return t.Untrusted + t.Unsupported }

// Revocation is an untrusted or unsupported statement the replica applied.
type Revocation struct {
	Index     uint64          `json:"index"`
	Digest    notarize.Digest `json:"digest"`
	KeyID     string          `json:"keyID"`
	Status    notarize.Status `json:"status"`
	Timestamp time.Time       `json:"timestamp"`
}

// tallyRecord is one verified record as the tallies see it.
type tallyRecord struct {
	digest, keyID []byte // 32 bytes each
	status        byte   // index in statusCodes
	ts            time.Time
	index         uint64
}

func (x tallyRecord) currentValue() []byte {
	b := make([]byte, 0, 21)
	b = append(b, x.status)
	b = binary.BigEndian.AppendUint64(b, uint64(x.ts.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(x.ts.Nanosecond()))
	return binary.BigEndian.AppendUint64(b, x.index)
}

func decodeCurrent(v []byte) (status byte, ts time.Time, index uint64, err error) {
	if len(v) != 21 || int(v[0]) >= len(statusCodes) {
		return 0, time.Time{}, 0, errors.New("corrupt current statement")
	}
	ts = time.Unix(int64(binary.BigEndian.Uint64(v[1:9])), int64(binary.BigEndian.Uint32(v[9:13]))).UTC()
	return v[0], ts, binary.BigEndian.Uint64(v[13:21]), nil
}

// newerThan is notarize.Current's order: greater timestamp, ties by index.
func (x tallyRecord) newerThan(ts time.Time, index uint64) bool {
	if !x.ts.Equal(ts) {
		return x.ts.After(ts)
	}
	return x.index > index
}

// applyTallies updates the current statements, tallies and revocations for
// recs (in log order) inside tx. The current statements are visited in key
// order (each of bbolt's pages is then touched once), each key's records
// still in log order, and each key's tally is written once per batch.
func applyTallies(tx *bolt.Tx, recs []tallyRecord) error {
	cur, tal, rev := tx.Bucket(bucketCurrent), tx.Bucket(bucketTallies), tx.Bucket(bucketRevocations)
	keys := make([][]byte, len(recs))
	order := make([]int, len(recs))
	for i, x := range recs {
		keys[i] = append(bytes.Clone(x.digest), x.keyID...)
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return bytes.Compare(keys[order[a]], keys[order[b]]) < 0 })
	deltas := map[string]*[3]int64{} // key ID → change of each status count
	revoked := map[string]bool{}
	for _, i := range order {
		x, k := recs[i], keys[i]
		old := -1
		if v := cur.Get(k); v != nil {
			st, ts, idx, err := decodeCurrent(v)
			if err != nil {
				return fmt.Errorf("%w under %x", err, k)
			}
			if !x.newerThan(ts, idx) {
				continue // an older statement (a replay): the current one stands
			}
			old = int(st)
		}
		if err := cur.Put(k, x.currentValue()); err != nil {
			return err
		}
		d := deltas[string(x.keyID)]
		if d == nil {
			d = new([3]int64)
			deltas[string(x.keyID)] = d
		}
		if old >= 0 {
			d[old]--
		}
		d[x.status]++
		if statusCodes[x.status] != notarize.StatusTrusted {
			v := append(bytes.Clone(x.digest), x.currentValue()[:13]...)
			if err := rev.Put(append(bytes.Clone(x.keyID), u64(x.index)...), v); err != nil {
				return err
			}
			revoked[string(x.keyID)] = true
		}
	}
	for _, key := range slices.Sorted(maps.Keys(deltas)) {
		if err := addTally(tal, []byte(key), deltas[key]); err != nil {
			return err
		}
	}
	for key := range revoked {
		if err := trimRevocations(rev, []byte(key)); err != nil {
			return err
		}
	}
	return nil
}

// trimRevocations deletes key's oldest revocations past MaxRevocations.
// It walks at most MaxRevocations+1 entries from the key's newest, then
// the ones to delete (collected first: deleting under a cursor skips keys).
func trimRevocations(rev *bolt.Bucket, key []byte) error {
	c := rev.Cursor()
	var old [][]byte
	n := 0
	for k, _ := lastWithPrefix(c, key); k != nil && bytes.HasPrefix(k, key); k, _ = c.Prev() {
		if n++; n > MaxRevocations {
			old = append(old, bytes.Clone(k))
		}
	}
	for _, k := range old {
		if err := rev.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// lastWithPrefix positions c on the last key starting with prefix (or
// before it: the caller checks the prefix) and returns it.
func lastWithPrefix(c *bolt.Cursor, prefix []byte) ([]byte, []byte) {
	end := append(bytes.Clone(prefix), bytes.Repeat([]byte{0xff}, 8)...)
	k, v := c.Seek(end)
	if k == nil || !bytes.Equal(k, end) {
		k, v = c.Prev()
	}
	return k, v
}

// addTally adds d (a change of each status count) to key's tally.
func addTally(tal *bolt.Bucket, key []byte, d *[3]int64) error {
	v := make([]byte, 8*len(statusCodes))
	if cur := tal.Get(key); cur != nil {
		if len(cur) != len(v) {
			return fmt.Errorf("corrupt tally of %x", key)
		}
		copy(v, cur)
	}
	for i, n := range d {
		binary.BigEndian.PutUint64(v[8*i:], uint64(int64(binary.BigEndian.Uint64(v[8*i:]))+n))
	}
	return tal.Put(key, v)
}

// Tallies returns the tally of each key ID asked for (zero for a key with
// no statement), in the order asked. It reads one small value per key.
func (r *Replica) Tallies(keyIDs []string) ([]Tally, error) {
	out := make([]Tally, len(keyIDs))
	err := r.db.View(func(tx *bolt.Tx) error {
		tal := tx.Bucket(bucketTallies)
		for i, id := range keyIDs {
			out[i].KeyID = id
			k, err := hex.DecodeString(id)
			if err != nil || len(k) != 32 {
				return fmt.Errorf("key ID %q is not 32 hex bytes", id)
			}
			v := tal.Get(k)
			if v == nil {
				continue
			}
			if len(v) != 8*len(statusCodes) {
				return fmt.Errorf("corrupt tally of %s", id)
			}
			out[i].Trusted = binary.BigEndian.Uint64(v[0:])
			out[i].Untrusted = binary.BigEndian.Uint64(v[8:])
			out[i].Unsupported = binary.BigEndian.Uint64(v[16:])
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("replica tallies: %w", err)
	}
	return out, nil
}

// Revocations returns at most limit of the recent revocations by the
// keys asked for, newest (greatest log index) first.
func (r *Replica) Revocations(keyIDs []string, limit int) ([]Revocation, error) {
	var out []Revocation
	err := r.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRevocations).Cursor()
		for _, id := range keyIDs {
			key, err := hex.DecodeString(id)
			if err != nil || len(key) != 32 {
				return fmt.Errorf("key ID %q is not 32 hex bytes", id)
			}
			n := 0
			for k, v := lastWithPrefix(c, key); k != nil && bytes.HasPrefix(k, key) && n < limit; k, v = c.Prev() {
				if len(k) != 40 || len(v) != 45 || int(v[32]) >= len(statusCodes) {
					return fmt.Errorf("corrupt revocation under %x", k)
				}
				out = append(out, Revocation{
					Index:     binary.BigEndian.Uint64(k[32:]),
					Digest:    notarize.Digest("sha256:" + hex.EncodeToString(v[:32])),
					KeyID:     id,
					Status:    statusCodes[v[32]],
					Timestamp: time.Unix(int64(binary.BigEndian.Uint64(v[33:41])), int64(binary.BigEndian.Uint32(v[41:45]))).UTC(),
				})
				n++
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("replica revocations: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index > out[j].Index })
	return out[:min(limit, len(out))], nil
}

// History returns the verified records about d for display, in log
// order, whether or not the replica is fresh (decisions use Records, which
// refuses stale data): every record by a key keep selects (the policy's
// signers), and at most others of the latest records by other keys, so
// that a flood of statements by strangers cannot make the answer large.
// omitted is the number of other records left out.
func (r *Replica) History(d notarize.Digest, keep func(keyID string) bool, others int) (recs []notarize.Record, omitted int, err error) {
	if _, err := notarize.ParseDigest(string(d)); err != nil {
		return nil, 0, err
	}
	prefix, _ := hex.DecodeString(d.Hex())
	err = r.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		k, v := lastWithPrefix(c, prefix)
		for n := 0; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Prev() {
			if n++; n > maxRecordsPerDigest {
				return fmt.Errorf("more than %d records about %s", maxRecordsPerDigest, d)
			}
			sr, err := decodeRecord(v)
			if err != nil || len(k) != 40 {
				return fmt.Errorf("corrupt record under %x", k)
			}
			if !keep(sr.KeyID) {
				if others == 0 {
					omitted++
					continue
				}
				others--
			}
			recs = append(recs, sr.record(d, binary.BigEndian.Uint64(k[32:])))
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("replica history %s: %w", d, err)
	}
	slices.Reverse(recs)
	return recs, omitted, nil
}
