package proxy

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/upstream"
)

// Bounds of the blob gate.
const (
	// gateMaxAge is how long a blob stays servable for a repository after
	// the last allowed manifest answer that referenced it there.
	gateMaxAge = 7 * 24 * time.Hour
	// gateMaxEntries bounds the gate file: past it, the entries least
	// recently allowed are removed down to 90% (each about 150 bytes, up
	// to 340 with maxGrantsPerBlob grants).
	gateMaxEntries = 1 << 20
	// maxGrantsPerBlob bounds the manifests remembered per blob and
	// repository (most recently allowed first; a layer shared by many
	// tags keeps the latest).
	maxGrantsPerBlob = 4
	// gateRefresh: a manifest allowed again for the same repository within
	// this time is not written again (its entries' age is refreshed at
	// most this often), so repeated pulls cost no disk write.
	gateRefresh = time.Hour
	// maxRefsPerManifest bounds what one manifest may add.
	maxRefsPerManifest = 4096
	// gateRecentMax bounds the memory of recently written manifests.
	gateRecentMax = 100_000
)

var gateBucket = []byte("allowed")

// blobGate remembers, per upstream and repository, the blobs the proxy may
// serve there and why: the manifests it allowed there that reference them
// (config and layers of an image manifest, the children of an index), as
// grants the server judges again at each blob request. It persists in a
// bbolt file, so a restart does not refuse the blobs of an image whose
// manifest a client already has. Growth is bounded by gateMaxAge (older
// entries are refused and swept), gateMaxEntries (least recently allowed
// evicted) and maxGrantsPerBlob. It is safe for concurrent use.
//
// Each entry also says whether this repository's upstream itself served or
// acknowledged the blob: the blob cache is shared, and a manifest naming a
// blob proves nothing about the upstream holding it there (a registry that
// does not check references at push), so a blob is served from the cache
// or from another request's download only once that upstream answered for
// it.
//
// File layout: bucket "allowed", key UPSTREAM \x00 REPO \x00 BLOB DIGEST,
// value the Unix time of the last allowed answer (8 bytes, big endian),
// flags (1 byte: 1 = the upstream answered for the blob), then each grant
// as the raw SHA-256 of the manifest and of its index (zeros when none),
// 64 bytes.
type blobGate struct {
	db         *bolt.DB
	now        func() time.Time
	maxAge     time.Duration
	maxEntries int

	mu      sync.Mutex
	count   int                  // entries in the file
	recent  map[string]time.Time // up\x00repo\x00manifest\x00via → last written
	closing sync.Once
}

// openBlobGate opens (or creates) the gate file at path, whose entries
// last maxAge and number at most maxEntries (gateMaxAge and gateMaxEntries
// for the proxy), and sweeps out expired entries.
func openBlobGate(path string, now func() time.Time, maxAge time.Duration, maxEntries int) (*blobGate, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true})
	if err != nil {
		return nil, fmt.Errorf("open blob gate %s: %w", path, err)
	}
	g := &blobGate{db: db, now: now, maxAge: maxAge, maxEntries: maxEntries, recent: map[string]time.Time{}}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(gateBucket)
		if err != nil {
			return err
		}
		g.count, err = sweep(b, now().Add(-maxAge), maxEntries)
		return err
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open blob gate %s: %w", path, err)
	}
	return g, nil
}

// Close closes the gate file; later calls do nothing.
func (g *blobGate) Close() error {
	var err error
	g.closing.Do(func() { err = g.db.Close() })
	return err
}

// gateKey is UPSTREAM \x00 REPO \x00 DIGEST.
func gateKey(upstream, repo string, d notarize.Digest) []byte {
	return []byte(upstream + "\x00" + repo + "\x00" + string(d))
}

// grant is why a blob may be served for a repository: a manifest allowed
// there that references it and, when that manifest was allowed through the
// trust of an index that lists it, that index. It is judged again at every
// blob request, so a revocation or a stricter rule stops the blobs as it
// stops the manifest.
type grant struct {
	manifest notarize.Digest
	via      notarize.Digest // "" when the manifest was allowed on its own
}

const (
	grantLen    = 2 * 32
	entryHeader = 9 // Unix time, flags
	// flagUpstreamHas: the repository's upstream served or acknowledged
	// the blob.
	flagUpstreamHas = 1
)

// gateEntry is what the gate knows about a blob at a repository.
type gateEntry struct {
	at          time.Time // the last allowed answer that referenced it
	upstreamHas bool      // the repository's upstream answered for it
	grants      []grant   // most recent first
}

func rawDigest(d notarize.Digest) [32]byte {
	var out [32]byte
	_, _ = hex.Decode(out[:], []byte(d.Hex())) // digests are validated sha256
	return out
}

func digestFromRaw(b []byte) notarize.Digest {
	if len(b) != 32 || [32]byte(b) == [32]byte{} {
		return ""
	}
	return notarize.Digest("sha256:" + hex.EncodeToString(b))
}

func validEntry(v []byte) bool { return len(v) >= entryHeader && (len(v)-entryHeader)%grantLen == 0 }

func encodeEntry(e gateEntry) []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, entryHeader+grantLen*len(e.grants)), uint64(e.at.Unix()))
	var flags byte
	if e.upstreamHas {
		flags |= flagUpstreamHas
	}
	v = append(v, flags)
	for _, g := range e.grants {
		m, via := rawDigest(g.manifest), [32]byte{}
		if g.via != "" {
			via = rawDigest(g.via)
		}
		v = append(append(v, m[:]...), via[:]...)
	}
	return v
}

// decodeEntry reads a value; ok is false for a malformed one.
func decodeEntry(v []byte) (e gateEntry, ok bool) {
	if !validEntry(v) {
		return gateEntry{}, false
	}
	e.at = time.Unix(int64(binary.BigEndian.Uint64(v)), 0)
	e.upstreamHas = v[8]&flagUpstreamHas != 0
	for r := v[entryHeader:]; len(r) > 0; r = r[grantLen:] {
		e.grants = append(e.grants, grant{manifest: digestFromRaw(r[:32]), via: digestFromRaw(r[32:grantLen])})
	}
	return e, true
}

// entry returns what the gate knows about blob d at repo of upstream: no
// grants when it was never allowed there or too long ago.
func (g *blobGate) entry(upstream, repo string, d notarize.Digest) (gateEntry, error) {
	var e gateEntry
	err := g.db.View(func(tx *bolt.Tx) error {
		got, ok := decodeEntry(tx.Bucket(gateBucket).Get(gateKey(upstream, repo, d)))
		if ok && g.now().Sub(got.at) <= g.maxAge {
			e = got
		}
		return nil
	})
	if err != nil {
		return gateEntry{}, fmt.Errorf("blob gate: %w", err)
	}
	return e, nil
}

// upstreamHas records that repo's upstream served or acknowledged blob d,
// if the gate has an entry for it there.
func (g *blobGate) upstreamHas(upstream, repo string, d notarize.Digest) error {
	err := g.db.Batch(func(tx *bolt.Tx) error {
		b, k := tx.Bucket(gateBucket), gateKey(upstream, repo, d)
		e, ok := decodeEntry(b.Get(k))
		if !ok || e.upstreamHas {
			return nil
		}
		e.upstreamHas = true
		return b.Put(k, encodeEntry(e))
	})
	if err != nil {
		return fmt.Errorf("blob gate: %s at %s/%s: %w", d, upstream, repo, err)
	}
	return nil
}

// record remembers refs as servable for repo at upstream, because of gr:
// its manifest, which references them, was allowed there.
func (g *blobGate) record(upstream, repo string, gr grant, refs []notarize.Digest) error {
	if len(refs) == 0 {
		return nil
	}
	now := g.now()
	rk := string(gateKey(upstream, repo, gr.manifest)) + "\x00" + string(gr.via)
	g.mu.Lock()
	last, seen := g.recent[rk]
	g.mu.Unlock()
	if seen && now.Sub(last) < gateRefresh {
		return nil
	}
	var added int
	err := g.db.Batch(func(tx *bolt.Tx) error {
		added = 0
		b := tx.Bucket(gateBucket)
		for _, d := range refs {
			k := gateKey(upstream, repo, d)
			old := b.Get(k)
			if old == nil {
				added++
			}
			e := gateEntry{at: now, grants: []grant{gr}}
			if prev, ok := decodeEntry(old); ok {
				e.upstreamHas = prev.upstreamHas
				for _, p := range prev.grants {
					if p != gr && len(e.grants) < maxGrantsPerBlob {
						e.grants = append(e.grants, p)
					}
				}
			}
			if err := b.Put(k, encodeEntry(e)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("blob gate: record %s for %s/%s: %w", gr.manifest, upstream, repo, err)
	}
	g.mu.Lock()
	if len(g.recent) >= gateRecentMax {
		clear(g.recent) // only costs a write per manifest again
	}
	g.recent[rk] = now
	g.count += added
	over := g.count > g.maxEntries
	g.mu.Unlock()
	if over {
		return g.prune()
	}
	return nil
}

// prune removes expired entries, then the least recently allowed ones
// down to 90% of maxEntries.
func (g *blobGate) prune() error {
	var n int
	err := g.db.Update(func(tx *bolt.Tx) error {
		var err error
		n, err = sweep(tx.Bucket(gateBucket), g.now().Add(-g.maxAge), g.maxEntries*9/10)
		return err
	})
	if err != nil {
		return fmt.Errorf("blob gate: prune: %w", err)
	}
	g.mu.Lock()
	g.count = n
	clear(g.recent) // what was evicted is written again at the next pull
	g.mu.Unlock()
	return nil
}

// sweep deletes the entries of b older than cutoff and, if more than keep
// remain, the oldest ones until keep remain. It returns how many remain.
func sweep(b *bolt.Bucket, cutoff time.Time, keep int) (int, error) {
	type entry struct {
		k  []byte
		ts uint64
	}
	var live []entry
	var dead [][]byte
	min := uint64(max(cutoff.Unix(), 0))
	err := b.ForEach(func(k, v []byte) error {
		if !validEntry(v) || binary.BigEndian.Uint64(v) < min {
			dead = append(dead, slices.Clone(k))
		} else {
			live = append(live, entry{k: slices.Clone(k), ts: binary.BigEndian.Uint64(v)})
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if len(live) > keep {
		slices.SortFunc(live, func(a, b entry) int { return cmp.Compare(a.ts, b.ts) })
		for _, e := range live[:len(live)-keep] {
			dead = append(dead, e.k)
		}
		live = live[len(live)-keep:]
	}
	for _, k := range dead {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	return len(live), nil
}

// manifestRefs returns what an allowed manifest lets a client fetch as
// blobs: the config and layers of an image manifest, the manifests an
// index lists, as the core classified its bytes once
// (notarize.ClassifyManifest, in upstream.GetManifest), so the gate and the
// decision read the document the same way. At most maxRefsPerManifest.
func manifestRefs(m *upstream.Manifest) []notarize.Digest {
	if m == nil || m.Parsed == nil {
		return nil
	}
	refs := append(m.Parsed.Blobs(), m.Parsed.Children()...)
	if len(refs) > maxRefsPerManifest {
		refs = refs[:maxRefsPerManifest]
	}
	return refs
}

// blobAllowed reports whether blob d may be served at t: whether one of
// the manifests that let it through the gate there would still be served
// (the current policy, records and index trust; without the catch-up with
// the ledger a refused manifest gets: the blob's manifest was allowed, a
// revocation applies at the next poll). When only UNVERIFIABLE decisions
// refuse it, it is a *trustError (503).
func (s *Server) blobAllowed(ctx context.Context, t target, d notarize.Digest) (allowed, upstreamHas bool, err error) {
	e, err := s.gate.entry(t.up.Name(), t.repo, d)
	if err != nil {
		return false, false, err
	}
	pol, tgt := s.policy.Load(), t.String()
	var terr error
	for _, g := range e.grants {
		ev := s.evaluateGrant(ctx, pol, tgt, g)
		if ev.Allow {
			return true, e.upstreamHas, nil
		}
		if ev.Verdict == notarize.Unverifiable {
			terr = ev.Err
		}
	}
	if terr != nil {
		return false, false, &trustError{target: tgt + "@" + string(d), err: terr}
	}
	return false, false, nil
}

// upstreamAnswered notes that t's upstream served or acknowledged blob d.
// A failure to note it costs a HEAD to the upstream at the next request.
func (s *Server) upstreamAnswered(ctx context.Context, t target, d notarize.Digest) {
	if err := s.gate.upstreamHas(t.up.Name(), t.repo, d); err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "blob gate not updated", slog.String("error", err.Error()))
	}
}

// confirmUpstream asks t's upstream whether it has blob d (a HEAD) before
// the blob is served there from the cache or from another request's
// download, and notes the answer. It reports whether to go on; if not, the
// request has been answered (BLOB_UNKNOWN when the upstream has no such
// blob there).
func (s *Server) confirmUpstream(w http.ResponseWriter, r *http.Request, t target, d notarize.Digest) bool {
	resp, err := t.up.GetBlob(r.Context(), http.MethodHead, t.repo, d)
	if err != nil {
		s.writeError(w, r, t.up.Name(), "blob", err)
		return false
	}
	resp.Body.Close()
	s.upstreamAnswered(r.Context(), t, d)
	return true
}

// evaluateGrant applies pol to g's manifest at tgt as evaluate does, with
// g's index among the indexes that list it (the proxy's memory of them
// starts empty at each start; the gate's does not).
func (s *Server) evaluateGrant(ctx context.Context, pol *notarize.Evaluator, tgt string, g grant) notarize.Evaluation {
	ps := s.parents.of(g.manifest)
	if g.via != "" && !slices.Contains(ps, g.via) {
		ps = append(ps, g.via)
	}
	return s.evaluateWith(ctx, pol, tgt, g.manifest, ps)
}
