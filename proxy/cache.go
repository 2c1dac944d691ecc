package proxy

import (
	"container/list"
	"encoding/json"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"sync"

	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy/upstream"
)

// manifestCache keeps verified manifest bytes by digest, least recently
// used out first. Being content-addressed, an entry can never be wrong;
// the policy is still applied to every request it serves.
type manifestCache struct {
	mu    sync.Mutex
	max   int64
	bytes int64
	ll    *list.List // of *upstream.Manifest, front = most recent
	items map[notarize.Digest]*list.Element
}

func newManifestCache(maxBytes int64) *manifestCache {
	return &manifestCache{max: maxBytes, ll: list.New(), items: map[notarize.Digest]*list.Element{}}
}

func (c *manifestCache) get(d notarize.Digest) (*upstream.Manifest, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[d]; ok {
		c.ll.MoveToFront(e)
		return e.Value.(*upstream.Manifest), true
	}
	return nil, false
}

func (c *manifestCache) put(m *upstream.Manifest) {
	if c.max <= 0 || int64(len(m.Bytes)) > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[m.Digest]; ok {
		c.ll.MoveToFront(e)
		return
	}
	c.items[m.Digest] = c.ll.PushFront(m)
	c.bytes += int64(len(m.Bytes))
	for c.bytes > c.max {
		e := c.ll.Back()
		old := e.Value.(*upstream.Manifest)
		c.ll.Remove(e)
		delete(c.items, old.Digest)
		c.bytes -= int64(len(old.Bytes))
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

// indexChildren returns the manifests an image index lists, or nil when b
// is not an index.
func indexChildren(mediaType string, b []byte) []notarize.Digest {
	var doc struct {
		MediaType string `json:"mediaType"`
		Manifests []struct {
			Digest string `json:"digest"`
		} `json:"manifests"`
	}
	if json.Unmarshal(b, &doc) != nil || len(doc.Manifests) == 0 {
		return nil
	}
	switch mediaType {
	case ocispec.MediaTypeImageIndex, string(types.DockerManifestList):
	default:
		return nil
	}
	var kids []notarize.Digest
	for _, m := range doc.Manifests {
		if d, err := notarize.ParseDigest(m.Digest); err == nil && len(kids) < maxChildrenPerIndex {
			kids = append(kids, d)
		}
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
