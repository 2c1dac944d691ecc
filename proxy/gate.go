package proxy

import (
	"cmp"
	"encoding/binary"
	"fmt"
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
	// recently allowed are removed down to 90% (about 150 bytes each).
	gateMaxEntries = 1 << 20
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
// serve there: those referenced by a manifest it allowed there (config and
// layers of an image manifest, the children of an index). It persists in
// a bbolt file, so a restart does not refuse the blobs of an image whose
// manifest a client already has. Growth is bounded by gateMaxAge (older
// entries are refused and swept) and gateMaxEntries (least recently
// allowed evicted). It is safe for concurrent use.
type blobGate struct {
	db         *bolt.DB
	now        func() time.Time
	maxAge     time.Duration
	maxEntries int

	mu      sync.Mutex
	count   int                  // entries in the file
	recent  map[string]time.Time // up\x00repo\x00manifest digest → last written
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

// allowed reports whether blob d may be served for repo at upstream.
func (g *blobGate) allowed(upstream, repo string, d notarize.Digest) (bool, error) {
	var ok bool
	err := g.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(gateBucket).Get(gateKey(upstream, repo, d))
		ok = len(v) == 8 && g.now().Sub(time.Unix(int64(binary.BigEndian.Uint64(v)), 0)) <= g.maxAge
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("blob gate: %w", err)
	}
	return ok, nil
}

// record remembers refs as servable for repo at upstream, because manifest
// m, which references them, was allowed there.
func (g *blobGate) record(upstream, repo string, m notarize.Digest, refs []notarize.Digest) error {
	if len(refs) == 0 {
		return nil
	}
	now := g.now()
	rk := string(gateKey(upstream, repo, m))
	g.mu.Lock()
	last, seen := g.recent[rk]
	g.mu.Unlock()
	if seen && now.Sub(last) < gateRefresh {
		return nil
	}
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], uint64(now.Unix()))
	var added int
	err := g.db.Batch(func(tx *bolt.Tx) error {
		added = 0
		b := tx.Bucket(gateBucket)
		for _, d := range refs {
			k := gateKey(upstream, repo, d)
			if b.Get(k) == nil {
				added++
			}
			if err := b.Put(k, ts[:]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("blob gate: record %s for %s/%s: %w", m, upstream, repo, err)
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
		if len(v) != 8 || binary.BigEndian.Uint64(v) < min {
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
