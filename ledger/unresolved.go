package ledger

import (
	"github.com/transparency-dev/tessera"
)

// unresolvedAppend is the append of a statement whose submission handed it
// to Tessera and then failed before learning its outcome (its receipt wait
// timed out, the ledger shut down): the entry may be in the log, or about
// to be, while the index does not hold it yet.
//
// The submission gives up its slot in Ledger.pending when it fails. Without
// this record a replay of the statement in other bytes (the key holder's
// same statement signed again; Tessera's in-memory dedup, keyed on the
// bytes, does not match it) would look the identity up in the index, find
// nothing, and be appended a second time, answered as new and charged to
// the key's rate limits again (red team 23). A replay that finds the record
// waits for the first append's future instead, answered as a duplicate of
// it; the record is dropped once that future resolved and the index covers
// the entry (a later replay finds it there), or at once when the future
// failed (the entry is not in the log; the replay gets that error, and the
// client's retry appends it).
type unresolvedAppend struct {
	future tessera.IndexFuture
}

// keepUnresolved records the append of identity id, whose future is f,
// until the index covers it. Call it before the submission gives up its
// pending slot (Ledger.finish), so that no replay finds neither.
func (l *Ledger) keepUnresolved(id [32]byte, f tessera.IndexFuture) {
	u := &unresolvedAppend{future: f}
	l.pendingMu.Lock()
	l.unresolved[id] = u
	l.pendingMu.Unlock()
	go func() {
		// Tessera's futures are memoized: this waits for the same
		// outcome the submission gave up on, and every replay's wait
		// shares it.
		if idx, err := f(); err == nil {
			// Until the index covers it, outages included (a record
			// dropped early would reopen the window); a shutdown ends
			// the wait, and with it every replay.
			_ = l.store.WaitProcessed(l.closedCtx, idx.Index+1)
		}
		l.pendingMu.Lock()
		if l.unresolved[id] == u {
			delete(l.unresolved, id)
		}
		l.pendingMu.Unlock()
	}()
}

// unresolvedOf returns, for an identity with an unresolved append, a
// future answering with that append's index as a duplicate, and nil for
// any other. l.pendingMu is held (join).
func (l *Ledger) unresolvedOf(id [32]byte) tessera.IndexFuture {
	u, ok := l.unresolved[id]
	if !ok {
		return nil
	}
	return func() (tessera.Index, error) {
		idx, err := u.future()
		if err != nil {
			return tessera.Index{}, err
		}
		idx.IsDup = true
		return idx, nil
	}
}
