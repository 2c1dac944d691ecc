package vindex

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/notarize/docker-notarize/notarize"
)

// keyDomain separates map keys from other SHA-256 uses.
const keyDomain = "docker-notarize vindex key v1\n"

// chainDomain separates the statement chain from other SHA-256 uses.
const chainDomain = "docker-notarize vindex chain v1\n"

// MapKey returns the tree key of (subject digest d, signer key ID): the
// SHA-256 of a domain string, the digest and the key ID, each on its line.
func MapKey(d notarize.Digest, keyID string) Key {
	h := sha256.New()
	h.Write([]byte(keyDomain))
	h.Write([]byte(d))
	h.Write([]byte{'\n'})
	h.Write([]byte(keyID))
	h.Write([]byte{'\n'})
	var k Key
	h.Sum(k[:0])
	return k
}

// valueVersion is the first byte of an encoded Value.
const valueVersion = 1

// valueSize is the size of an encoded Value.
const valueSize = 1 + 8 + 8 + 4 + 8 + 32

// Value is what the map holds for one (digest, key ID): a commitment to
// that key's statements about that digest, in log order.
type Value struct {
	// Current is the log index of the current statement: the greatest
	// signed timestamp, ties broken by the greater log index (as
	// notarize.Current).
	Current uint64
	// Time is the current statement's signed timestamp.
	Time time.Time
	// Count is the number of the key's statements about the digest.
	Count uint64
	// Chain is the hash chain of all of them: starting from 32 zero
	// bytes, chain = SHA-256(domain || chain || index || leaf hash) for
	// each statement in log order, where leaf hash is the RFC 6962 leaf
	// hash of the logged entry.
	Chain Hash
}

// Add returns v with the statement at log index, signed at ts, whose entry
// has RFC 6962 leaf hash leafHash, added. Statements are added in log order.
func (v Value) Add(index uint64, ts time.Time, leafHash Hash) Value {
	if v.Count == 0 || !ts.Before(v.Time) {
		v.Current, v.Time = index, ts
	}
	v.Count++
	v.Chain = ChainNext(v.Chain, index, leafHash)
	return v
}

// ChainNext returns the chain after the statement at index with leaf hash
// leafHash.
func ChainNext(chain Hash, index uint64, leafHash Hash) Hash {
	var b [len(chainDomain) + 32 + 8 + 32]byte
	n := copy(b[:], chainDomain)
	n += copy(b[n:], chain[:])
	binary.BigEndian.PutUint64(b[n:], index)
	copy(b[n+8:], leafHash[:])
	return sha256.Sum256(b[:])
}

// Marshal encodes v: a version byte, Current, Time's seconds and
// nanoseconds since the Unix epoch, Count (big-endian) and Chain.
func (v Value) Marshal() []byte {
	b := make([]byte, valueSize)
	b[0] = valueVersion
	binary.BigEndian.PutUint64(b[1:], v.Current)
	binary.BigEndian.PutUint64(b[9:], uint64(v.Time.Unix()))
	binary.BigEndian.PutUint32(b[17:], uint32(v.Time.Nanosecond()))
	binary.BigEndian.PutUint64(b[21:], v.Count)
	copy(b[29:], v.Chain[:])
	return b
}

// UnmarshalValue decodes a Value encoded by Marshal.
func UnmarshalValue(b []byte) (Value, error) {
	if len(b) != valueSize || b[0] != valueVersion {
		return Value{}, fmt.Errorf("%w: map value of %d bytes (version %d), want %d bytes of version %d", ErrBadProof, len(b), first(b), valueSize, valueVersion)
	}
	ns := binary.BigEndian.Uint32(b[17:])
	if ns >= 1e9 {
		return Value{}, fmt.Errorf("%w: map value with %d nanoseconds", ErrBadProof, ns)
	}
	v := Value{
		Current: binary.BigEndian.Uint64(b[1:]),
		Time:    time.Unix(int64(binary.BigEndian.Uint64(b[9:])), int64(ns)).UTC(),
		Count:   binary.BigEndian.Uint64(b[21:]),
	}
	copy(v.Chain[:], b[29:])
	if v.Count == 0 {
		return Value{}, fmt.Errorf("%w: map value with no statements", ErrBadProof)
	}
	return v, nil
}

func first(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}
