// Package ledgerclient talks to a docker notarize ledger and believes nothing
// it has not verified: it pins the ledger's checkpoint verifier key, keeps the
// last verified checkpoint per log (origin and key) on disk, proves consistency from it
// to every newer checkpoint (C2SP tlog-checkpoint, signed-note, tlog-tiles),
// verifies inclusion proofs and every envelope signature itself.
//
// The wire types of the ledger's JSON API are in package api (ledger/api),
// shared with the server.
//
// # Trust
//
// The verifier key comes from Config.VerifierKey, else from the pin stored
// under Config.Home for the ledger's URL, else from the ledger itself on
// first use (its checkpoint must verify under it before it is pinned). The
// key's name is the log origin. A checkpoint is believed only once its
// signature and origin check out (else ErrBadCheckpoint, or ErrKeyMismatch
// when the ledger signs with another key than the pinned one) and it is
// consistent with the stored one: a smaller tree than the client knew when it
// asked (a rollback), another root for the same size, or a larger tree with no
// valid consistency proof (built from the ledger's tiles with tessera's
// client.ProofBuilder) is a *ForkError carrying both signed checkpoints, and
// the stored state is left untouched. Tiles that do not even hash to the
// ledger's own signed root are ErrBadProof.
//
// Receipts and lookup answers are hints: each entry must have a valid
// inclusion proof to the answer's verified checkpoint, parse, verify under
// the key it carries and be about the digest asked for, or the whole call
// fails. A ledger can still leave entries out of a lookup; replicas that
// follow the whole log (Follower) cannot be misled that way.
//
// # Lookups
//
// Lookups are filtered by the keys a caller is about and paginated, so that
// statements by other keys, however many, change neither their outcome nor
// their cost. LookupPages walks the pages (at most MaxLookupPages), each
// verified and proven against a checkpoint consistent with the pages before,
// each page after the previous one's last entry; Lookup collects them (at
// most MaxLookupRecords). Current asks for the current statement of each
// given key only: at most one entry per key, each by a key asked for. Every
// answer is size-bounded by what was asked for.
//
// # State
//
// Under Config.Home:
//
//	ledgers/pins.json              pinned verifier keys by ledger URL
//	ledgers/<origin>-<key>/checkpoint    the last verified checkpoint (signed note)
//	ledgers/<origin>-<key>/key           the verifier key it was verified under
//	ledgers/<origin>-<key>/lock, ledgers/pins.lock   flock(2) locks
//
// A ledger that was reset, or another with the same origin, signs with
// another key and so gets a state of its own; the pin decides which key a
// URL is checked with (Pin, Unpin, ListPins).
//
// Writes are atomic (temporary file, fsync, rename) and compare-and-swap:
// under the lock the state is read again, and a checkpoint stored meanwhile
// by another process must be consistent with the new one too. The stored
// checkpoint never moves backwards. A state file that does not verify is an
// error, never silently replaced.
//
// # I/O
//
// All I/O goes through a small interface (checkpoint, tile, entry bundle,
// info, submit, lookup page, current statements) so that the verification logic is tested with
// ledgers that lie. Over HTTP every answer is size-bounded, requests carry
// the User-Agent "docker-notarize/<version>", redirects are followed only
// within the ledger's scheme and host, and calls without a deadline get
// Config.Timeout.
package ledgerclient
