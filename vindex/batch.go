package vindex

import (
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// EntryLeafHash returns the RFC 6962 leaf hash of a log entry's bytes, as
// the log's Merkle tree commits to it.
func EntryLeafHash(data []byte) Hash {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(data)
	var out Hash
	h.Sum(out[:0])
	return out
}

// Get returns the value stored for key in the tree of r; ok is false when
// the key is absent.
func Get(r NodeReader, key Key) ([]byte, bool, error) {
	for d := 0; d <= KeyBits; d++ {
		n, ok, err := r.ReadNode(nodeIDOf(key, d))
		if err != nil {
			return nil, false, fmt.Errorf("read map node: %w", err)
		}
		if !ok {
			return nil, false, nil
		}
		if n.Leaf {
			if n.Key != key {
				return nil, false, nil
			}
			return n.Value, true, nil
		}
	}
	return nil, false, fmt.Errorf("%w: inner node at depth %d", ErrBadNode, KeyBits)
}

// Batch folds consecutive log entries into the updates of the map stored
// in r. Every party that computes the map (the ledger, a replica auditing
// it, a rebuild) uses it, so that they agree: a statement entry that parses
// and verifies as logged (notarize.Entry.VerifyLogged) updates the key of
// its (subject digest, signer key ID); any other entry, a map root among
// them, leaves the map unchanged.
type Batch struct {
	r    NodeReader
	vals map[Key]Value
	keys []Key // in first-update order
}

// NewBatch returns an empty batch over the tree stored in r.
func NewBatch(r NodeReader) *Batch { return &Batch{r: r, vals: make(map[Key]Value)} }

// Add folds the log entry data at index into the batch; entries are added
// in log order. It reports whether the entry was a statement.
func (b *Batch) Add(index uint64, data []byte) (bool, error) {
	if notarize.IsMapRoot(data) {
		return false, nil
	}
	e, err := notarize.ParseEntry(data)
	if err != nil {
		return false, nil
	}
	v, err := e.VerifyLogged()
	if err != nil {
		return false, nil
	}
	return true, b.AddVerified(index, v, EntryLeafHash(data))
}

// AddVerified folds the verified statement at index, whose entry has leaf
// hash leafHash, into the batch.
func (b *Batch) AddVerified(index uint64, v *notarize.Verified, leafHash Hash) error {
	return b.AddStatement(index, v.Statement.Digest(), v.KeyID, v.Statement.Predicate.Timestamp, leafHash)
}

// AddStatement folds the statement at index about d by keyID, signed at
// ts, whose entry has leaf hash leafHash, into the batch.
func (b *Batch) AddStatement(index uint64, d notarize.Digest, keyID string, ts time.Time, leafHash Hash) error {
	k := MapKey(d, keyID)
	cur, ok := b.vals[k]
	if !ok {
		raw, found, err := Get(b.r, k)
		if err != nil {
			return err
		}
		if found {
			if cur, err = UnmarshalValue(raw); err != nil {
				return fmt.Errorf("stored map value: %w", err)
			}
		}
		b.keys = append(b.keys, k)
	}
	b.vals[k] = cur.Add(index, ts, leafHash)
	return nil
}

// Len returns the number of keys the batch changes.
func (b *Batch) Len() int { return len(b.keys) }

// Updates returns the batch's updates.
func (b *Batch) Updates() []Update {
	out := make([]Update, 0, len(b.keys))
	for _, k := range b.keys {
		out = append(out, Update{Key: k, Value: b.vals[k].Marshal()})
	}
	return out
}
