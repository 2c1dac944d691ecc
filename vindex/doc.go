// Package vindex is the authenticated structure of the ledger's verifiable
// index (issue 11): a sparse Merkle tree over 256-bit keys with proofs of
// membership and of non-membership, and the map that the ledger derives
// from its log and commits to in it, keyed by (subject digest, signer key
// ID), whose value commits to that key's statements about that digest.
//
// It is pure: no I/O, no logging. Nodes are read through a NodeReader and
// the writes of an update are returned to the caller, who persists them
// (bbolt, MySQL, memory) in the same transaction as its position in the log.
//
// # The tree
//
// The tree is the compressed sparse Merkle tree of Diem/Aptos ("Jellyfish"
// without the radix-16 nodes): a key's bits, most significant first, choose
// the path from the root; a subtree that holds exactly one leaf is that
// leaf, placed at the shallowest depth where it is alone; an empty subtree
// hashes to Empty (32 zero bytes). So the tree for a set of leaves is
// unique whatever the order they were inserted in, a path is about
// log2(number of keys) nodes long rather than 256, and the proof for a key
// is at most one sibling hash per level of that path. Hashes are SHA-256
// with a domain byte, so that a leaf never hashes like an inner node:
//
//	leaf  = SHA-256(0x00 || key || SHA-256(value))
//	inner = SHA-256(0x01 || left || right)
//	empty = 32 zero bytes
//
// A Proof lists the siblings along the key's path from the root down to the
// node where the path ends, with a bitmap of which siblings are not Empty
// (Empty ones are not sent). The path ends at the key's leaf (membership),
// at an Empty subtree, or at the leaf of another key sharing the path's
// prefix (both non-membership). Verify recomputes the root from the end
// node upwards.
//
// No well-kept Go library fitted: Trillian's merkle/smt needs the whole
// Trillian module and 256-level proofs, and the other sparse Merkle trees
// on offer are unmaintained. The tree here is small and is checked in its
// tests against a reference that recomputes the root from the whole set of
// leaves by the definition above, and fuzzed (a proof verifies if and only
// if the value is the one stored; non-membership proofs for absent keys).
package vindex
