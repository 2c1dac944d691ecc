package vindex

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// KeySize is the size of a tree key in bytes; a key has KeyBits bits.
const (
	KeySize = 32
	KeyBits = 8 * KeySize
)

// MaxValueSize bounds the value stored in one leaf.
const MaxValueSize = 255

// Hash is a node hash (SHA-256).
type Hash [32]byte

// Key is a tree key: 256 bits, the most significant bit of its first byte
// choosing the root's child.
type Key [KeySize]byte

// Empty is the hash of an empty subtree.
var Empty Hash

// ErrBadProof is returned (wrapped) by Verify when a proof does not lead to
// the root, is malformed, or proves something else than what was asked.
var ErrBadProof = errors.New("bad map proof")

// ErrBadNode is returned (wrapped) when a stored node does not decode.
var ErrBadNode = errors.New("bad map node")

// bit returns bit i of k (0 is the most significant bit of k[0]).
func (k Key) bit(i int) byte { return (k[i/8] >> (7 - uint(i%8))) & 1 }

// commonPrefix returns the number of leading bits a and b share.
func commonPrefix(a, b Key) int {
	for i := range KeySize {
		if x := a[i] ^ b[i]; x != 0 {
			n := 0
			for x&0x80 == 0 {
				x <<= 1
				n++
			}
			return 8*i + n
		}
	}
	return KeyBits
}

// HashValue returns the SHA-256 of a leaf value, as committed in its leaf.
func HashValue(value []byte) Hash { return sha256.Sum256(value) }

// HashLeaf returns the hash of the leaf of key with a value hashing to vh.
func HashLeaf(key Key, vh Hash) Hash {
	var b [1 + KeySize + 32]byte
	b[0] = 0
	copy(b[1:], key[:])
	copy(b[1+KeySize:], vh[:])
	return sha256.Sum256(b[:])
}

// HashInner returns the hash of an inner node with children left, right.
func HashInner(left, right Hash) Hash {
	var b [1 + 64]byte
	b[0] = 1
	copy(b[1:], left[:])
	copy(b[33:], right[:])
	return sha256.Sum256(b[:])
}

// NodeID names the node at Depth on the path of every key whose first
// Depth bits are those of Prefix (the bits after them are zero).
type NodeID struct {
	Depth  int
	Prefix Key
}

// nodeIDOf returns the ID of the node at depth on key's path.
func nodeIDOf(key Key, depth int) NodeID {
	id := NodeID{Depth: depth}
	full := depth / 8
	copy(id.Prefix[:full], key[:full])
	if r := depth % 8; r != 0 {
		id.Prefix[full] = key[full] & byte(0xff<<(8-r))
	}
	return id
}

// sibling returns the ID of the sibling at depth (>= 1) of key's path.
func siblingOf(key Key, depth int) NodeID {
	id := nodeIDOf(key, depth)
	i := depth - 1
	id.Prefix[i/8] ^= 1 << (7 - uint(i%8))
	return id
}

// child returns the ID of the child b (0 or 1) of id.
func (id NodeID) child(b byte) NodeID {
	c := NodeID{Depth: id.Depth + 1, Prefix: id.Prefix}
	if b == 1 {
		c.Prefix[id.Depth/8] |= 1 << (7 - uint(id.Depth%8))
	}
	return c
}

// Bytes returns the storage key of id: the depth (2 bytes, big-endian) and
// the prefix's first ceil(Depth/8) bytes. It sorts by depth, then by prefix.
func (id NodeID) Bytes() []byte {
	n := (id.Depth + 7) / 8
	b := make([]byte, 2+n)
	binary.BigEndian.PutUint16(b, uint16(id.Depth))
	copy(b[2:], id.Prefix[:n])
	return b
}

// compareIDs orders IDs as their Bytes do (depth, then the prefix's first
// ceil(Depth/8) bytes) without making them.
func compareIDs(a, b NodeID) int {
	if a.Depth != b.Depth {
		return cmp.Compare(a.Depth, b.Depth)
	}
	n := (a.Depth + 7) / 8
	return bytes.Compare(a.Prefix[:n], b.Prefix[:n])
}

// Node is a stored node: an inner node (Leaf false) with its hash, or a
// leaf with its key and value.
type Node struct {
	Leaf  bool
	Hash  Hash   // an inner node's hash; for a leaf, HashLeaf(Key, HashValue(Value))
	Key   Key    // a leaf's key
	Value []byte // a leaf's value
}

// Marshal encodes n for storage: 0x01 and the hash for an inner node;
// 0x00, the key and the value for a leaf.
func (n *Node) Marshal() []byte {
	if !n.Leaf {
		return append([]byte{1}, n.Hash[:]...)
	}
	b := make([]byte, 0, 1+KeySize+len(n.Value))
	b = append(b, 0)
	b = append(b, n.Key[:]...)
	return append(b, n.Value...)
}

// UnmarshalNode decodes a node encoded by Node.Marshal.
func UnmarshalNode(b []byte) (Node, error) {
	switch {
	case len(b) == 1+32 && b[0] == 1:
		var n Node
		copy(n.Hash[:], b[1:])
		return n, nil
	case len(b) >= 1+KeySize && len(b) <= 1+KeySize+MaxValueSize && b[0] == 0:
		n := Node{Leaf: true, Value: bytes.Clone(b[1+KeySize:])}
		copy(n.Key[:], b[1:1+KeySize])
		n.Hash = HashLeaf(n.Key, HashValue(n.Value))
		return n, nil
	}
	return Node{}, fmt.Errorf("%w: %d bytes", ErrBadNode, len(b))
}

// NodeReader reads stored nodes. ok is false for a node that is not stored
// (an empty subtree).
type NodeReader interface {
	ReadNode(id NodeID) (n Node, ok bool, err error)
}

// NodeWrite is one write of an update: the node to store at ID, or, with
// Delete set, the removal of the node stored there.
type NodeWrite struct {
	ID     NodeID
	Node   Node
	Delete bool
}

// Update sets the value of one key.
type Update struct {
	Key   Key
	Value []byte
}

// Root returns the root hash of the tree stored in r.
func Root(r NodeReader) (Hash, error) {
	n, ok, err := r.ReadNode(NodeID{})
	if err != nil || !ok {
		return Empty, err
	}
	return n.Hash, nil
}

// stored reads the nodes of a stored tree, wrapping read errors with the
// node's ID.
type stored struct{ base NodeReader }

func (s stored) read(id NodeID) (Node, bool, error) {
	n, ok, err := s.base.ReadNode(id)
	if err != nil {
		return Node{}, false, fmt.Errorf("read map node %d/%x: %w", id.Depth, id.Prefix[:(id.Depth+7)/8], err)
	}
	return n, ok, nil
}

func (s stored) hashOf(id NodeID) (Hash, error) {
	n, ok, err := s.read(id)
	if err != nil || !ok {
		return Empty, err
	}
	return n.Hash, nil
}

// Apply computes the tree that r's tree becomes with updates applied (a key
// given twice takes its last value) and returns its root and the writes
// that store it over r's nodes, in the order of their IDs' Bytes; r is not
// changed. Keys are never removed.
//
// It walks the changed subtrees once, from the root down, with the keys
// in key order: a subtree's keys share its prefix, so the next bit splits
// them between its two children, and the children's hashes give its own
// (a child no key goes to is read from r, or is empty below where r held
// a leaf or nothing). Every node on an updated key's path
// is rewritten, the leaves of the keys updated, and a stored leaf that a
// new key shares a subtree with moves down to where their paths part.
func Apply(r NodeReader, updates []Update) (Hash, []NodeWrite, error) {
	for _, u := range updates {
		if len(u.Value) > MaxValueSize {
			return Empty, nil, fmt.Errorf("map update: value of %d bytes, at most %d", len(u.Value), MaxValueSize)
		}
	}
	sorted := slices.Clone(updates)
	slices.SortStableFunc(sorted, func(a, b Update) int { return bytes.Compare(a.Key[:], b.Key[:]) })
	items := make([]item, 0, len(sorted))
	for i, u := range sorted {
		if i+1 < len(sorted) && sorted[i+1].Key == u.Key {
			continue // a later update of the same key wins
		}
		items = append(items, item{key: u.Key, value: u.Value})
	}
	a := &applier{stored: stored{base: r}}
	var root Hash
	var err error
	if len(items) == 0 {
		root, err = a.hashOf(NodeID{})
	} else {
		root, err = a.update(NodeID{}, items)
	}
	if err != nil {
		return Empty, nil, err
	}
	writes := make([]NodeWrite, 0, a.writes)
	for _, level := range a.levels {
		writes = append(writes, level...)
	}
	return root, writes, nil
}

// item is what a subtree being rewritten holds below a node: a key's new
// value, or a stored leaf moved down unchanged (moved).
type item struct {
	key   Key
	value []byte
	moved *Node
}

// applier computes an Apply's writes. levels[d] holds the writes at depth
// d; the walk visits a depth's nodes left to right, so each is in prefix
// order.
type applier struct {
	stored
	levels [][]NodeWrite
	writes int
}

func (a *applier) write(id NodeID, n Node) {
	for len(a.levels) <= id.Depth {
		a.levels = append(a.levels, nil)
	}
	a.levels[id.Depth] = append(a.levels[id.Depth], NodeWrite{ID: id, Node: n})
	a.writes++
}

// update rewrites the stored subtree at id with items (at least one, in
// key order, all on id's path) and returns its new hash.
func (a *applier) update(id NodeID, items []item) (Hash, error) {
	n, ok, err := a.read(id)
	switch {
	case err != nil:
		return Empty, err
	case !ok:
		return a.build(id, items)
	case n.Leaf && commonPrefix(n.Key, id.Prefix) < id.Depth:
		// A leaf off its key's path: placing the items around it would put
		// them off theirs, and the root would prove them absent.
		return Empty, fmt.Errorf("%w: the leaf of key %x stored at %d/%x, off its path", ErrBadNode, n.Key[:], id.Depth, id.Prefix[:(id.Depth+7)/8])
	case n.Leaf:
		i, found := slices.BinarySearchFunc(items, n.Key, func(it item, k Key) int { return bytes.Compare(it.key[:], k[:]) })
		if !found { // the stored leaf moves down beside the new keys
			items = slices.Insert(slices.Clip(items), i, item{key: n.Key, moved: &n})
		}
		return a.build(id, items)
	case id.Depth == KeyBits:
		return Empty, fmt.Errorf("map update: no place for key %x", items[0].key[:])
	}
	return a.split(id, items, true)
}

// build writes the subtree at id, where nothing is stored but at most the
// leaf that is among items, holding items (at least one, distinct, in key
// order, all on id's path) and returns its hash: a leaf for one item, an
// inner node above them for more.
func (a *applier) build(id NodeID, items []item) (Hash, error) {
	if len(items) == 1 {
		it := items[0]
		var n Node
		if it.moved != nil {
			n = *it.moved
		} else {
			n = Node{Leaf: true, Key: it.key, Value: bytes.Clone(it.value), Hash: HashLeaf(it.key, HashValue(it.value))}
		}
		a.write(id, n)
		return n.Hash, nil
	}
	if id.Depth == KeyBits {
		return Empty, fmt.Errorf("map update: no place for key %x", items[0].key[:])
	}
	return a.split(id, items, false)
}

// split writes the inner node at id over items (in key order, all on id's
// path), divided between its children by the key bit at id's depth; a
// child no item goes to keeps its stored hash (isStored) or is empty.
func (a *applier) split(id NodeID, items []item, isStored bool) (Hash, error) {
	d := id.Depth
	i, _ := slices.BinarySearchFunc(items, byte(1), func(it item, b byte) int { return int(it.key.bit(d)) - int(b) })
	var h [2]Hash
	for b, part := range [2][]item{items[:i], items[i:]} {
		c := id.child(byte(b))
		var err error
		switch {
		case len(part) > 0 && isStored:
			h[b], err = a.update(c, part)
		case len(part) > 0:
			h[b], err = a.build(c, part)
		case isStored:
			h[b], err = a.hashOf(c)
		}
		if err != nil {
			return Empty, err
		}
	}
	hash := HashInner(h[0], h[1])
	a.write(id, Node{Hash: hash})
	return hash, nil
}

// Proof proves what the tree holds for one key: the siblings of the nodes
// on the key's path, from the root's children down to the node where the
// path ends (Depth of them), the Empty ones left out.
type Proof struct {
	// Depth is the depth of the node where the key's path ends.
	Depth int
	// Bitmap has bit i (most significant first) set when the sibling at
	// depth i+1 is not Empty; it is ceil(Depth/8) bytes long.
	Bitmap []byte
	// Siblings are the hashes of the non-Empty siblings, from the top down.
	Siblings []Hash
	// LeafKey and LeafValueHash describe the leaf where the path ends, when
	// it ends at one: the key's own (membership) or another key's sharing
	// the first Depth bits (non-membership). Both are nil when the path
	// ends at an empty subtree.
	LeafKey       *Key
	LeafValueHash *Hash
}

// Prove returns the proof for key in the tree stored in r, and the key's
// value (nil when the key is absent).
func Prove(r NodeReader, key Key) (*Proof, []byte, error) {
	o := stored{base: r}
	p := &Proof{}
	var sibs []Hash
	var bitmap []byte
	for d := 0; d <= KeyBits; d++ {
		n, ok, err := o.read(nodeIDOf(key, d))
		if err != nil {
			return nil, nil, err
		}
		if !ok || n.Leaf {
			p.Depth = d
			p.Bitmap = bitmap
			p.Siblings = sibs
			if !ok {
				return p, nil, nil
			}
			k, vh := n.Key, HashValue(n.Value)
			p.LeafKey, p.LeafValueHash = &k, &vh
			if n.Key == key {
				return p, n.Value, nil
			}
			return p, nil, nil
		}
		if d == KeyBits {
			break
		}
		s, err := o.hashOf(siblingOf(key, d+1))
		if err != nil {
			return nil, nil, err
		}
		if d%8 == 0 {
			bitmap = append(bitmap, 0)
		}
		if s != Empty {
			bitmap[d/8] |= 1 << (7 - uint(d%8))
			sibs = append(sibs, s)
		}
	}
	return nil, nil, fmt.Errorf("%w: inner node at depth %d", ErrBadNode, KeyBits)
}

// Verify checks p against root for key. It returns the hash of the key's
// value when p proves the key present, and nil when p proves it absent.
func (p *Proof) Verify(root Hash, key Key) (*Hash, error) {
	if p.Depth < 0 || p.Depth > KeyBits || len(p.Bitmap) != (p.Depth+7)/8 {
		return nil, fmt.Errorf("%w: depth %d with a bitmap of %d bytes", ErrBadProof, p.Depth, len(p.Bitmap))
	}
	if (p.LeafKey == nil) != (p.LeafValueHash == nil) {
		return nil, fmt.Errorf("%w: a leaf key without a value hash, or the reverse", ErrBadProof)
	}
	set := 0
	for i := range p.Depth {
		if p.Bitmap[i/8]&(1<<(7-uint(i%8))) != 0 {
			set++
		}
	}
	for i := p.Depth; i < 8*len(p.Bitmap); i++ {
		if p.Bitmap[i/8]&(1<<(7-uint(i%8))) != 0 {
			return nil, fmt.Errorf("%w: bitmap bit %d set past depth %d", ErrBadProof, i, p.Depth)
		}
	}
	if set != len(p.Siblings) {
		return nil, fmt.Errorf("%w: %d siblings for %d bitmap bits", ErrBadProof, len(p.Siblings), set)
	}
	h := Empty
	var present *Hash
	if p.LeafKey != nil {
		lk := *p.LeafKey
		if commonPrefix(lk, key) < p.Depth {
			return nil, fmt.Errorf("%w: the leaf of key %x is not on the path of key %x at depth %d", ErrBadProof, lk[:], key[:], p.Depth)
		}
		if lk == key {
			vh := *p.LeafValueHash
			present = &vh
		}
		h = HashLeaf(lk, *p.LeafValueHash)
	}
	j := len(p.Siblings)
	for d := p.Depth - 1; d >= 0; d-- {
		s := Empty
		if p.Bitmap[d/8]&(1<<(7-uint(d%8))) != 0 {
			j--
			s = p.Siblings[j]
		}
		if key.bit(d) == 0 {
			h = HashInner(h, s)
		} else {
			h = HashInner(s, h)
		}
	}
	if h != root {
		return nil, fmt.Errorf("%w: the proof for key %x leads to root %x, not %x", ErrBadProof, key[:], h[:], root[:])
	}
	return present, nil
}

// MemStore is a NodeReader in memory, for tests and for recomputing a map
// (an audit). It is not safe for concurrent use.
type MemStore struct {
	nodes map[NodeID]Node
}

// NewMemStore returns an empty tree in memory.
func NewMemStore() *MemStore { return &MemStore{nodes: make(map[NodeID]Node)} }

// ReadNode implements NodeReader.
func (m *MemStore) ReadNode(id NodeID) (Node, bool, error) {
	n, ok := m.nodes[id]
	return n, ok, nil
}

// Write stores writes.
func (m *MemStore) Write(writes []NodeWrite) {
	for _, w := range writes {
		if w.Delete {
			delete(m.nodes, w.ID)
		} else {
			m.nodes[w.ID] = w.Node
		}
	}
}

// Len returns the number of stored nodes.
func (m *MemStore) Len() int { return len(m.nodes) }
