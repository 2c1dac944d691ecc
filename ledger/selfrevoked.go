package ledger

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/notarize"
)

// Refusing the statements of a key that revoked itself.
//
// A key K's self-revocation (a key revocation about sha256:<K>, signed by
// K: notarize/keyrevoke.go) counts for every verifier, whatever its
// policy, and every statement by K logged after it counts for none (the
// positional rule). A thief holding K could still write such statements:
// each is logged, and every verifier that must read K's statements about
// a digest (to find those before the revocation, proven complete) pays for
// it, so a flood of them pushes verify and ls to "could not verify". The
// ledger therefore refuses a statement by K that is new to the log once
// K's self-revocation is in its index (SelfRevokedError, HTTP 403
// KEY_REVOKED). A replay of a statement logged before is still answered
// with its receipt: the refusal comes after duplicate detection.
//
// Limits, which verifiers do not depend on (they apply the positional rule
// themselves, whatever the ledger admitted):
//   - Only self-revocation is enforced. A revocation of K by another key
//     counts only for the verifiers whose policy names that key as K's
//     revoker, so the ledger cannot know it applies and admits K's
//     statements after it.
//   - The window: statements by K admitted between the submission of its
//     revocation and the indexing of it are logged; they do not count.
//   - A ledger started with Config.AdmitSelfRevoked, and logs written by
//     ledgers before this check, hold such statements too.
//
// The check costs a statement new to the log one point read of the index
// (Latest of (sha256:<K>, K): keys that never wrote about their own
// revocation digest, all but revoked ones, stop there). A key that did has
// its statements about that digest read, in log order, at most
// selfRevokedScan per submission from where the last one stopped, until
// its revocation is found. A revocation is final, so that answer is kept
// (bounded by selfRevokedKeys; an evicted key is read again); for a key
// that wrote about its digest, a negative answer is never kept, only how
// far the index was read without finding one (every row below is in the
// index for good).
//
// The point read's "never wrote about its revocation digest" is kept, on
// an index the process is the sole writer of (storage.FollowTuning's
// SoleWriter: the POSIX engines) and only there: the index follower adds
// the key of every row about its own revocation digest to
// index.selfDigest before it writes the row, and a kept answer counts only
// while its key is not there. So a kept answer is used only while no such
// row of the key has been written since the read that gave it, which is
// what the point read would say. A ledger restarted reads again.
//
// On storage shared by several instances (MySQL) the check reads the
// shared index every time, so a revocation indexed by any instance holds
// on all.

// ErrSelfRevoked is what a SelfRevokedError is (errors.Is): the signer's
// key revoked itself and the statement is new to the log.
var ErrSelfRevoked = errors.New("key revoked itself")

// SelfRevokedError refuses a statement new to the log whose key revoked
// itself: its self-revocation is at log index Index.
type SelfRevokedError struct {
	KeyID string // the signer's key ID
	Index uint64 // the log index of its self-revocation that counts (the lowest)
}

// Error names the key and its revocation's log index.
func (e *SelfRevokedError) Error() string {
	return fmt.Sprintf("key %s revoked itself at log index %d: statements it signs after that are refused (they would not count)", e.KeyID, e.Index)
}

// Is reports whether target is ErrSelfRevoked.
func (e *SelfRevokedError) Is(target error) bool { return target == ErrSelfRevoked }

const (
	// selfRevokedScan bounds the statements about its revocation digest
	// one submission by a key reads looking for its self-revocation
	// (selfRevokedChunk at a time); the next submission goes on from there.
	selfRevokedScan  = 1024
	selfRevokedChunk = 256
	// selfRevokedKeys bounds the keys whose answers selfRevokedCache keeps
	// (each of its two maps; a full map is emptied).
	selfRevokedKeys = 1 << 16
	// selfRevokedBelow is the log index bound of the scan: every row the
	// index holds (a row is there only once all below it are).
	selfRevokedBelow = math.MaxInt64
)

// selfRevokedCache keeps what the index said about keys' self-revocations:
// the revocation's log index of a key found revoked (final), and for the
// others how far their statements about their revocation digest were read
// without finding one.
type selfRevokedCache struct {
	mu      sync.Mutex
	revoked map[string]uint64   // key ID -> log index of its self-revocation
	scanned map[string]uint64   // key ID -> its rows below this index hold no self-revocation
	never   map[string]struct{} // key IDs a point read found no row of about their revocation digest (sole writer only)
}

// neverWrote reports whether a point read found that keyID wrote nothing
// about its revocation digest (selfDigestKeys says whether that still
// holds).
func (c *selfRevokedCache) neverWrote(keyID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.never[keyID]
	return ok
}

// setNeverWrote records that a point read found no row of keyID's about
// its revocation digest.
func (c *selfRevokedCache) setNeverWrote(keyID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.never == nil || len(c.never) >= selfRevokedKeys {
		c.never = make(map[string]struct{})
	}
	c.never[keyID] = struct{}{}
}

// selfDigestKeys are the keys of the rows about their own revocation
// digest (sha256:<key ID>, by that key) that this process's index follower
// wrote or is writing: it adds them before the write. Past selfRevokedKeys
// of them it stops counting and every key may have written one, so that
// selfRevokedCache.never is no longer used.
type selfDigestKeys struct {
	mu   sync.Mutex
	keys map[string]struct{} // hex key IDs
	all  bool                // too many to keep: every key counts as one
}

// add records the keys of the rows of batch that are about their own
// revocation digest; call it before batch is written.
func (w *selfDigestKeys) add(batch []storage.Row) {
	for _, r := range batch {
		if r.KeyID == nil || !bytes.Equal(r.Digest, r.KeyID) { // the revocation digest of K is sha256:<K>
			continue
		}
		w.mu.Lock()
		switch {
		case w.all:
		case len(w.keys) >= selfRevokedKeys:
			w.all, w.keys = true, nil // never read again
		default:
			if w.keys == nil {
				w.keys = make(map[string]struct{})
			}
			w.keys[hex.EncodeToString(r.KeyID)] = struct{}{}
		}
		w.mu.Unlock()
	}
}

// may reports whether a row of keyID's about its own revocation digest was
// written, or is being written, since the process started (or whether
// that is no longer known).
func (w *selfDigestKeys) may(keyID string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.keys[keyID]
	return ok || w.all
}

// revokedAt returns keyID's self-revocation index, if it is known.
func (c *selfRevokedCache) revokedAt(keyID string) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.revoked[keyID]
	return r, ok
}

// scannedTo returns the index below which keyID's rows about its
// revocation digest were read and held no self-revocation.
func (c *selfRevokedCache) scannedTo(keyID string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.scanned[keyID]
}

// setScanned records that keyID's rows below to hold no self-revocation.
func (c *selfRevokedCache) setScanned(keyID string, to uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.scanned == nil || len(c.scanned) >= selfRevokedKeys {
		c.scanned = make(map[string]uint64)
	}
	c.scanned[keyID] = max(c.scanned[keyID], to)
}

// setRevoked records keyID's self-revocation at index r.
func (c *selfRevokedCache) setRevoked(keyID string, r uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.revoked == nil || len(c.revoked) >= selfRevokedKeys {
		c.revoked = make(map[string]uint64)
	}
	c.revoked[keyID] = r
	delete(c.scanned, keyID)
}

// refuseSelfRevoked returns a SelfRevokedError when v's key revoked itself
// in the indexed log, unless Config.AdmitSelfRevoked. It is called for
// statements new to the log only (after duplicate detection). An index
// that cannot be read refuses the statement (the error).
func (l *Ledger) refuseSelfRevoked(ctx context.Context, v *notarize.Verified) error {
	if l.cfg.AdmitSelfRevoked {
		return nil
	}
	r, revoked, err := l.selfRevokedAt(ctx, v.KeyID)
	if err != nil {
		return fmt.Errorf("self-revocation of key %s: %w", v.KeyID, err)
	}
	if revoked {
		return &SelfRevokedError{KeyID: v.KeyID, Index: r}
	}
	return nil
}

// selfRevokedAt returns the log index of keyID's self-revocation that
// counts (the lowest), if the index holds one; see the comment at the top
// of this file for what it reads.
func (l *Ledger) selfRevokedAt(ctx context.Context, keyID string) (uint64, bool, error) {
	if r, ok := l.selfRevoked.revokedAt(keyID); ok {
		return r, true, nil
	}
	// The point read's answer, kept: good while the follower wrote no row
	// of the key's about its digest since (the order matters: a row is in
	// selfDigest before it is written).
	sole := l.store.tune.SoleWriter
	if sole && l.selfRevoked.neverWrote(keyID) && !l.store.selfDigest.may(keyID) {
		return 0, false, nil
	}
	d, err := notarize.KeyRevocationDigest(keyID)
	if err != nil {
		return 0, false, err
	}
	_, _, wrote, err := l.store.latest(ctx, d, keyID)
	if err != nil {
		return 0, false, err
	}
	if !wrote {
		if sole {
			l.selfRevoked.setNeverWrote(keyID)
		}
		return 0, false, nil
	}
	from := l.selfRevoked.scannedTo(keyID)
	for read := 0; read < selfRevokedScan; {
		indices, err := l.store.Page(ctx, d, []string{keyID}, from, selfRevokedBelow, selfRevokedChunk)
		if err != nil {
			return 0, false, err
		}
		if len(indices) == 0 {
			return 0, false, nil
		}
		records, err := l.pageRead(ctx, indices)
		if err != nil {
			return 0, false, err
		}
		if rv, ok := notarize.FindKeyRevocation(records, keyID, nil); ok {
			l.selfRevoked.setRevoked(keyID, rv.Index)
			return rv.Index, true, nil
		}
		from = indices[len(indices)-1] + 1
		l.selfRevoked.setScanned(keyID, from)
		if len(indices) < selfRevokedChunk {
			return 0, false, nil
		}
		read += len(indices)
	}
	// The bound stopped the reading before the end of the key's rows: a
	// revocation may lie past it (red team 11: a thief who wrote more
	// than the bound about the digest beforehand had one statement let
	// through after each restart). Fail closed; the next submission
	// reads on from here.
	return 0, false, fmt.Errorf("%w: key %s has more than %d statements about its own revocation digest; %d read so far, retry", ErrUnavailable, keyID, selfRevokedScan, from)
}
