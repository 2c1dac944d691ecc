package ledger

import (
	"crypto"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"time"

	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/notarize/docker-notarize/notarize"
	"golang.org/x/mod/sumdb/note"
)

// Defaults applied by New to zero Config fields.
const (
	// DefaultMaxFutureSkew is how far in the future a statement's signed
	// timestamp may be before the ledger refuses it.
	DefaultMaxFutureSkew = 10 * time.Minute
	// DefaultBatchMaxAge is how long the first entry of a batch waits for
	// others before the batch is sequenced. Tessera's POSIX driver rewrites
	// the partial entry bundle and tiles, and syncs them, once per batch,
	// and the index follower writes about once per batch, so under load
	// older batches cost less CPU per statement (BenchmarkIngestBatchAge;
	// docs/BENCHMARKS.md). The price: a lone submission waits up to 25 ms
	// longer than at 25 ms to be sequenced; its receipt waits for a
	// checkpoint (DefaultCheckpointInterval, 100 ms) in any case.
	DefaultBatchMaxAge = 50 * time.Millisecond
	// DefaultCheckpointInterval is how often a new checkpoint may be
	// published. It is also the minimum.
	DefaultCheckpointInterval = 100 * time.Millisecond
	// DefaultCheckpointRepublishInterval is how often an unchanged
	// checkpoint is published again (and so witnessed again).
	DefaultCheckpointRepublishInterval = time.Minute
	// DefaultWitnessTimeout bounds one attempt to gather the witness
	// quorum's cosignatures for a checkpoint.
	DefaultWitnessTimeout = 5 * time.Second
	// DefaultReceiptTimeout is how long a submission waits for a published
	// checkpoint covering its entry before it is answered ErrUnavailable.
	DefaultReceiptTimeout = 30 * time.Second
	// DefaultKeyTables is how many signer keys may hold a table of their
	// multiples (Config.KeyTables): 256, at most ~56 MiB.
	DefaultKeyTables = 256
)

// MinCheckpointInterval is the smallest CheckpointInterval the ledger accepts.
const MinCheckpointInterval = 100 * time.Millisecond

// Config configures a Ledger. Where it keeps its data is the Storage given
// to New, not a field.
type Config struct {
	// Origin is the checkpoint origin line, the log's name. Empty means the
	// origin the storage holds, or "<hostname>/notarize-ledger/<key id>" on
	// first start. Once persisted it cannot change: New refuses a different
	// one (ErrIdentityMismatch).
	Origin string
	// NoteSignerKey is a sumdb/note signer key ("PRIVATE+KEY+…"); its name
	// must be the origin. Empty means the key the storage keeps: the POSIX
	// driver generates one on first start (posix.KeyFile); the MySQL driver
	// requires it (mysql.ErrNoSignerKey), since instances sharing a
	// database must sign with one key.
	NoteSignerKey string
	// Signers are the enrolled writers' public keys. A non-empty Signers
	// replaces the set the storage keeps on start; an empty one keeps it
	// (empty: anyone whose envelope verifies under the key it carries may
	// write). Every instance sharing the storage follows the stored set.
	Signers []crypto.PublicKey
	// Identities maps enrolled key IDs to their signers' identities (the
	// YAML form of --signers, LoadSigners). When set, a statement whose
	// claimed name or email is not its key's (notarize.CheckClaim) is
	// refused (notarize.ErrIdentityMismatch, 403), as is a key with no
	// identity; an empty claim is accepted (the enrolment says who signed).
	// Each instance enforces its own; give every instance the same file.
	Identities map[string]notarize.Identity
	// MaxFutureSkew bounds how far a statement's timestamp may be ahead of
	// the ledger's clock. Zero means DefaultMaxFutureSkew.
	MaxFutureSkew time.Duration
	// BatchMaxAge is the Tessera batching delay. Zero means DefaultBatchMaxAge.
	BatchMaxAge time.Duration
	// CheckpointInterval is how often a checkpoint may be published; a
	// submission is answered after the next one. Zero means
	// DefaultCheckpointInterval; at least MinCheckpointInterval otherwise.
	// On storage shared by instances it is the interval across all of them.
	CheckpointInterval time.Duration
	// WitnessPolicy, when not empty, is a witness policy file in the format
	// Tessera's NewWitnessGroupFromPolicy reads (Sigsum's policy format:
	// "log", "witness NAME VKEY URL", "group NAME N|any|all MEMBERS…" and
	// "quorum NAME" lines, with C2SP tlog-cosignature verifier keys). Every
	// checkpoint is then sent to the witnesses (C2SP tlog-witness) and
	// published only once the quorum has cosigned it; /checkpoint serves
	// the cosigned note. See witness.go for what happens while the quorum
	// is unreachable.
	WitnessPolicy []byte
	// WitnessTimeout bounds one attempt to gather the quorum's cosignatures
	// (DefaultWitnessTimeout); a failed attempt is retried at the next
	// checkpoint interval.
	WitnessTimeout time.Duration
	// CheckpointRepublishInterval is how often the checkpoint is published,
	// and witnessed, again when the log has not grown, so that the newest
	// cosignature's timestamp shows how fresh the checkpoint is. Zero means
	// DefaultCheckpointRepublishInterval; otherwise at least
	// CheckpointInterval.
	CheckpointRepublishInterval time.Duration
	// ReceiptTimeout bounds how long a submission waits for a published
	// checkpoint covering its entry (DefaultReceiptTimeout). Past it the
	// submission is answered ErrUnavailable (HTTP 503, Retry-After); the
	// entry stays sequenced and is published with the next checkpoint. At
	// most DefaultReceiptTimeout.
	ReceiptTimeout time.Duration
	// RateLimits bound what writers may submit and append (open and
	// enrolled-signer ledgers alike). Zero fields take their defaults.
	RateLimits RateLimits
	// TrustedProxies are the networks of reverse proxies whose
	// X-Forwarded-For header names the client for the per-client rate
	// limit: the client is the last address of the header that is not in
	// one of them. Empty (the default) means X-Forwarded-For is ignored
	// and the client is the connection's remote address.
	TrustedProxies []netip.Prefix
	// Logger receives the ledger's logs. Nil means slog.Default().
	Logger *slog.Logger
	// MapCommitEntries and MapCommitInterval set how often the verifiable
	// index's root is committed to the log (vindex.go): once this many
	// entries wait, or once the first of them waited this long. Zero means
	// DefaultMapCommitEntries and DefaultMapCommitInterval.
	MapCommitEntries  int
	MapCommitInterval time.Duration
	// MapDir holds the verifiable index's bbolt file instead of the POSIX
	// storage's data directory. A storage that keeps the map itself
	// (storage.Storage.Map: MySQL, one map in the database shared by every
	// instance) ignores it, with a deprecation warning: it was each MySQL
	// instance's copy of the map before schema version 5.
	MapDir string
	// AdmitSelfRevoked admits new statements by a key that revoked itself,
	// which the ledger otherwise refuses (SelfRevokedError, selfrevoked.go):
	// they would not count, for any verifier. It is for tests of verifiers,
	// which must apply the positional rule to what a ledger admitted in the
	// window before a revocation is indexed, or before this check existed.
	AdmitSelfRevoked bool
	// KeyTables bounds the signer keys that hold a table of their
	// multiples: a P-256 key that signed 16 accepted entries gets one, and
	// each of its verifications then costs about 0.6× as much
	// (notarize.KeyCache). Each table is notarize.KeyTableBytes (222 KiB).
	// Zero means DefaultKeyTables; a ledger whose active signers are more
	// than that verifies the rest without one.
	KeyTables int

	// noMap turns the verifiable index off (benchmarks comparing its cost).
	noMap bool
	// mapBuildChunk overrides the map's build chunk (vindex.go), for tests.
	mapBuildChunk int
	// clock is the ledger's clock for map roots' times and anchored
	// answers (vindex.go, lookup_tail.go), for tests; nil means time.Now.
	clock func() time.Time
}

// Defaults of RateLimits.
const (
	DefaultKeyPerSecond       = 20  // statements a key may append per second, sustained
	DefaultKeyBurst           = 40  // … and at once
	DefaultClientPerSecond    = 50  // submissions a client may make per second, sustained
	DefaultClientBurst        = 100 // … and at once
	DefaultKeyDigestPerMinute = 10  // statements a key may append about one digest per minute (also the burst)
	DefaultRateLimitTracked   = 1 << 16
)

// The per-client limit charges an IPv6 client to its /64 and also to the
// /56 and the /48 holding it, whose buckets have these multiples of the
// per-client rate and burst: one party holding a delegation (a home /56:
// 256 /64s; a hosting customer's or tunnel broker's /48: 65,536) gets a
// few clients' budgets, not one per /64. With the defaults a /64 may make
// 50 submissions per second (burst 100), a /56 200 (burst 400) and a /48
// 400 (burst 800).
const (
	Client56Scale = 4 // an IPv6 /56 may submit 4 times what one client may
	Client48Scale = 8 // an IPv6 /48 may submit 8 times what one client may
)

// RateLimits bound writers with token buckets, so that no key and no
// client can flood the log (and the lookups of a digest) faster than the
// limits allow. Over a limit, a submission is refused with ErrRateLimited
// (HTTP 429 with Retry-After) before anything is appended; other keys and
// clients are not slowed. A key's budgets are charged only for new
// statements whose signature verified, so nobody else can spend them, and
// never for a replay of a logged statement. Zero fields take the defaults;
// a negative rate disables that limit.
type RateLimits struct {
	// Off disables every limit (tests, or a ledger behind a gateway that
	// limits writers itself).
	Off bool
	// KeyPerSecond and KeyBurst bound the statements one signer key may
	// append: DefaultKeyPerSecond sustained, DefaultKeyBurst at once.
	KeyPerSecond float64
	KeyBurst     int
	// ClientPerSecond and ClientBurst bound the submissions (valid or not,
	// new or replayed) one client may make: DefaultClientPerSecond and
	// DefaultClientBurst. A client is a remote IPv4 address or IPv6 /64
	// (see Config.TrustedProxies); an IPv6 /56 and /48 are also bounded,
	// at Client56Scale and Client48Scale times these.
	ClientPerSecond float64
	ClientBurst     int
	// KeyDigestPerMinute bounds the statements one key may append about
	// one digest per minute, and at once: DefaultKeyDigestPerMinute.
	KeyDigestPerMinute float64
	// Tracked bounds the buckets each limit keeps in memory
	// (DefaultRateLimitTracked): idle (refilled) buckets are dropped, and
	// names past the bound share one overflow bucket until some are, so a
	// flood of new names never hands a spent name a fresh burst.
	Tracked int
}

// withDefaults returns r with zero fields set to their defaults.
func (r RateLimits) withDefaults() RateLimits {
	if r.KeyPerSecond == 0 {
		r.KeyPerSecond = DefaultKeyPerSecond
	}
	if r.KeyBurst == 0 {
		r.KeyBurst = DefaultKeyBurst
	}
	if r.ClientPerSecond == 0 {
		r.ClientPerSecond = DefaultClientPerSecond
	}
	if r.ClientBurst == 0 {
		r.ClientBurst = DefaultClientBurst
	}
	if r.KeyDigestPerMinute == 0 {
		r.KeyDigestPerMinute = DefaultKeyDigestPerMinute
	}
	if r.Tracked == 0 {
		r.Tracked = DefaultRateLimitTracked
	}
	return r
}

// validate reports fields that cannot be used.
func (r RateLimits) validate() []error {
	var errs []error
	if r.KeyBurst < 0 || r.ClientBurst < 0 {
		errs = append(errs, fmt.Errorf("rate limits: negative burst (key %d, client %d)", r.KeyBurst, r.ClientBurst))
	}
	if r.Tracked < 0 {
		errs = append(errs, fmt.Errorf("rate limits: Tracked %d is negative", r.Tracked))
	}
	for name, v := range map[string]float64{"KeyPerSecond": r.KeyPerSecond, "ClientPerSecond": r.ClientPerSecond, "KeyDigestPerMinute": r.KeyDigestPerMinute} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			errs = append(errs, fmt.Errorf("rate limits: %s is %v", name, v))
		}
	}
	return errs
}

// Validate reports whether c can be used to start a ledger. Zero values that
// have defaults are valid.
func (c *Config) Validate() error {
	var errs []error
	if c.Origin != "" && !storage.ValidOrigin(c.Origin) {
		errs = append(errs, fmt.Errorf("origin %q: must be non-empty UTF-8 without spaces or '+'", c.Origin))
	}
	if c.NoteSignerKey != "" {
		if _, err := note.NewSigner(c.NoteSignerKey); err != nil {
			errs = append(errs, fmt.Errorf("note signer key: %w", err))
		}
	}
	for i, k := range c.Signers {
		if _, err := notarize.KeyID(k); err != nil {
			errs = append(errs, fmt.Errorf("signer %d: %w", i, err))
		}
	}
	for id, ident := range c.Identities {
		if !isKeyID(id) {
			errs = append(errs, fmt.Errorf("identity of key %q: not a key ID (64 lowercase hex characters)", truncate(id, 80)))
		} else if err := ident.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("identity of key %s: %w", id, err))
		}
	}
	if c.MaxFutureSkew < 0 {
		errs = append(errs, fmt.Errorf("MaxFutureSkew %v is negative", c.MaxFutureSkew))
	}
	if c.BatchMaxAge < 0 {
		errs = append(errs, fmt.Errorf("BatchMaxAge %v is negative", c.BatchMaxAge))
	}
	if c.KeyTables < 0 || c.KeyTables > notarize.DefaultKeyCacheSize {
		errs = append(errs, fmt.Errorf("KeyTables %d: must be between 0 (the default, %d) and %d, the keys the ledger's cache holds", c.KeyTables, DefaultKeyTables, notarize.DefaultKeyCacheSize))
	}
	if c.CheckpointInterval != 0 && c.CheckpointInterval < MinCheckpointInterval {
		errs = append(errs, fmt.Errorf("CheckpointInterval %v is below the minimum %v", c.CheckpointInterval, MinCheckpointInterval))
	}
	errs = append(errs, c.validateWitnessing()...)
	errs = append(errs, c.RateLimits.validate()...)
	for _, p := range c.TrustedProxies {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("trusted proxy %v: not a valid network", p))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ledger config: %w", err)
	}
	return nil
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.MaxFutureSkew == 0 {
		c.MaxFutureSkew = DefaultMaxFutureSkew
	}
	if c.BatchMaxAge == 0 {
		c.BatchMaxAge = DefaultBatchMaxAge
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.CheckpointRepublishInterval == 0 {
		c.CheckpointRepublishInterval = DefaultCheckpointRepublishInterval
	}
	if c.WitnessTimeout == 0 {
		c.WitnessTimeout = DefaultWitnessTimeout
	}
	if c.ReceiptTimeout == 0 {
		c.ReceiptTimeout = DefaultReceiptTimeout
	}
	if c.KeyTables == 0 {
		c.KeyTables = DefaultKeyTables
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.RateLimits = c.RateLimits.withDefaults()
	return c
}

// ParseSigners decodes the enrolled signers file: one or more PEM "PUBLIC
// KEY" blocks. Text outside the blocks is ignored; a file with no key, or a
// key of a kind signers may not use, is an error.
func ParseSigners(pemBytes []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	rest := pemBytes
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("parse signers: PEM block %d is %q, want PUBLIC KEY", len(keys)+1, block.Type)
		}
		k, err := notarize.ParsePublicKey(pem.EncodeToMemory(block))
		if err != nil {
			return nil, fmt.Errorf("parse signers: key %d: %w", len(keys)+1, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("parse signers: no PEM PUBLIC KEY block found")
	}
	return keys, nil
}
