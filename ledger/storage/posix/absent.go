package posix

import (
	"sync"
	"sync/atomic"

	"github.com/bits-and-blooms/bloom/v3"
)

// absentSet answers, for the pebble index's identity and key rows, "is
// this key certainly not stored?" without a pebble read. A new statement's
// index reads are of keys that are not there: its identity (the duplicate
// check at submission and again in Write) and its key's row about its
// digest (the self-revocation and current-statement checks). pebble's bloom
// filters answer those without a data block, but each Get still searches
// the memtables and every level's files (about 13 % of the ledger's CPU at
// 1,000,000 entries); the set answers them from memory.
//
// It is a chain of bloom filters (bits-and-blooms/bloom), each sized for
// twice the one before when the newest fills, so its false-positive rate
// stays near falsePositive as the index grows. It has no false negatives
// once ready: every key the store holds was added, either by the scan that
// made it ready (the keys present when the scan's snapshot was taken) or by
// Write, which adds a row's key before the row is written to the batch and
// so before it is committed (a row another read can see is in the set by
// then, and a second row of the same key later in one batch finds the
// first). Until the scan ends it answers nothing (absent is false), so the
// reads go to pebble as before. Keys are never removed: a row deleted (an
// index emptied to be rebuilt) leaves a false positive, which costs a read.
type absentSet struct {
	ready atomic.Bool

	mu    sync.RWMutex
	parts []*bloom.BloomFilter // the newest last
	sized uint                 // the keys the newest part was sized for
	room  uint                 // the keys it takes before the next part is added
}

// falsePositive is the rate each part of an absentSet is sized for: one
// absent key in a hundred still costs a pebble read.
const falsePositive = 0.01

// absentMinKeys is the least an absentSet's first part is sized for.
const absentMinKeys = 1 << 16

// newAbsentSet returns an empty, not yet ready set whose first part is
// sized for expect keys (at least absentMinKeys).
func newAbsentSet(expect uint) *absentSet {
	expect = max(expect, absentMinKeys)
	return &absentSet{parts: []*bloom.BloomFilter{bloom.NewWithEstimates(expect, falsePositive)}, sized: expect, room: expect}
}

// add records keys as possibly stored.
func (s *absentSet) add(keys ...[]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		if s.room == 0 {
			s.sized *= 2
			s.parts = append(s.parts, bloom.NewWithEstimates(s.sized, falsePositive))
			s.room = s.sized
		}
		s.parts[len(s.parts)-1].Add(k)
		s.room--
	}
}

// absent reports whether key is certainly not stored: false until the set
// is ready, and for any key some part may hold.
func (s *absentSet) absent(key []byte) bool {
	if !s.ready.Load() {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, p := range s.parts {
		if p.Test(key) {
			return false
		}
	}
	return true
}

// setReady makes the set answer: called once every stored key is in it.
func (s *absentSet) setReady() { s.ready.Store(true) }

// size returns the set's parts and their bytes, for the log.
func (s *absentSet) size() (parts int, bytes uint) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, p := range s.parts {
		bytes += p.Cap() / 8
	}
	return len(s.parts), bytes
}
