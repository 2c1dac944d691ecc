package ledger

// The key lookup (issue 10, `docker notarize ls`): the digests one signer
// key has statements about, with the key's current statement about each,
// one page at a time in increasing digest order, every entry proven under
// one checkpoint. It reads the key's rows of the key index (key ID, digest)
// → current statement, never another key's, and the entries it answers
// with; its work per page is bounded like a digest lookup's.

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"math/bits"
	"slices"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/transparency-dev/formats/log"
)

// Bounds of one page of a key lookup, beside api.MaxLookupLimit,
// maxAnswerEstimate and maxConcurrentLookups.
const (
	// maxKeyScan bounds the key index rows one page reads: a status
	// filter that skips most of a key's digests ends the page early, with
	// Next, instead of reading all of them.
	maxKeyScan = 5 * api.MaxLookupLimit
	// keyScanChunk is the rows read from the key index at a time.
	keyScanChunk = 256
	// keyReadChunk is the entries read at a time when answering: a page
	// cut short by maxAnswerEstimate reads at most this many entries past
	// what it returns.
	keyReadChunk = 16
)

// KeyDigestsOptions selects one page of a key lookup.
type KeyDigestsOptions struct {
	// Status, when not empty, keeps only the digests whose current
	// statement by the key has this status.
	Status notarize.Status
	// Cursor, when not empty, starts the page after this digest (the
	// previous page's Next).
	Cursor notarize.Digest
	// Limit bounds the page's entries: 1 to api.MaxLookupLimit, or 0 for
	// api.DefaultLookupLimit.
	Limit int
}

// keyPick is one digest a key lookup answers with: the log index of the
// key's current statement about it under the answer's checkpoint.
type keyPick struct {
	digest []byte
	index  uint64
}

// KeyDigests returns one page of the digests keyID (64 lowercase hex) has
// statements about, in increasing digest order, each with the key's
// current statement about it (newest signed timestamp, ties broken by the
// greater log index) among the entries the latest checkpoint covers, and
// its inclusion proof to that checkpoint. Next is set when more digests
// may follow: a page holds at most opts.Limit entries and ends early when
// its answer would grow past api.MaxAnswerSize or after maxKeyScan rows of
// the key index, so it may hold fewer entries, even none, and still carry
// Next. Only the key's own rows and entries are read.
func (l *Ledger) KeyDigests(ctx context.Context, keyID string, opts KeyDigestsOptions) (*api.KeyDigestsResponse, error) {
	key, after, limit, err := keyLookupArgs(keyID, opts)
	if err != nil {
		return nil, fmt.Errorf("key lookup: %w", err)
	}
	cpRaw, cp, err := l.coveredCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("key lookup: %w", err)
	}
	leave, err := l.enterLookup(ctx, lookupAPI)
	if err != nil {
		return nil, fmt.Errorf("key lookup: %w", err)
	}
	defer leave()
	picks, next, err := l.store.keyDigests(ctx, key, storage.StatusCode(opts.Status), after, cp.Size, limit)
	if err != nil {
		return nil, fmt.Errorf("key lookup: %w", err)
	}
	resp, err := l.keyAnswer(ctx, keyID, cpRaw, cp, picks)
	if err != nil {
		return nil, fmt.Errorf("key lookup: %w", err)
	}
	if n := len(resp.Entries); n < len(picks) {
		next = picks[n-1].digest // cut short by the answer's size
	}
	if next != nil {
		resp.Next = "sha256:" + hex.EncodeToString(next)
	}
	return resp, nil
}

// keyLookupArgs checks a key lookup's key ID and options and returns the
// raw key ID, the raw cursor digest (nil for none) and the page limit.
func keyLookupArgs(keyID string, opts KeyDigestsOptions) (key, after []byte, limit int, err error) {
	if !isKeyID(keyID) {
		return nil, nil, 0, fmt.Errorf("%w: key ID %q: want 64 lowercase hex characters", errBadRequest, truncate(keyID, 80))
	}
	key, _ = hex.DecodeString(keyID)
	if opts.Status != "" && storage.StatusCode(opts.Status) == 0 {
		return nil, nil, 0, fmt.Errorf("%w: %s %q: want %s, %s or %s", errBadRequest, api.QueryStatus, truncate(string(opts.Status), 40),
			notarize.StatusTrusted, notarize.StatusUntrusted, notarize.StatusUnsupported)
	}
	if opts.Cursor != "" {
		d, err := notarize.ParseDigest(string(opts.Cursor))
		raw, herr := hex.DecodeString(d.Hex())
		if err != nil || herr != nil || len(raw) != 32 {
			return nil, nil, 0, fmt.Errorf("%w: %s %q: want a sha256 digest", errBadRequest, api.QueryCursor, truncate(string(opts.Cursor), 80))
		}
		after = raw
	}
	limit = opts.Limit
	if limit == 0 {
		limit = api.DefaultLookupLimit
	}
	if limit < 0 || limit > api.MaxLookupLimit {
		return nil, nil, 0, fmt.Errorf("%w: %s %d: want 1 to %d", errBadRequest, api.QueryLimit, limit, api.MaxLookupLimit)
	}
	return key, after, limit, nil
}

// keyDigests returns up to limit digests of key after the digest after
// (raw; nil for the first), in increasing order, whose current statement
// by the key below index below has status code status (0: any), and the
// raw digest a next page starts after (nil when no row of the key
// follows). It reads at most maxKeyScan rows of the key index, all of key.
// A row whose current statement is at or past below (indexed after the
// checkpoint the answer proves against) is looked up again below it.
func (s *index) keyDigests(ctx context.Context, key []byte, status byte, after []byte, below uint64, limit int) ([]keyPick, []byte, error) {
	var picks []keyPick
	cursor := after
	for scanned := 0; ; {
		if scanned >= maxKeyScan {
			return picks, cursor, nil
		}
		n := min(keyScanChunk, maxKeyScan-scanned)
		rows, err := s.db.KeyDigests(ctx, key, cursor, n)
		if err != nil {
			return nil, nil, fmt.Errorf("index: key digests: %w", err)
		}
		for _, r := range rows {
			if len(picks) == limit {
				return picks, cursor, nil // r follows: there is more
			}
			if cursor != nil && bytes.Compare(r.Digest, cursor) <= 0 {
				return nil, nil, fmt.Errorf("index: key digests out of order: %x after %x", r.Digest, cursor)
			}
			scanned++
			cursor = r.Digest
			idx, code, ok, err := s.currentBelow(ctx, key, r, below)
			if err != nil {
				return nil, nil, err
			}
			if ok && (status == 0 || code == status) {
				picks = append(picks, keyPick{digest: r.Digest, index: idx})
			}
		}
		if len(rows) < n {
			return picks, nil, nil
		}
	}
}

// currentBelow returns the index and status code of key's current
// statement about r.Digest below index below: r's own when it is below,
// or else the current one among the (digest, key) rows below it, whose
// status is read from its entry; ok is false when the key made none below.
func (s *index) currentBelow(ctx context.Context, key []byte, r storage.KeyRow, below uint64) (uint64, byte, bool, error) {
	if r.Index < below {
		return r.Index, r.Status, true, nil
	}
	got, err := s.db.Current(ctx, r.Digest, [][]byte{key}, below)
	if err != nil || len(got) == 0 {
		if err != nil {
			err = fmt.Errorf("index: current below %d: %w", below, err)
		}
		return 0, 0, false, err
	}
	var code byte
	err = s.db.Entries(ctx, got[:1], func(_ uint64, data []byte) bool {
		code = indexEntry(data).Status
		return false
	})
	if err != nil {
		return 0, 0, false, fmt.Errorf("index: entry %d: %w", got[0], err)
	}
	return got[0], code, true, nil
}

// keyAnswer reads the entries of picks (in digest order, below cp.Size)
// and proves them under cp. It stops before the answer's estimated size
// would pass maxAnswerEstimate, keeping at least one entry.
func (l *Ledger) keyAnswer(ctx context.Context, keyID string, cpRaw []byte, cp *log.Checkpoint, picks []keyPick) (*api.KeyDigestsResponse, error) {
	resp := &api.KeyDigestsResponse{KeyID: keyID, Checkpoint: string(cpRaw), Entries: []api.LookupEntry{}}
	proofSize := 48 * bits.Len64(cp.Size) // base64 hashes in JSON, per entry
	size := len(cpRaw) + len(keyID) + 160 // the envelope and Next
	var indices []uint64
	var entries [][]byte
	full := false
	for start := 0; start < len(picks) && !full; start += keyReadChunk {
		chunk := picks[start:min(start+keyReadChunk, len(picks))]
		data, err := l.store.entryMap(ctx, chunk)
		if err != nil {
			return nil, err
		}
		for _, p := range chunk {
			size += base64Len(len(data[p.index])) + proofSize + 64
			if len(entries) > 0 && size > maxAnswerEstimate {
				full = true
				break
			}
			indices = append(indices, p.index)
			entries = append(entries, data[p.index])
		}
	}
	if len(entries) == 0 {
		return resp, nil
	}
	proofs, err := l.checkedProofs(ctx, cp, indices, entries)
	if err != nil {
		return nil, err
	}
	for k, data := range entries {
		resp.Entries = append(resp.Entries, api.LookupEntry{Index: indices[k], Entry: data, InclusionProof: proofs[k]})
	}
	return resp, nil
}

// entryMap reads the entries of picks, by log index.
func (s *index) entryMap(ctx context.Context, picks []keyPick) (map[uint64][]byte, error) {
	indices := make([]uint64, len(picks))
	for i, p := range picks {
		indices[i] = p.index
	}
	slices.Sort(indices)
	indices = slices.Compact(indices)
	out := make(map[uint64][]byte, len(indices))
	err := s.entries(ctx, indices, func(i uint64, data []byte) bool {
		out[i] = data
		return true
	})
	return out, err
}
