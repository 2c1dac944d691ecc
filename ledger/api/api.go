// Package api is the wire contract of the docker notarize ledger's HTTP API:
// its paths, query parameters, request and answer types and error codes. The
// server (package ledger) encodes them and the client (package ledgerclient)
// decodes and verifies them; neither owns them. It imports nothing of this
// module but the core, as Tessera's api package and sumdb's tlog do for
// theirs. Byte slices are standard base64 in JSON.
//
//	POST /api/v1/entries            body: notarize.Entry JSON  → 200/201 Receipt
//	GET  /api/v1/digests/{digest}[?keyid=K…][&after=I][&limit=N][&tail=inline]  → 200 LookupResponse (one page)
//	GET  /api/v1/digests/{digest}/current?keyid=K…[&tail=inline]  → 200 LookupResponse (current statement per key)
//	GET  /api/v1/keys/{keyid}/digests[?status=S][&cursor=C][&limit=N]  → 200 KeyDigestsResponse (one page)
//	GET  /api/v1/keys/{keyid}/identity  → 200 KeyIdentity, 404 when the key has no enrolled identity
//	GET  /api/v1/info               → 200 Info
//	GET  /checkpoint, /tile/…, /tile/entries/…   C2SP tlog-tiles (https://c2sp.org/tlog-tiles)
//
// Every error is an ErrorResponse with a 4xx or 5xx status.
//
// A submission over a rate limit is 429 RATE_LIMITED with a Retry-After
// header (seconds). Replaying a logged statement, in any encoding or with
// another signature by the same key, appends nothing: the answer is 200
// with Duplicate set and the entry as logged.
package api

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/transparency-dev/tessera/api/layout"
)

// API paths served by the ledger.
const (
	PathEntries = "/api/v1/entries"
	PathDigests = "/api/v1/digests/" // followed by the digest, "sha256:…"
	PathInfo    = "/api/v1/info"
	// PathCurrentSuffix follows PathDigests+digest: the current statement
	// of each asked-for key ("/api/v1/digests/sha256:…/current").
	PathCurrentSuffix = "/current"
)

// A key lookup (PathKeys + key ID + PathKeyDigestsSuffix) lists the digests
// one signer key has statements about, with the current statement of each
// (newest signed timestamp, ties broken by the greater log index), in
// increasing digest order. QueryStatus keeps only digests whose current
// statement has that status; QueryCursor continues after the digest a
// previous page gave as Next; QueryLimit bounds a page (DefaultLookupLimit,
// at most MaxLookupLimit). Every entry carries an inclusion proof to the
// answer's checkpoint, so the client checks that each listed statement is
// logged and signed by the key; that the list is complete is not proven.
const (
	// PathKeys is followed by the key ID and PathKeyDigestsSuffix.
	PathKeys = "/api/v1/keys/"
	// PathKeyDigestsSuffix follows PathKeys+keyID ("/api/v1/keys/3f…/digests").
	PathKeyDigestsSuffix = "/digests"
	// QueryStatus filters a key lookup by current status: trusted, untrusted or unsupported.
	QueryStatus = "status"
	// QueryCursor asks a key lookup for digests after its value ("sha256:…").
	QueryCursor = "cursor"
)

// KeyDigestsResponse is one page of a key lookup: at most one entry per
// digest, the key's current statement about it, in increasing digest order.
type KeyDigestsResponse struct {
	KeyID      string        `json:"keyID"`
	Checkpoint string        `json:"checkpoint"`
	Entries    []LookupEntry `json:"entries"`
	// Next, when set, is the QueryCursor value of the next page.
	Next string `json:"next,omitempty"`
}

// Pagination of a digest lookup. Entries come in increasing log index; a
// page that is not the last carries Next, the value of QueryAfter for the
// following page. Statements by keys that were not asked for are never
// read, proven or counted, so they cannot change a filtered lookup's pages.
// A page may hold fewer than QueryLimit entries and still carry Next (the
// ledger also keeps every answer under MaxAnswerSize); only the absence of
// Next means the last page. A page holds at least one entry when any
// matches. An invalid after, limit or keyid is 400 BAD_REQUEST.
const (
	// QueryAfter asks for entries with a log index greater than its value.
	QueryAfter = "after"
	// QueryLimit bounds the entries of one page (at most MaxLookupLimit).
	QueryLimit = "limit"
	// DefaultLookupLimit is a page's size when QueryLimit is absent.
	DefaultLookupLimit = 100
	// MaxLookupLimit is the largest QueryLimit the ledger accepts.
	MaxLookupLimit = 1000
)

// QueryKeyID is the repeatable query parameter of a digest lookup that limits
// the answer to entries signed by these key IDs (hex SHA-256 of the DER public
// key). A verifier asks only for the signers it accepts, so statements by
// anyone else, however many, cannot bloat its answer.
const QueryKeyID = "keyid"

// MaxLookupKeyIDs bounds the key IDs one lookup may name.
const MaxLookupKeyIDs = 256

// MaxCurrentKeyIDs bounds the key IDs of one current lookup
// (PathCurrentSuffix), so that its answer, one entry of up to 64 KiB per
// key with its proof, stays under MaxAnswerSize. A client asking for more
// keys splits them over several lookups.
const MaxCurrentKeyIDs = 64

// MaxAnswerSize bounds the body of every lookup answer the ledger sends;
// a client may refuse a larger one.
const MaxAnswerSize = 8 << 20

// MediaTypeJSON is the content type of every API request and response body.
const MediaTypeJSON = "application/json"

// Receipt is the ledger's answer to a submission, sent only once the entry is
// integrated into the log and covered by the checkpoint it carries.
type Receipt struct {
	// Index is the entry's position in the log.
	Index uint64 `json:"index"`
	// Duplicate is true when the same statement (the same key and signed
	// payload) was already in the log at Index.
	Duplicate bool `json:"duplicate,omitempty"`
	// Entry is the entry's bytes exactly as stored in the log (its Merkle
	// leaf). For a Duplicate it is the logged entry, whose signature may
	// differ from the submitted one's (ECDSA signatures are randomized):
	// compare statements (key ID and payload), not bytes.
	Entry []byte `json:"entry"`
	// Checkpoint is a C2SP signed-note checkpoint whose tree contains Index.
	Checkpoint string `json:"checkpoint"`
	// InclusionProof proves Entry at Index under Checkpoint's root hash (RFC 6962).
	InclusionProof [][]byte `json:"inclusionProof"`
}

// LookupResponse lists the log entries whose statement subject is a digest,
// each with an inclusion proof to the one checkpoint given. It is a hint: the
// client checks every proof and every signature.
//
// For a current lookup (PathCurrentSuffix) Entries holds at most one entry
// per asked-for key: the statement with the newest signed timestamp, ties
// broken by the greater log index; Next is never set. The keyid parameter
// is required there (1 to MaxCurrentKeyIDs); after and limit are ignored.
type LookupResponse struct {
	Digest     string        `json:"digest"`
	Checkpoint string        `json:"checkpoint"`
	Entries    []LookupEntry `json:"entries"`
	// Next, when set, is the QueryAfter value of the next page: more entries
	// match. Absent on the last page.
	Next *uint64 `json:"next,omitempty"`
	// Map, on a current lookup and on each page of a lookup by key IDs,
	// proves the answer complete (issue 11): what the ledger's verifiable
	// index holds for each asked-for key under the newest map root
	// committed in the log (for a paginated lookup, the client checks the
	// whole walk against the last page's). Absent from ledgers of earlier
	// versions.
	Map *MapProof `json:"map,omitempty"`
}

// MapProof proves what a ledger's verifiable index (package vindex) holds
// for the keys of a lookup under one committed map root: a map-root entry
// (notarize.MapRoot, signed by the ledger's checkpoint key) in the log,
// covering the log's first Size entries. The client checks the root
// entry's inclusion proof against the answer's checkpoint, each key's proof
// against the root, and reads the log's tail, the entries from the root's
// Size to the checkpoint's, from the public entry bundles itself (or from
// Tail, when the answer carries it). Without a committed root (RootIndex
// absent) the tail is the whole log.
type MapProof struct {
	// RootIndex is the log index of the map-root entry.
	RootIndex *uint64 `json:"rootIndex,omitempty"`
	// RootEntry is the map-root entry's bytes as logged.
	RootEntry []byte `json:"rootEntry,omitempty"`
	// RootInclusionProof proves RootEntry at RootIndex under the answer's checkpoint.
	RootInclusionProof [][]byte `json:"rootInclusionProof,omitempty"`
	// Keys holds one proof per asked-for key ID, in increasing key ID order.
	Keys []KeyMapProof `json:"keys"`
	// Tail, only when the lookup asked for it (QueryTail), holds the
	// resources of the log's tail after the root for the answer's
	// checkpoint, unproven (InlineTail). It travels in a framed answer
	// (MarshalTailAnswer), never in JSON. Absent when there is no root or
	// no tail to read, and on a page that is not the last.
	Tail *InlineTail `json:"-"`
}

// KeyMapProof is the map proof of one (digest, key ID): a vindex.Proof and,
// when the key is present, its value (vindex.Value encoded).
type KeyMapProof struct {
	KeyID string `json:"keyID"`
	// Value is the map value when the key has statements about the digest.
	Value []byte `json:"value,omitempty"`
	// Depth, Bitmap and Siblings are the path (vindex.Proof).
	Depth    int      `json:"depth"`
	Bitmap   []byte   `json:"bitmap,omitempty"`
	Siblings [][]byte `json:"siblings,omitempty"`
	// LeafKey and LeafValueHash name the leaf where the path ends, when it
	// ends at one: this key's own, or another key's (proving absence).
	LeafKey       []byte `json:"leafKey,omitempty"`
	LeafValueHash []byte `json:"leafValueHash,omitempty"`
}

// LookupEntry is one entry of a LookupResponse.
type LookupEntry struct {
	Index          uint64   `json:"index"`
	Entry          []byte   `json:"entry"`
	InclusionProof [][]byte `json:"inclusionProof"`
}

// Info describes a ledger.
type Info struct {
	// Origin is the checkpoint origin line (the log's name).
	Origin string `json:"origin"`
	// VerifierKey is the checkpoint verifier key as a signed-note verifier string.
	VerifierKey string `json:"verifierKey"`
	// Size is the tree size of the latest checkpoint.
	Size uint64 `json:"size"`
	// OpenWrites is false when only enrolled signers may submit.
	OpenWrites bool `json:"openWrites"`
}

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	// Code is a stable machine-readable code, one of the Code* constants.
	Code string `json:"code"`
	// Message explains the error to a person.
	Message string `json:"message"`
}

// Error codes of ErrorResponse.
const (
	CodeBadRequest   = "BAD_REQUEST"   // malformed JSON, bad digest, bad statement
	CodeBadSignature = "BAD_SIGNATURE" // envelope does not verify under its key
	CodeTooLarge     = "TOO_LARGE"     // body over the size bound
	CodeFuture       = "FUTURE"        // statement dated too far in the future
	CodeNotEnrolled  = "NOT_ENROLLED"  // signer not in --signers
	CodeNotFound     = "NOT_FOUND"     // unknown path
	CodeUnavailable  = "UNAVAILABLE"   // overloaded (pushback) or shutting down; retry
	CodeInternal     = "INTERNAL"      // a bug or storage failure
	CodeRateLimited  = "RATE_LIMITED"  // 429 with Retry-After: this key or client wrote too much
	CodeMethod       = "METHOD_NOT_ALLOWED"
)

// PathKeyIdentitySuffix follows PathKeys+keyID: the identity the ledger
// enrols the key with (its --signers file), a KeyIdentity; 404 NOT_FOUND
// when it enrols none for the key. It is the ledger's word, not proven by
// the log: the ledger checks each statement's claimed name and email
// against it when the statement is submitted.
const PathKeyIdentitySuffix = "/identity"

// KeyIdentity is a key's enrolled signer identity.
type KeyIdentity struct {
	KeyID string `json:"keyID"`
	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
}

// CodeIdentityMismatch is the ErrorResponse code (403) of a statement that
// claims a name or email its key is not enrolled with in --signers.
const CodeIdentityMismatch = "IDENTITY_MISMATCH"

// CodeKeyRevoked is the ErrorResponse code (403) of a statement new to the
// log whose key revoked itself (a key revocation about sha256:<its key ID>,
// signed by it, is in the ledger's index): it would not count for any
// verifier. A replay of a statement logged before the revocation is still
// answered with its receipt.
const CodeKeyRevoked = "KEY_REVOKED"

// QueryTail, set to TailInline on a current lookup or on a page of a
// lookup by key IDs, asks the ledger to carry the log's tail after the
// answer's map root inline (MapProof.Tail): the tlog-tiles resources the
// client would otherwise fetch to prove the answer complete, so that a
// verify is one request to the ledger. Other values are ignored; an answer
// not asked for it never carries it, so older clients pay nothing. An
// answer that carries a tail is framed (MarshalTailAnswer: the JSON answer
// and the resources' raw bytes, no base64), one that does not is JSON.
//
// TailAnchor asks for the same, except when the answer's map root carries
// a time (notarize.MapRoot.Time) at most AnchorMaxAge old by the ledger's
// clock: the answer then carries no tail, and the client proves it complete
// up to that root's time instead of up to the checkpoint (the anchored
// check, ledgerclient). A client asks it as tail=inline with QueryAnchor
// set to AnchorYes, so that a ledger from before the anchored check (which
// ignores the unknown parameter) still carries the tail; tail=anchor is
// accepted too.
const (
	QueryTail   = "tail"
	TailInline  = "inline"
	TailAnchor  = "anchor"
	QueryAnchor = "anchor"
	AnchorYes   = "1"
)

// AnchorMaxAge is how recent a map root must be, by the ledger's clock, for
// an answer asked with TailAnchor to go without its tail. A ledger commits
// a root every few seconds under load (DefaultMapCommitInterval after the
// first entry waiting), so its newest root is younger than this while it
// works as it should; a client accepts a root up to its own bound
// (ledgerclient.Config.MaxIndexLag), larger than this to leave room for the
// answer's travel and clock skew, and reads the tail itself past it.
const AnchorMaxAge = 5 * time.Second

// Bounds of an inline tail. A ledger carries at most MaxInlineBundles
// entry bundles and MaxInlineTailBytes of resource bytes (bundles and
// tiles), and keeps the whole answer under MaxAnswerSize; beyond that it
// carries the first bundles only, and the client fetches the rest. A
// client refuses an answer whose inline tail passes these bounds.
const (
	MaxInlineBundles   = 16
	MaxInlineTiles     = 8
	MaxInlineTailBytes = 4 << 20
)

// InlineTail holds the raw tlog-tiles resources of a lookup's tail, as
// /tile/entries/… and /tile/… serve them, for the answer's checkpoint:
// the entry bundles holding the log entries from TailStart(size the map
// root covers) to the checkpoint's size, and the hash tiles TailTiles
// names for the compact range before them. Nothing in it is trusted: the
// client proves every byte exactly as it proves bytes it fetched (each
// bundle's leaves and the tiles' hashes must hash to the checkpoint's
// signed root), takes an item only under the (level, index, width) the
// proof needs, and fetches any it does not find. It may hold a prefix of
// the bundles only.
type InlineTail struct {
	Bundles []InlineBundle `json:"bundles,omitempty"`
	Tiles   []InlineTile   `json:"tiles,omitempty"`
}

// InlineBundle is one entry bundle of an InlineTail: the bytes of
// /tile/entries/<Index>[.p/<Width>] (Width 0: a full bundle).
type InlineBundle struct {
	Index uint64 `json:"index"`
	Width uint8  `json:"width,omitempty"`
	Data  []byte `json:"data"`
}

// InlineTile is one hash tile of an InlineTail: the bytes of
// /tile/<Level>/<Index>[.p/<Width>] (Width 0: a full tile).
type InlineTile struct {
	Level uint64 `json:"level"`
	Index uint64 `json:"index"`
	Width uint8  `json:"width,omitempty"`
	Data  []byte `json:"data"`
}

// TileID names a hash tile of a tree: its level, index and width (0: full).
type TileID struct {
	Level, Index uint64
	Width        uint8
}

// TailStart is the first log index of the entry bundle holding index from:
// a tail read from from reads the bundles from TailStart(from) on.
func TailStart(from uint64) uint64 {
	w := uint64(layout.EntryBundleWidth)
	return from / w * w
}

// TailTiles lists the hash tiles holding the compact range of [0, start)
// in a tree of size entries (start a multiple of the bundle width, as
// TailStart gives, so tile level 0 holds none of it), lowest level first,
// each with the width the tree gives it: the tiles a tail read from start
// needs besides its entry bundles.
func TailTiles(start, size uint64) []TileID {
	var ts []TileID
	for lvl := uint64(1); lvl*layout.TileHeight < 64 && start>>(lvl*layout.TileHeight) > 0; lvl++ {
		if (start>>(lvl*layout.TileHeight))%layout.TileWidth == 0 {
			continue
		}
		idx := start >> ((lvl + 1) * layout.TileHeight) // 0 once the shift reaches 64
		ts = append(ts, TileID{Level: lvl, Index: idx, Width: layout.PartialTileSize(lvl, idx, size)})
	}
	return ts
}

// MediaTypeTailAnswer is the content type of a framed lookup answer, one
// that carries an inline tail (MarshalTailAnswer).
const MediaTypeTailAnswer = "application/vnd.docker-notarize.lookup-tail"

// tailAnswerMagic starts a framed lookup answer (MarshalTailAnswer); no
// JSON text starts with it.
const tailAnswerMagic = "NTAIL1\n"

// Kinds of the resources of a framed answer.
const (
	tailKindBundle = 'b'
	tailKindTile   = 't'
)

// tailItemHeader is the size of a resource's header in a framed answer:
// kind, level, index, width and length.
const tailItemHeader = 1 + 8 + 8 + 1 + 4

// ErrBadTailAnswer is returned (wrapped) for a framed lookup answer that
// does not decode or passes the inline tail's bounds.
var ErrBadTailAnswer = errors.New("bad framed lookup answer")

// IsTailAnswer reports whether b is a framed lookup answer (one carrying
// an inline tail) rather than JSON.
func IsTailAnswer(b []byte) bool {
	return len(b) >= len(tailAnswerMagic) && string(b[:len(tailAnswerMagic)]) == tailAnswerMagic
}

// MarshalTailAnswer encodes r, whose map proof carries an inline tail, as
// a framed answer: tailAnswerMagic; the JSON of r (without the tail) after
// its length (4 bytes, big-endian); then each resource, bundles first:
// its kind ('b' or 't'), level, index (8 bytes each, big-endian; level 0
// for a bundle), width (1 byte) and length (4 bytes), and its bytes. Raw
// bytes cost neither side a base64 pass over the tail.
func MarshalTailAnswer(r *LookupResponse) ([]byte, error) {
	j, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode lookup answer: %w", err)
	}
	n := len(tailAnswerMagic) + 4 + len(j)
	var t InlineTail
	if r.Map != nil && r.Map.Tail != nil {
		t = *r.Map.Tail
	}
	for _, b := range t.Bundles {
		n += tailItemHeader + len(b.Data)
	}
	for _, tl := range t.Tiles {
		n += tailItemHeader + len(tl.Data)
	}
	out := make([]byte, 0, n)
	out = append(out, tailAnswerMagic...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(j)))
	out = append(out, j...)
	item := func(kind byte, level, index uint64, width uint8, data []byte) {
		out = append(out, kind)
		out = binary.BigEndian.AppendUint64(out, level)
		out = binary.BigEndian.AppendUint64(out, index)
		out = append(out, width)
		out = binary.BigEndian.AppendUint32(out, uint32(len(data)))
		out = append(out, data...)
	}
	for _, b := range t.Bundles {
		item(tailKindBundle, 0, b.Index, b.Width, b.Data)
	}
	for _, tl := range t.Tiles {
		item(tailKindTile, tl.Level, tl.Index, tl.Width, tl.Data)
	}
	return out, nil
}

// UnmarshalTailAnswer decodes a framed answer (MarshalTailAnswer) of at
// most MaxAnswerSize bytes, refusing one with more than MaxInlineBundles
// bundles, MaxInlineTiles tiles or MaxInlineTailBytes of resources, or one
// that ends early or has bytes left over. Its resources' bytes alias b.
// Nothing in them is checked here: they are unproven, like fetched bytes.
func UnmarshalTailAnswer(b []byte) (*LookupResponse, error) {
	if len(b) > MaxAnswerSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadTailAnswer, len(b), MaxAnswerSize)
	}
	if !IsTailAnswer(b) {
		return nil, fmt.Errorf("%w: no framed answer", ErrBadTailAnswer)
	}
	b = b[len(tailAnswerMagic):]
	if len(b) < 4 || uint64(binary.BigEndian.Uint32(b)) > uint64(len(b)-4) {
		return nil, fmt.Errorf("%w: the JSON answer's length", ErrBadTailAnswer)
	}
	n := int(binary.BigEndian.Uint32(b))
	var r LookupResponse
	if err := json.Unmarshal(b[4:4+n], &r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadTailAnswer, err)
	}
	b = b[4+n:]
	t := &InlineTail{}
	total := 0
	for len(b) > 0 {
		if len(b) < tailItemHeader {
			return nil, fmt.Errorf("%w: a resource's header cut short", ErrBadTailAnswer)
		}
		kind, level, index, width := b[0], binary.BigEndian.Uint64(b[1:]), binary.BigEndian.Uint64(b[9:]), b[17]
		size := uint64(binary.BigEndian.Uint32(b[18:]))
		b = b[tailItemHeader:]
		if size > uint64(len(b)) {
			return nil, fmt.Errorf("%w: a resource of %d bytes, %d left", ErrBadTailAnswer, size, len(b))
		}
		if total += int(size); total > MaxInlineTailBytes {
			return nil, fmt.Errorf("%w: more than %d bytes of resources", ErrBadTailAnswer, MaxInlineTailBytes)
		}
		data := b[:size:size]
		b = b[size:]
		switch kind {
		case tailKindBundle:
			if level != 0 {
				return nil, fmt.Errorf("%w: an entry bundle at level %d", ErrBadTailAnswer, level)
			}
			t.Bundles = append(t.Bundles, InlineBundle{Index: index, Width: width, Data: data})
		case tailKindTile:
			t.Tiles = append(t.Tiles, InlineTile{Level: level, Index: index, Width: width, Data: data})
		default:
			return nil, fmt.Errorf("%w: a resource of kind %d", ErrBadTailAnswer, kind)
		}
		if len(t.Bundles) > MaxInlineBundles || len(t.Tiles) > MaxInlineTiles {
			return nil, fmt.Errorf("%w: more than %d entry bundles or %d tiles", ErrBadTailAnswer, MaxInlineBundles, MaxInlineTiles)
		}
	}
	if r.Map == nil {
		if len(t.Bundles)+len(t.Tiles) > 0 {
			return nil, fmt.Errorf("%w: resources without a map proof", ErrBadTailAnswer)
		}
		return &r, nil
	}
	r.Map.Tail = t
	return &r, nil
}

// UnmarshalLookupAnswer decodes a lookup answer as the ledger sends it:
// framed when it carries an inline tail (IsTailAnswer,
// UnmarshalTailAnswer), else JSON.
func UnmarshalLookupAnswer(b []byte) (*LookupResponse, error) {
	if IsTailAnswer(b) {
		return UnmarshalTailAnswer(b)
	}
	var r LookupResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode lookup answer: %w", err)
	}
	return &r, nil
}

// MarshalLookupAnswer encodes r as the ledger sends it: framed when its
// map proof carries an inline tail (MarshalTailAnswer), else JSON.
func MarshalLookupAnswer(r *LookupResponse) ([]byte, error) {
	if r.Map != nil && r.Map.Tail != nil {
		return MarshalTailAnswer(r)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode lookup answer: %w", err)
	}
	return b, nil
}
