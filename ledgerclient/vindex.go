package ledgerclient

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/vindex"
)

// ErrIncomplete is returned (wrapped) when a current-statement answer is not
// proven complete: the ledger's verifiable index (a map committed to by the
// log, package vindex) and the log's tail after its root name another
// current statement than the answer gives for a key, or one where the answer
// gives none, or the answer's map proofs do not check out. A front that
// leaves a revocation out of an answer, reorders or substitutes entries, is
// caught this way.
var ErrIncomplete = errors.New("lookup answer not proven complete")

// MaxMapTail bounds the log entries after the newest committed map root that
// a client reads (from the public entry bundles) to complete a lookup. A
// ledger commits a root every api-documented few seconds or thousand
// entries, so an honest tail is far shorter; a longer one, or a ledger that
// commits no root and holds more entries, fails the lookup.
const MaxMapTail = 16384

// mapExpect is what the map and the tail prove about one key's current
// statement: none (found false), or the entry at index signed at ts.
type mapExpect struct {
	found bool
	index uint64
	ts    time.Time
	// count and chain are the map value's (statements before the root);
	// tail lists the statements after the root, in log order.
	count uint64
	chain vindex.Hash
	tail  []uint64
}

// Completeness is what a lookup was proven complete up to (vindex.go).
type Completeness struct {
	// MapSize is the number of log entries the answer's verified map root
	// covers; 0 without a map root.
	MapSize uint64
	// RootTime is the verified root's time (notarize.MapRoot.Time): zero
	// without a root, or for a root without one.
	RootTime time.Time
	// AnchoredAt is zero when the answer was proven complete up to its
	// checkpoint: the map root, and every log entry after it read and
	// checked. Otherwise the answer was anchored (Config.MaxIndexLag): it
	// is proven complete up to the root, which the ledger read at
	// AnchoredAt, and the statements after the root are as the ledger
	// gave them, each proven included; a front may have left out
	// statements indexed after AnchoredAt.
	AnchoredAt time.Time
}

// verifyComplete proves that recs, the verified current statements of
// keyIDs about d in an answer under cp, are all of them: it checks the
// answer's map proof (the root entry's inclusion and signature, each key's
// proof against the root), reads the log from the root's size to cp's from
// the entry bundles, each entry proven included in cp, folds the tail's
// statements by keyIDs about d into what the map says, and compares the
// result with recs. mp nil (a ledger without the index) means the tail is
// the whole log.
//
// Anchored (c.anchored): the log after a recent root is not read; a record
// before the root must then be the map's current statement, and one after
// it (as the answer gives it) must not be older than the map's.
func (c *Client) verifyComplete(ctx context.Context, mp *api.MapProof, cp Checkpoint, d notarize.Digest, keyIDs []string, recs []notarize.Record) (Completeness, error) {
	ids := slices.Clone(keyIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	want, mr, from, err := c.verifyMapProof(mp, cp, d, ids)
	if err != nil {
		return Completeness{}, err
	}
	if mp != nil && mp.RootIndex != nil && from == *mp.RootIndex && cp.Size == from+1 {
		// The tail is the root entry alone, already proven: nothing to read.
		from = cp.Size
	}
	done := Completeness{MapSize: from}
	if mr != nil {
		done.MapSize, done.RootTime = mr.Size, mr.Time
	}
	if c.anchored(mp, mr, cp, from) {
		done.AnchoredAt = mr.Time
	} else if err := c.foldTail(ctx, mp, cp, from, d, want); err != nil {
		return Completeness{}, err
	}
	got := make(map[string]notarize.Record, len(recs))
	for _, r := range recs {
		got[r.KeyID] = r
	}
	for _, k := range ids {
		e, r := want[k], got[k]
		_, answered := got[k]
		if !done.AnchoredAt.IsZero() && answered && r.Index >= from {
			// After the root: as the ledger gives it, but never older
			// than the map's current statement, which it would hide.
			if e.found && r.Statement.Predicate.Timestamp.Before(e.ts) {
				return Completeness{}, fmt.Errorf("%w: the answer gives entry %d as key %s's current statement about %s, but entry %d, before the map root, is newer", ErrIncomplete, r.Index, k, d, e.index)
			}
			continue
		}
		switch {
		case !e.found && answered:
			return Completeness{}, fmt.Errorf("%w: the answer gives entry %d as key %s's current statement about %s, but the ledger's index and log hold none", ErrIncomplete, r.Index, k, d)
		case e.found && !answered:
			return Completeness{}, fmt.Errorf("%w: key %s's current statement about %s is entry %d, which the answer leaves out", ErrIncomplete, k, d, e.index)
		case e.found && (r.Index != e.index || !r.Statement.Predicate.Timestamp.Equal(e.ts)):
			return Completeness{}, fmt.Errorf("%w: key %s's current statement about %s is entry %d, the answer gives entry %d", ErrIncomplete, k, d, e.index, r.Index)
		}
	}
	return done, nil
}

// anchored reports whether an answer under cp whose verified map root mr
// covers the log up to from may be proven complete up to the root alone:
// the client takes recent roots (Config.MaxIndexLag), the tail after the
// root is not empty, the answer carries none of it inline (when it does,
// the tail is read: its cost is paid), and the root has a time within
// MaxIndexLag of this client's clock, either way. A root without a time,
// or an older one, is proven with the whole tail, as is every answer of a
// client that takes no recent roots.
func (c *Client) anchored(mp *api.MapProof, mr *notarize.MapRoot, cp Checkpoint, from uint64) bool {
	if c.maxLag <= 0 || from >= cp.Size || mp == nil || mp.Tail != nil {
		return false
	}
	return mr.RecentAt(c.now(), c.maxLag)
}

// verifyMapProof checks mp for d and ids (sorted) under cp and returns what
// the map says of each key, the verified root (nil without one) and the
// size of the log the map covers.
func (c *Client) verifyMapProof(mp *api.MapProof, cp Checkpoint, d notarize.Digest, ids []string) (map[string]mapExpect, *notarize.MapRoot, uint64, error) {
	want := make(map[string]mapExpect, len(ids))
	for _, k := range ids {
		want[k] = mapExpect{}
	}
	if mp == nil || mp.RootIndex == nil {
		return want, nil, 0, nil
	}
	idx := *mp.RootIndex
	if err := verifyInclusion(cp, idx, mp.RootEntry, mp.RootInclusionProof); err != nil {
		return nil, nil, 0, fmt.Errorf("map root entry %d: %w", idx, err)
	}
	mr, err := notarize.ParseMapRoot(mp.RootEntry, c.verifier)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("%w: entry %d: %w", ErrIncomplete, idx, err)
	}
	if mr.Size > idx {
		return nil, nil, 0, fmt.Errorf("%w: map root entry %d covers %d entries, beyond itself", ErrIncomplete, idx, mr.Size)
	}
	if len(mp.Keys) != len(ids) {
		return nil, nil, 0, fmt.Errorf("%w: %d map proofs for %d keys", ErrIncomplete, len(mp.Keys), len(ids))
	}
	for i, k := range ids {
		kp := mp.Keys[i]
		if kp.KeyID != k {
			return nil, nil, 0, fmt.Errorf("%w: map proof %d is for key %q, want %s", ErrIncomplete, i, clip(kp.KeyID, 80), k)
		}
		e, err := verifyKeyMapProof(kp, mr, d, k)
		if err != nil {
			return nil, nil, 0, err
		}
		want[k] = e
	}
	return want, mr, mr.Size, nil
}

// verifyKeyMapProof checks the proof of key k for d against mr.
func verifyKeyMapProof(kp api.KeyMapProof, mr *notarize.MapRoot, d notarize.Digest, k string) (mapExpect, error) {
	p, err := proofOf(kp)
	if err != nil {
		return mapExpect{}, fmt.Errorf("%w: map proof of key %s: %w", ErrIncomplete, k, err)
	}
	vh, err := p.Verify(mr.Root, vindex.MapKey(d, k))
	if err != nil {
		return mapExpect{}, fmt.Errorf("%w: key %s: %w", ErrIncomplete, k, err)
	}
	if vh == nil {
		if len(kp.Value) != 0 {
			return mapExpect{}, fmt.Errorf("%w: key %s: a value with a proof of absence", ErrIncomplete, k)
		}
		return mapExpect{}, nil
	}
	if vindex.HashValue(kp.Value) != *vh {
		return mapExpect{}, fmt.Errorf("%w: key %s: the value is not the one the map holds", ErrIncomplete, k)
	}
	v, err := vindex.UnmarshalValue(kp.Value)
	if err != nil {
		return mapExpect{}, fmt.Errorf("%w: key %s: %w", ErrIncomplete, k, err)
	}
	if v.Current >= mr.Size {
		return mapExpect{}, fmt.Errorf("%w: key %s: current statement %d beyond the map's %d entries", ErrIncomplete, k, v.Current, mr.Size)
	}
	return mapExpect{found: true, index: v.Current, ts: v.Time, count: v.Count, chain: v.Chain}, nil
}

// proofOf decodes a map proof from the wire.
func proofOf(kp api.KeyMapProof) (*vindex.Proof, error) {
	p := &vindex.Proof{Depth: kp.Depth, Bitmap: kp.Bitmap}
	if len(kp.Siblings) > vindex.KeyBits {
		return nil, fmt.Errorf("%d siblings", len(kp.Siblings))
	}
	for _, s := range kp.Siblings {
		if len(s) != 32 {
			return nil, fmt.Errorf("a sibling of %d bytes", len(s))
		}
		p.Siblings = append(p.Siblings, vindex.Hash(s))
	}
	switch {
	case kp.LeafKey == nil && kp.LeafValueHash == nil:
	case len(kp.LeafKey) == vindex.KeySize && len(kp.LeafValueHash) == 32:
		k, vh := vindex.Key(kp.LeafKey), vindex.Hash(kp.LeafValueHash)
		p.LeafKey, p.LeafValueHash = &k, &vh
	default:
		return nil, errors.New("a leaf key or value hash of the wrong size")
	}
	return p, nil
}

// foldTail reads the log entries [from, cp.Size) (readTail: all at once,
// each proven included in cp) and folds the statements about d by the keys
// of want into want, once the whole tail is proven. The resources of the
// answer's inline tail (mp.Tail, when mp carries one) are read first: an
// inline tail over its bounds fails the lookup, whether or not the read
// needs it.
func (c *Client) foldTail(ctx context.Context, mp *api.MapProof, cp Checkpoint, from uint64, d notarize.Digest, want map[string]mapExpect) error {
	var pushed tailResources
	if mp != nil {
		var err error
		if pushed, err = inlineResources(mp.Tail); err != nil {
			return fmt.Errorf("the log after the map root: %w", err)
		}
	}
	if from >= cp.Size {
		return nil
	}
	if n := cp.Size - from; n > MaxMapTail {
		return fmt.Errorf("%w: %d log entries after the ledger's newest committed map root (at most %d are read): the ledger commits no map roots, or not often enough", ErrIncomplete, n, MaxMapTail)
	}
	q := tailAsk{d: d, asked: func(k string) bool { _, ok := want[k]; return ok }, ids: [][]byte{}}
	for k := range want {
		q.ids = append(q.ids, []byte(k))
	}
	hits, err := c.readTail(ctx, cp, from, q, pushed)
	if err != nil {
		return fmt.Errorf("the log after the map root: %w", err)
	}
	for _, h := range hits {
		e := want[h.keyID]
		if !e.found || !h.ts.Before(e.ts) {
			e.found, e.index, e.ts = true, h.index, h.ts
		}
		e.tail = append(e.tail, h.index)
		want[h.keyID] = e
	}
	return nil
}

// mayConcern reports whether the log entry leaf may be a statement about
// d (subjectTest.mayConcern).
func mayConcern(leaf []byte, d notarize.Digest) bool { return newSubjectTest(d).mayConcern(leaf) }

// subjectTest is the tail's cheap test of whether an entry may be about a
// digest, so that entries about other digests, most of the tail, are
// skipped before they are parsed and their signatures checked. It holds
// the standard base64 of the digest's hex at the three byte alignments the
// signed payload can put it at: from the hex's first, second or third
// character, as many whole 3-byte groups as follow.
//
// It never misses an entry the strict path (verifyLeaf) reads as about d:
// that entry is in its one canonical encoding, so its payload is exactly
// the standard base64 of the statement, spelled without escapes in the
// entry's JSON, and the statement is its canonical JSON, which holds the
// hex verbatim as its subject's digest. The hex's whole groups from the
// first group boundary inside it are then encoded, group for group, in
// the payload, and so in the entry (FuzzMayConcernLeaf and
// FuzzMayConcernStatement check it against the strict path).
type subjectTest [3][]byte

// newSubjectTest returns the test for d.
func newSubjectTest(d notarize.Digest) subjectTest {
	hex := d.Hex()
	var st subjectTest
	for skip := range st {
		n := (len(hex) - skip) / 3 * 3
		st[skip] = []byte(base64.StdEncoding.EncodeToString([]byte(hex[skip : skip+n])))
	}
	return st
}

// mayConcern reports whether leaf holds one of st's spellings: false means
// leaf is no statement about the digest.
func (st subjectTest) mayConcern(leaf []byte) bool {
	for _, p := range st {
		if bytes.Contains(leaf, p) {
			return true
		}
	}
	return false
}

// verifyLookupComplete proves that recs, the verified records of a whole
// paginated lookup of d by ids (ids not empty), whose entries have the leaf
// hashes leaves, are every statement of those keys about d in the log of
// cp: for each key, the records before the map's root hash to the map
// value's chain and count, and the records after it are exactly the tail's
// (anchored, c.anchored: as the answer gives them, each proven included).
func (c *Client) verifyLookupComplete(ctx context.Context, mp *api.MapProof, cp Checkpoint, d notarize.Digest, keyIDs []string, recs []notarize.Record, leaves map[uint64]vindex.Hash) (Completeness, error) {
	ids := slices.Clone(keyIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	want, mr, from, err := c.verifyMapProof(mp, cp, d, ids)
	if err != nil {
		return Completeness{}, err
	}
	if mp != nil && mp.RootIndex != nil && from == *mp.RootIndex && cp.Size == from+1 {
		from = cp.Size // the tail is the root entry alone
	}
	done := Completeness{MapSize: from}
	if mr != nil {
		done.MapSize, done.RootTime = mr.Size, mr.Time
	}
	if c.anchored(mp, mr, cp, from) {
		done.AnchoredAt = mr.Time
	} else if err := c.foldTail(ctx, mp, cp, from, d, want); err != nil {
		return Completeness{}, err
	}
	byKey := make(map[string][]notarize.Record, len(ids))
	for _, r := range recs {
		byKey[r.KeyID] = append(byKey[r.KeyID], r)
	}
	for _, k := range ids {
		e := want[k]
		var (
			chain  vindex.Hash
			count  uint64
			after  []uint64
			before = true
		)
		for _, r := range byKey[k] { // in log order
			if r.Index >= from {
				before = false
				after = append(after, r.Index)
				continue
			}
			if !before {
				return Completeness{}, fmt.Errorf("%w: key %s's records out of log order", ErrIncomplete, k)
			}
			lh, ok := leaves[r.Index]
			if !ok {
				return Completeness{}, fmt.Errorf("%w: no entry bytes for record %d", ErrIncomplete, r.Index)
			}
			chain = vindex.ChainNext(chain, r.Index, lh)
			count++
		}
		if count != e.count || chain != e.chain {
			return Completeness{}, fmt.Errorf("%w: key %s made %d statements about %s before the map root, the answer gives %d (or other ones)", ErrIncomplete, k, e.count, d, count)
		}
		if done.AnchoredAt.IsZero() && !slices.Equal(after, e.tail) {
			return Completeness{}, fmt.Errorf("%w: key %s made the statements %v about %s after the map root, the answer gives %v", ErrIncomplete, k, e.tail, d, after)
		}
	}
	return done, nil
}
