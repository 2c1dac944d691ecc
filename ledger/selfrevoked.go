package ledger

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"

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
// (bounded by selfRevokedKeys; an evicted key is read again); a negative
// answer is never kept, only how far the index was read without finding
// one (every row below is in the index for good).
//
// On storage shared by several instances (MySQL) the check reads the
// shared index, so a revocation indexed by any instance holds on all.

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
	revoked map[string]uint64 // key ID -> log index of its self-revocation
	scanned map[string]uint64 // key ID -> its rows below this index hold no self-revocation
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
	d, err := notarize.KeyRevocationDigest(keyID)
	if err != nil {
		return 0, false, err
	}
	if _, _, wrote, err := l.store.latest(ctx, d, keyID); err != nil || !wrote {
		return 0, false, err
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
