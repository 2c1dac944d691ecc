// Package storage is the contract between the docker notarize ledger
// (package ledger) and the drivers that keep its data: the Tessera log, the
// digest index with duplicate detection, the log's identity, the enrolled
// signers and, for storage shared by several instances, the checkpoint
// publisher and the health of the database. It holds no driver itself.
//
// A driver is a package of its own (ledger/storage/posix,
// ledger/storage/mysql) with a constructor New(ctx, Config) that returns a
// value implementing Storage, as Tessera's storage drivers do for
// tessera.Driver. ledger.New takes that value; nothing else in the module
// knows which driver it is. A third driver (PostgreSQL, Tessera's GCP or
// AWS drivers) is one new package that implements:
//
//   - Driver: the tessera.Driver of the log;
//   - Index: the primitives of the digest index (the Index interface: rows
//     by (digest, key ID), by (key ID, digest), statement identities, entry
//     bytes, claims and the follower's position, each write atomic); the
//     follower, antispam, the lookups' bounds and proofs are the ledger's;
//   - Identity: where the log's origin and verifier key are kept and
//     checked (NewIdentity and Identity.CheckCheckpoint do the checking);
//   - EnrollSigners and Signers: where the enrolled writers are kept;
//   - PublishCheckpoints and MinCheckpointInterval, WrapReader and
//     WrapAdd, String and Close;
//   - Map: the verifiable index's nodes, position and root (MapStore),
//     for a storage shared by several instances.
//
// A driver used by one process embeds Local, which implements the
// enrolled signers in memory, no publisher of its own, no wrapping and no
// map store, and then writes only Driver, Index, Identity, String and
// Close. Each driver asserts at compile time that it implements Storage
// (var _ storage.Storage = (*Storage)(nil)).
//
// Drivers import this package and the core (notarize), never package
// ledger, so that the ledger's own tests may open them.
package storage

import (
	"context"
	"crypto"
	"errors"
	"time"

	"github.com/transparency-dev/tessera"
)

// Errors drivers return (wrapped); package ledger re-exports them under
// the same names, so errors.Is works with either.
var (
	// ErrUnavailable: the storage cannot be reached, is restarting or is
	// failing over; retry later (HTTP 503).
	ErrUnavailable = errors.New("ledger unavailable")
	// ErrIdentityMismatch: the configured origin or checkpoint key
	// disagrees with what the storage already holds.
	ErrIdentityMismatch = errors.New("ledger identity mismatch")
)

// Storage is a constructed storage driver. ledger.New takes ownership of
// it: the ledger closes it when it is closed, or when New fails.
type Storage interface {
	// Driver returns the Tessera driver holding the log.
	Driver() tessera.Driver
	// Index returns the database of the digest index, the key index, the
	// statement identities (antispam) and the entries' bytes.
	Index() Index
	// Identity returns the checkpoint identity the log signs with, checked
	// against what the storage holds: origin and signerKey are the
	// configured ones (either may be empty when the storage keeps them, or
	// can make them on first start). A storage that holds another origin
	// or verifier key, or a published checkpoint that does not verify
	// under the identity, is ErrIdentityMismatch; on first start the
	// identity is persisted.
	Identity(ctx context.Context, origin, signerKey string) (*Identity, error)
	// EnrollSigners replaces the enrolled writers kept in the storage;
	// the ledger calls it on start when it is configured with signers.
	EnrollSigners(ctx context.Context, keys []crypto.PublicKey) error
	// Signers returns the enrolled writers' key IDs (empty: open writes).
	// The ledger reads it on start and every SignersRefresh, so that every
	// instance sharing the storage follows the stored set.
	Signers(ctx context.Context) (KeySet, error)
	// PublishCheckpoints publishes checkpoints with sign every interval
	// until ctx is done, beside the Tessera driver's own publisher, for a
	// driver whose own publisher is slower than the ledger wants; it
	// returns at once when the Tessera driver's publisher is enough.
	PublishCheckpoints(ctx context.Context, p Publication)
	// MinCheckpointInterval is the smallest checkpoint interval the
	// Tessera driver accepts (zero: any the ledger allows).
	MinCheckpointInterval() time.Duration
	// WrapReader and WrapAdd decorate Tessera's log reader and add
	// function: a driver maps its outages to ErrUnavailable there.
	WrapReader(tessera.LogReader) tessera.LogReader
	WrapAdd(tessera.AddFn) tessera.AddFn
	// Map returns where the verifiable index is kept beside the log,
	// shared by every instance on the storage (mapstore.go), or nil when
	// the ledger keeps it in a file in the storage's data directory
	// (storage used by one process).
	Map() MapStore
	// String names the storage in messages and logs, without secrets.
	String() string
	// Close releases the storage, once the ledger's background work has
	// stopped.
	Close() error
}

// SignersRefresh is how often the ledger re-reads Storage.Signers.
const SignersRefresh = 5 * time.Second

// KeySet is a set of signer key IDs (hex); empty means writes are open.
type KeySet map[string]bool

// Publication is what Storage.PublishCheckpoints needs.
type Publication struct {
	// Sign makes the checkpoint note of a tree (size, root), gathering
	// the witness quorum's cosignatures when there is a policy: Tessera's
	// checkpoint publisher.
	Sign func(ctx context.Context, size uint64, root []byte) ([]byte, error)
	// Identity verifies the published checkpoints.
	Identity *Identity
	// Interval is how often a new checkpoint may be published, across
	// every instance sharing the storage.
	Interval time.Duration
	// Republish is how often an unchanged checkpoint is published (and
	// witnessed) again; zero never.
	Republish time.Duration
}

// Local implements the parts of Storage that storage used by one process
// does not share: the enrolled signers are kept in memory, Tessera's
// driver publishes checkpoints alone, and errors are passed on as they
// are. Its zero value is ready to use; drivers embed it.
type Local struct {
	signers KeySet
}

// EnrollSigners implements Storage: the set is kept in memory. Keys must
// have a key ID (notarize.KeyID); the ledger checks them first.
func (l *Local) EnrollSigners(_ context.Context, keys []crypto.PublicKey) error {
	set, err := keySetOf(keys)
	if err != nil {
		return err
	}
	l.signers = set
	return nil
}

// Signers implements Storage.
func (l *Local) Signers(context.Context) (KeySet, error) {
	set := make(KeySet, len(l.signers))
	for k := range l.signers {
		set[k] = true
	}
	return set, nil
}

// PublishCheckpoints implements Storage: the Tessera driver publishes.
func (*Local) PublishCheckpoints(context.Context, Publication) {}

// MinCheckpointInterval implements Storage.
func (*Local) MinCheckpointInterval() time.Duration { return 0 }

// WrapReader implements Storage: r as it is.
func (*Local) WrapReader(r tessera.LogReader) tessera.LogReader { return r }

// WrapAdd implements Storage: add as it is.
func (*Local) WrapAdd(add tessera.AddFn) tessera.AddFn { return add }

// Map implements Storage: nil, the ledger keeps the map in a file of its
// own in the data directory.
func (*Local) Map() MapStore { return nil }
