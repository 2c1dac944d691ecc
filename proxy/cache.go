package proxy

import (
	"container/list"
	"sync"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/upstream"
)

// manifestKey is where a manifest was served: the upstream, the repository
// there and the digest of the bytes.
type manifestKey struct {
	upstream, repo string
	digest         notarize.Digest
}

// manifestCache keeps verified manifest bytes by (upstream, repository,
// digest), least recently used out first: a digest is served from the cache
// for a repository only once that repository's upstream served it there, so
// bytes fetched for one repository never answer for another (where the
// upstream may not have them, or another rule applies). The policy is still
// applied to every request it serves.
type manifestCache struct {
	mu    sync.Mutex
	max   int64
	bytes int64
	ll    *list.List // of *manifestEntry, front = most recent
	items map[manifestKey]*list.Element
}

type manifestEntry struct {
	key manifestKey
	m   *upstream.Manifest
}

func newManifestCache(maxBytes int64) *manifestCache {
	return &manifestCache{max: maxBytes, ll: list.New(), items: map[manifestKey]*list.Element{}}
}

func (c *manifestCache) get(k manifestKey) (*upstream.Manifest, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*manifestEntry).m, true
	}
	return nil, false
}

// put caches m as served by upstream for repo; k.digest must be m.Digest.
func (c *manifestCache) put(k manifestKey, m *upstream.Manifest) {
	if c.max <= 0 || int64(len(m.Bytes)) > c.max || k.digest != m.Digest {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[k]; ok {
		c.ll.MoveToFront(e)
		return
	}
	c.items[k] = c.ll.PushFront(&manifestEntry{key: k, m: m})
	c.bytes += int64(len(m.Bytes))
	for c.bytes > c.max {
		e := c.ll.Back()
		old := e.Value.(*manifestEntry)
		c.ll.Remove(e)
		delete(c.items, old.key)
		c.bytes -= int64(len(old.m.Bytes))
	}
}

// Bounds of the index memory.
const (
	maxChildrenPerIndex = 4096
	maxParentsPerChild  = 16
	maxRememberedKids   = 1 << 20
)

// parentIndex remembers, for each manifest listed by an image index the
// proxy served and judged trusted, which indexes list it. At decision time
// each parent is judged again with the current records, so untrusting an
// index also stops its children.
type parentIndex struct {
	mu      sync.Mutex
	parents map[notarize.Digest][]notarize.Digest // child → indexes
}

func newParentIndex() *parentIndex {
	return &parentIndex{parents: map[notarize.Digest][]notarize.Digest{}}
}

// indexChildren returns the manifests m lists when the classifier read its
// bytes as an image index (notarize.ClassifyManifest, done once by
// upstream.GetManifest), at most maxChildrenPerIndex, and nil for anything
// else: only a document that is an index, and nothing but an index, can
// become a parent whose trust covers what it lists.
func indexChildren(m *upstream.Manifest) []notarize.Digest {
	if m == nil || m.Parsed == nil || m.Parsed.Kind != notarize.KindIndex {
		return nil
	}
	kids := m.Parsed.Children()
	if len(kids) > maxChildrenPerIndex {
		kids = kids[:maxChildrenPerIndex]
	}
	return kids
}

func (p *parentIndex) remember(index notarize.Digest, children []notarize.Digest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.parents)+len(children) > maxRememberedKids {
		p.parents = map[notarize.Digest][]notarize.Digest{} // start over rather than grow without bound
	}
next:
	for _, c := range children {
		ps := p.parents[c]
		for _, x := range ps {
			if x == index {
				continue next
			}
		}
		if len(ps) >= maxParentsPerChild {
			ps = ps[1:]
		}
		p.parents[c] = append(ps, index)
	}
}

func (p *parentIndex) of(child notarize.Digest) []notarize.Digest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]notarize.Digest(nil), p.parents[child]...)
}
