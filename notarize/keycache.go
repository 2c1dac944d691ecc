package notarize

import (
	"container/list"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/notarize/docker-notarize/notarize/internal/p256"
	"github.com/sigstore/sigstore/pkg/signature"
)

// DefaultKeyCacheSize is the number of signer keys a KeyCache made with
// size 0 remembers: far more than the signers of a team's ledger.
const DefaultKeyCacheSize = 1024

// A P-256 key with tableAfter accepted entries (logged, or admitted by a
// ledger: KeyCache.Admitted) gets a table of its multiples (package p256:
// ~222 KiB, built in ~0.6 ms, the cost of about 20 verifications it then
// saves), which makes each later verification under it about 2.1 times
// cheaper; at most DefaultKeyCacheTables keys of one cache hold one (its
// tables bound: NewKeyCacheTables), the rest verify as before and try
// again tableAfter entries later. A signer's thousands of
// log entries pay for the table many times over; a key seen a few times
// never builds one.
//
// When every place is taken, a key that earned its table within
// tableIdle entries (counted over all of the cache's keys) takes the place
// of the key whose table has gone unused longest, if that is tableIdle
// entries or more: after a rotation, the new keys get the tables the
// retired ones held (without this they never did while the old keys stayed
// in the cache). A key used less often than that takes no one's place, so
// keys that all stay in use never trade tables back and forth, each trade
// a table built for nothing.
//
// And however a place comes free (a key idle, or dropped from the cache),
// a cache builds at most its tables bound plus one per reclaimEvery
// entries (KeyCache.spend): keys that sign in bursts and idle in between,
// or more keys than the cache holds, one after another (a hostile signer's
// many keys, say), would otherwise each build a table at every burst or
// return, never to use it. This bounds what they waste to one build
// (~0.6 ms) per reclaimEvery entries (~75 ms of checks), and the tables
// they can push out to as many. A rotation's new keys get their tables
// within bound·reclaimEvery entries.
const (
	tableAfter   = 16
	tableIdle    = 4096
	reclaimEvery = tableIdle / 4
)

// DefaultKeyCacheTables bounds the keys of a cache that hold a table of their
// multiples, when NewKeyCache made it: 64 tables, ~14 MiB.
const DefaultKeyCacheTables = 64

// KeyTableBytes is what one key's table of multiples takes in memory
// (p256.TableBytes): a cache's tables take at most its bound times this.
const KeyTableBytes = p256.TableBytes

// KeyCache remembers signer keys that entries carried, by their exact PEM
// text: the parsed key, its key ID and the signature verifier built for
// it. Parsing a key, checking that its PEM is canonical and hashing its
// DER cost about as much as decoding the entry around it, and a log holds
// thousands of entries per key. A cached key is only what parsing that same
// text gave before, so what it saves is the parse, never a check: every
// entry's keyid, signature form and signature are still checked
// (Entry.VerifyWith, Entry.VerifyLoggedWith). Only the keys of entries
// accepted are kept (a logged entry that verified, a submission its caller
// accepted: Remember); text that failed, and keys of entries refused, are
// parsed again each time. A P-256 key used often gets a table that makes
// its verifications cheaper (tableAfter, NewKeyCacheTables); the table's
// verification accepts exactly what crypto/ecdsa accepts. It is bounded
// (least recently used keys are dropped) and safe for concurrent use.
type KeyCache struct {
	mu     sync.Mutex
	max    int
	tables int                      // at most this many keys hold a table
	byPEM  map[string]*list.Element // PEM text → element of lru holding a *cachedKey
	lru    list.List                // front: most recently used
	tabled []*cachedKey             // keys held that took a table's place (cachedKey.tabled), at most tables
	// built is when the tables built so far would all be paid for, at one
	// per reclaimEvery entries of the clock (spend).
	built uint64

	clock atomic.Uint64 // accepted entries under any key (verified): the time tableIdle counts in
}

// cachedKey is what parsing one PEM text gave.
type cachedKey struct {
	pem      string
	pub      crypto.PublicKey
	keyID    string
	verifier signature.Verifier

	uses    atomic.Uint32            // accepted entries under it (P-256 keys only; see verified), up to tableAfter
	counted atomic.Uint64            // the cache's clock at the first of them
	used    atomic.Uint64            // the cache's clock when it took its place or last used its table (at most tableIdle/16 behind)
	table   atomic.Pointer[p256.Key] // its table, once built
	tabled  bool                     // it took one of the cache's table places (KeyCache.mu)
}

// NewKeyCache returns a cache of at most size keys (DefaultKeyCacheSize
// when size <= 0), of which at most DefaultKeyCacheTables hold a table.
func NewKeyCache(size int) *KeyCache {
	return NewKeyCacheTables(size, DefaultKeyCacheTables)
}

// NewKeyCacheTables returns a cache of at most size keys (DefaultKeyCacheSize
// when size <= 0), of which at most tables (DefaultKeyCacheTables when tables
// <= 0, and never more than size) hold a table of their multiples, each
// KeyTableBytes. A ledger whose signers are many more than
// DefaultKeyCacheTables saves about half of each of their verifications with
// a bound that covers them all.
func NewKeyCacheTables(size, tables int) *KeyCache {
	if size <= 0 {
		size = DefaultKeyCacheSize
	}
	if tables <= 0 {
		tables = DefaultKeyCacheTables
	}
	return &KeyCache{max: size, tables: min(tables, size), byPEM: make(map[string]*list.Element)}
}

// Len returns the number of keys held.
func (c *KeyCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// Tables returns the number of keys held that took a place for a table of
// their multiples (at most the cache's bound: TablesBound).
func (c *KeyCache) Tables() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.tabled)
}

// TablesBound returns how many of the cache's keys may hold a table.
func (c *KeyCache) TablesBound() int { return c.tables }

// get returns the key parsed from pemText before, or nil.
func (c *KeyCache) get(pemText string) *cachedKey {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byPEM[pemText]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(el)
	return el.Value.(*cachedKey)
}

// add remembers k, dropping the least recently used key when full.
func (c *KeyCache) add(k *cachedKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byPEM[k.pem]; ok {
		c.lru.MoveToFront(el)
		return
	}
	c.byPEM[k.pem] = c.lru.PushFront(k)
	for c.lru.Len() > c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		gone := old.Value.(*cachedKey)
		delete(c.byPEM, gone.pem)
		c.untable(gone)
	}
}

// p256Table returns k's table of multiples, once built (c may be nil: no
// cache, no table).
func (c *KeyCache) p256Table(k *cachedKey) *p256.Key {
	if c == nil {
		return nil
	}
	return k.table.Load()
}

// Admitted counts e, which VerifyWith accepted and its caller then
// admitted (a ledger: appended it to its log, not as a replay), towards
// its key's table. VerifyWith counts nothing, so that entries a ledger
// refuses for reasons of its own (enrolment, timestamps, replays) earn no
// key a table; VerifyLoggedWith counts the entries it accepts, which a log
// holds already. Nothing happens when c does not hold e's key (c may be
// nil).
func (c *KeyCache) Admitted(e *Entry) {
	if c == nil {
		return
	}
	if k := c.get(e.PublicKey); k != nil {
		c.verified(k)
	}
}

// verified counts an accepted entry of k's and, at the tableAfter-th of a
// P-256 key, builds its table when c has a place for it, or can free one
// (reclaim); with no place, the count starts again, so the key tries again
// tableAfter entries later (c may be nil: no cache, nothing counted).
func (c *KeyCache) verified(k *cachedKey) {
	if c == nil {
		return
	}
	now := c.clock.Add(1)
	if k.table.Load() != nil {
		// Mostly a read: many goroutines verify under one key. Signed, and
		// swapped only for what was read: a now taken before another
		// goroutine's store never moves used back.
		for {
			u := k.used.Load()
			if int64(now-u) <= tableIdle/16 || k.used.CompareAndSwap(u, now) {
				return
			}
		}
	}
	if k.uses.Load() >= tableAfter {
		return // a table being built
	}
	pub, ok := k.pub.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return
	}
	switch k.uses.Add(1) {
	case 1:
		k.counted.Store(now)
		return
	case tableAfter:
	default:
		return
	}
	busy := int64(now-k.counted.Load()) <= tableIdle // earned within tableIdle: may take an idle key's place
	c.mu.Lock()
	// The clock now, not the reading above: while this waited for c.mu,
	// keys in use may have stored later ones in used.
	now = c.clock.Load()
	el, held := c.byPEM[k.pem]
	take := held && el.Value.(*cachedKey) == k && c.canBuild(now) && (len(c.tabled) < c.tables || busy && c.reclaim(now))
	if take {
		c.spend(now)
		k.tabled = true
		k.used.Store(now)
		c.tabled = append(c.tabled, k)
	}
	c.mu.Unlock()
	if !take {
		k.uses.Store(0)
		return
	}
	t, err := p256.NewKey(pub)
	if err != nil { // not for a key that parsed as P-256; give the place back all the same
		c.mu.Lock()
		c.untable(k)
		c.mu.Unlock()
		return
	}
	k.table.Store(t)
}

// canBuild reports whether a table may be built at now (c.mu held): at
// most c.tables of them ahead of one per reclaimEvery entries.
func (c *KeyCache) canBuild(now uint64) bool {
	return max(c.built, now)+reclaimEvery-now <= uint64(c.tables)*reclaimEvery
}

// spend counts a table built at now (c.mu held; canBuild said yes).
func (c *KeyCache) spend(now uint64) {
	c.built = max(c.built, now) + reclaimEvery
}

// reclaim frees the place of the key whose table has gone unused longest,
// if that is more than tableIdle entries at now (c.mu held); that key
// verifies as before and may earn a table again. A key whose table is
// being built keeps its place.
func (c *KeyCache) reclaim(now uint64) bool {
	var idlest *cachedKey
	for _, k := range c.tabled {
		if k.table.Load() != nil && int64(now-k.used.Load()) > tableIdle && (idlest == nil || k.used.Load() < idlest.used.Load()) {
			idlest = k
		}
	}
	if idlest == nil {
		return false
	}
	c.untable(idlest)
	idlest.table.Store(nil)
	idlest.uses.Store(0)
	return true
}

// untable gives k's place back, if it holds one (c.mu held).
func (c *KeyCache) untable(k *cachedKey) {
	if !k.tabled {
		return
	}
	k.tabled = false
	if i := slices.Index(c.tabled, k); i >= 0 {
		c.tabled = slices.Delete(c.tabled, i, i+1)
	}
}

// parseSignerKey parses pemText, which must be one canonical PEM public key
// of an acceptable kind, and returns it with its key ID and verifier.
func parseSignerKey(pemText string) (*cachedKey, error) {
	pub, err := ParsePublicKey([]byte(pemText))
	if err != nil {
		return nil, err
	}
	if err := checkCanonicalPEM(pub, pemText); err != nil {
		return nil, err
	}
	keyID, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	v, err := signature.LoadVerifier(pub, HashFor(pub))
	if err != nil {
		return nil, errBadVerifier(err)
	}
	return &cachedKey{pem: pemText, pub: pub, keyID: keyID, verifier: v}, nil
}

// lookup returns the parsed key of pemText: from c when it holds it (held
// is true), parsed otherwise and not remembered (c may be nil: no cache).
// A key is remembered only once an entry of it was accepted: logged and
// verified (Entry.VerifyLoggedWith), or accepted by the caller
// (KeyCache.Remember). Entries refused, for a bad signature or by a
// ledger's enrolment, then never push the keys of entries accepted out of
// the cache, whatever number of fresh keys they carry.
func (c *KeyCache) lookup(pemText string) (k *cachedKey, held bool, err error) {
	if c != nil {
		if k := c.get(pemText); k != nil {
			return k, true, nil
		}
	}
	k, err = parseSignerKey(pemText)
	return k, false, err
}

// Remember keeps the signer's key of v, which VerifyWith(c) accepted, once
// its caller has accepted the entry too (a ledger: once it is logged, or
// answered as a replay of a statement logged), so that later entries of
// that key skip its parse. VerifyWith remembers no key itself. Nothing
// happens when c is nil, or when v was not verified with c. If c holds the
// key already, that copy stays, with its count and table (moved to the
// front); otherwise a fresh copy is held, with no count and no table,
// whatever became of an earlier one (v may be remembered again after its
// key left the cache).
func (c *KeyCache) Remember(v *Verified) {
	if c == nil || v == nil || v.parsed == nil || v.cache != c {
		return
	}
	k := v.parsed
	c.add(&cachedKey{pem: k.pem, pub: k.pub, keyID: k.keyID, verifier: k.verifier})
}
