package storage

import (
	"context"
	"crypto"
	"encoding/binary"
	"fmt"
	"log/slog"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// Index is what a driver keeps for the digest index (package ledger's
// follower fills it, its lookups read it): the first log index of every
// statement identity, a row per verified entry by (digest, key ID, log
// index) with its signed timestamp and status, the current statement of
// every (key ID, digest), the bytes of every entry by log index, and the
// follower's position, how many log entries are indexed. Digests, key IDs
// and identities are raw 32-byte SHA-256 values.
type Index interface {
	// Position reads the persisted follower position.
	Position(ctx context.Context) (uint64, error)
	// Page returns, in increasing order, at most n log indices i with
	// from <= i < below of the rows of digest and, when keyIDs is not
	// empty, of one of keyIDs. It reads no row of another key.
	Page(ctx context.Context, digest []byte, keyIDs [][]byte, from, below uint64, n int) ([]uint64, error)
	// Current returns, in any order, for each of keyIDs that has a row of
	// digest below index below, the index of its current one: the greatest
	// signed timestamp, ties broken by the greater index.
	Current(ctx context.Context, digest []byte, keyIDs [][]byte, below uint64) ([]uint64, error)
	// Latest returns the stamp and status code of the current statement
	// about digest of keyID among all rows, if any.
	Latest(ctx context.Context, digest, keyID []byte) (Stamp, byte, bool, error)
	// KeyDigests returns, in increasing digest order, at most n rows of
	// the key index of keyID whose digest is greater than after (nil:
	// from the first): each digest and the key's current statement about
	// it among all rows. It reads no row of another key.
	KeyDigests(ctx context.Context, keyID, after []byte, n int) ([]KeyRow, error)
	// IndexOf returns the first log index of the entry with identity id.
	IndexOf(ctx context.Context, id []byte) (uint64, bool, error)
	// Entries calls take with the stored bytes of each entry at indices
	// (indexed, increasing), in order, until take returns false. A missing
	// entry is an error. data is take's to keep.
	Entries(ctx context.Context, indices []uint64, take func(i uint64, data []byte) bool) error
	// Claim reserves the append of the statement with identity id for
	// this instance; false means another instance sharing the storage
	// holds a claim younger than ClaimStale. Release gives it up. Storage
	// used by one process always grants it (the ledger joins concurrent
	// submissions in memory).
	Claim(ctx context.Context, id []byte) (bool, error)
	Release(ctx context.Context, id []byte) error
	// Write records batch as entries [next, next+len(batch)) and moves the
	// position to next+len(batch), all at once: the first index of each
	// identity, every entry's bytes, and for rows with a digest the
	// (digest, key ID) row and the key index, whose current statement a
	// row replaces only when its (stamp, index) is greater. It reports
	// false, having written nothing, if the position is no longer next
	// (another instance wrote it).
	Write(ctx context.Context, next uint64, batch []Row) (bool, error)
	// Tuning is how the follower should poll and batch this database.
	Tuning() FollowTuning
}

// ClaimStale is how long a claim on a statement's append holds: an
// instance that died while appending blocks the statement no longer.
const ClaimStale = 30 * time.Second

// Row is one log entry as the index sees it.
type Row struct {
	// ID is the statement identity (notarize.Verified.Identity), or the
	// SHA-256 of the entry's bytes if it does not verify.
	ID []byte
	// Digest and KeyID are the raw SHA-256 subject digest and signer key
	// ID; both nil if the entry does not verify (it is then in no lookup).
	Digest, KeyID []byte
	// Stamp is the signed timestamp, Status the StatusCode of the status.
	Stamp  Stamp
	Status byte
	// Data is the entry's bytes as logged, kept for every entry so that
	// lookups and duplicate receipts never read an entry bundle.
	Data []byte
}

// KeyRow is one row of the key index: a digest and the key's current
// statement about it.
type KeyRow struct {
	Digest []byte // raw SHA-256
	Index  uint64 // log index of the current statement
	Stamp  Stamp  // its signed timestamp
	Status byte   // its StatusCode
}

// Newer reports whether a statement at (s, idx) replaces the current
// statement at (cur, curIdx): a later signed timestamp, ties broken by
// the greater log index.
func Newer(s Stamp, idx uint64, cur Stamp, curIdx uint64) bool {
	if c := compareStamps(s, cur); c != 0 {
		return c > 0
	}
	return idx > curIdx
}

func compareStamps(a, b Stamp) int {
	for i := range a {
		switch {
		case a[i] < b[i]:
			return -1
		case a[i] > b[i]:
			return 1
		}
	}
	return 0
}

// FollowTuning is how the index follower polls, retries and batches.
type FollowTuning struct {
	Name       string        // the tessera.Follower name
	Poll       time.Duration // how often the follower looks for new entries
	MaxBackoff time.Duration // longest wait between retries after an error
	MaxBatch   uint64        // entries per Write
	MaxBytes   int           // entry bytes per Write (at least one entry)
	ErrLevel   slog.Level    // level of the log record of a failed step
	// SoleWriter says that the follower of the process that opened the
	// index is its only writer (a file lock keeps every other process
	// out), so what the process knows it wrote is all that was written
	// since it read a row. False for an index several instances share.
	SoleWriter bool
}

// Stamp is a signed timestamp as index bytes that sort as the times do:
// seconds since the Unix epoch (big-endian; statements are dated 2000 to
// 9999, so positive) and nanoseconds (big-endian uint32).
type Stamp [12]byte

// StampOf returns the Stamp of t.
func StampOf(t time.Time) Stamp {
	var s Stamp
	binary.BigEndian.PutUint64(s[:8], uint64(t.Unix()))
	binary.BigEndian.PutUint32(s[8:], uint32(t.Nanosecond()))
	return s
}

// Seconds returns the stamp's seconds since the Unix epoch.
func (s Stamp) Seconds() int64 { return int64(binary.BigEndian.Uint64(s[:8])) }

// Nanoseconds returns the stamp's nanoseconds within its second.
func (s Stamp) Nanoseconds() int64 { return int64(binary.BigEndian.Uint32(s[8:])) }

// Time returns the stamp as a time.
func (s Stamp) Time() time.Time { return time.Unix(s.Seconds(), s.Nanoseconds()) }

// StatusCode is how the index records a statement's status (0 for none).
func StatusCode(s notarize.Status) byte {
	switch s {
	case notarize.StatusTrusted:
		return 1
	case notarize.StatusUntrusted:
		return 2
	case notarize.StatusUnsupported:
		return 3
	}
	return 0
}

// StatusOf is the status of a StatusCode ("" for an unknown code).
func StatusOf(code byte) notarize.Status {
	for _, s := range []notarize.Status{notarize.StatusTrusted, notarize.StatusUntrusted, notarize.StatusUnsupported} {
		if StatusCode(s) == code {
			return s
		}
	}
	return ""
}

// keySetOf returns the key IDs of keys.
func keySetOf(keys []crypto.PublicKey) (KeySet, error) {
	set := make(KeySet, len(keys))
	for _, k := range keys {
		kid, err := notarize.KeyID(k)
		if err != nil {
			return nil, fmt.Errorf("enroll signers: %w", err)
		}
		set[kid] = true
	}
	return set, nil
}

// FirstEntries returns the prefix of a C2SP tlog-tiles entry bundle
// holding its first n entries (each a 16-bit big-endian length and the
// data), which is the partial bundle of width n; ok is false if the bundle
// holds fewer.
func FirstEntries(bundle []byte, n int) (prefix []byte, ok bool) {
	off := 0
	for range n {
		if off+2 > len(bundle) {
			return nil, false
		}
		off += 2 + int(binary.BigEndian.Uint16(bundle[off:]))
		if off > len(bundle) {
			return nil, false
		}
	}
	return bundle[:off], true
}
