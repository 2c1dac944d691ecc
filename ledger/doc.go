// Package ledger is the docker notarize ledger server: a Tessera personality
// that stores signed notarize entries (a DSSE envelope over an in-toto
// statement plus the signer's public key) in a transparency log, keeps an
// index from (subject digest, signer key ID) to log entries and their signed
// timestamps, and serves both over HTTP.
//
// Storage is a driver, constructed first and handed to New, as a
// tessera.Driver is to tessera.NewAppender:
//
//	st, err := posix.New(ctx, posix.Config{Dir: dir})      // ledger/storage/posix
//	st, err := mysql.New(ctx, mysql.Config{DSN: dsn})      // ledger/storage/mysql
//	l, err := ledger.New(ctx, st, ledger.Config{…})
//
// The contract a driver implements (the Tessera driver, the index
// primitives, identity, enrolled signers, optional publisher and health) is
// package storage (ledger/storage); the follower, antispam, lookups and
// their bounds and proofs are this package's, the same on every driver.
//
// On POSIX storage the log is a Tessera log under the directory's log/.
// Its checkpoints are C2SP signed notes (https://c2sp.org/signed-note,
// https://c2sp.org/tlog-checkpoint) signed with an Ed25519 key that is
// generated on first start and kept in the directory (posix.KeyFile); the
// verifier key is written beside it (posix.PubFile).
//
// On MySQL storage the log lives in a MySQL/MariaDB database through
// Tessera's MySQL driver, and so do the digest index, duplicate detection,
// the enrolled signers and the log's identity (origin and verifier key), in
// tables beside Tessera's: any number of instances on one database serve
// the same log, byte for byte the same tiles and checkpoints as a POSIX
// ledger holding the same entries. The instances share one checkpoint key,
// made once (NewSignerKey) and given to each (Config.NoteSignerKey); the
// schema is created and migrated on start.
//
// With Config.WitnessPolicy every checkpoint is cosigned by a quorum of
// witnesses (https://c2sp.org/tlog-witness, https://c2sp.org/tlog-cosignature)
// before it is published, and republished (re-witnessed) every
// Config.CheckpointRepublishInterval so the cosignatures' timestamps show
// freshness; while the quorum is unreachable submissions are sequenced but
// answered 503 after Config.ReceiptTimeout (see witness.go).
//
// HTTP surface (see Ledger.Handler):
//
//	GET  /checkpoint, /tile/{L}/{N}[.p/{W}], /tile/entries/{N}[.p/{W}]
//	     C2SP tlog-tiles read endpoints (https://c2sp.org/tlog-tiles)
//	POST /api/v1/entries             submit a notarize.Entry; answers once integrated
//	GET  /api/v1/digests/{digest}    one page of the entries about a digest (?keyid, after, limit), with proofs to one checkpoint
//	GET  /api/v1/digests/{digest}/current?keyid=K…  the current statement of each key, with its proof
//	GET  /api/v1/keys/{keyid}/digests  one page of the digests a key has statements about (?status, cursor, limit), with proofs
//	GET  /api/v1/info                origin, verifier key, size
//	GET  /metrics                    Prometheus metrics of this ledger
//
// The JSON wire types are those of package api (ledger/api), the contract
// shared with ledgerclient. Every error is an api.ErrorResponse; bad input
// always gets a 4xx.
//
// Duplicate detection and the digest index live in the driver's database
// (an embedded bbolt file on POSIX, tables on MySQL), behind an index that
// implements tessera.Antispam: a statement is identified by its key and signed payload
// (notarize.Verified.Identity), not its bytes, so a replay re-signed or
// re-encoded is answered with the existing index and never appended;
// concurrent submissions of one statement share one append (across MySQL
// instances too, through a claim row). A follower
// tails the integrated log, verifies each entry and fills both the identity
// map and the digest index, persisting its progress in the same
// transaction. The index is keyed by (digest, key ID), so a lookup filtered
// by key, its pages and the current statement never read other keys'
// entries: statements by strangers about a digest cannot bloat or slow
// them.
//
// The key lookup (GET /api/v1/keys/{keyid}/digests, Ledger.KeyDigests;
// `docker notarize ls`) lists the digests one key has statements about, in
// increasing digest order, each with the key's current statement (newest
// signed timestamp, ties broken by the greater log index) under the
// answer's checkpoint and its inclusion proof; ?status=trusted|untrusted|
// unsupported keeps the digests whose current statement has that status,
// so a revocation moves a digest from one filter to the other. It reads a
// key index, (key ID, digest) → current statement, that the follower fills
// in the same transaction as the digest index (bbolt bucket "keys"; MySQL
// table notarize_key_current): only the asked-for key's rows and entries,
// whatever other keys signed. A page is bounded like a digest lookup: at
// most ?limit entries (api.MaxLookupLimit), an answer under
// api.MaxAnswerSize, at most maxKeyScan key index rows read, and the
// concurrency cap of lookups; a page cut short by a bound carries Next (the
// cursor of the next page, a digest) and may hold fewer entries, even none.
// A bad key ID, status, cursor or limit is 400. That each listed statement
// is logged and signed by the key is proven; that the list is complete is
// not (a client that needs completeness asks the digest lookup).
//
// Writers are bounded by token buckets per client, per key and per (key,
// digest) (Config.RateLimits); over a limit a submission is refused with
// 429 and Retry-After before anything is appended. Limits are per instance.
package ledger
