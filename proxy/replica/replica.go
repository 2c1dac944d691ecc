// Package replica keeps the proxy's own verified copy of a docker notarize
// ledger: it follows the ledger's log (C2SP tlog-tiles) with a
// ledgerclient.Follower, which proves every entry against a verified
// checkpoint and checks every signature, and indexes the verified records by
// subject digest in a bbolt file, with the compact range that proves them.
// Lookups never leave the process. It resumes after a restart from the
// persisted state, and when the ledger cannot be followed (unreachable,
// forked, lying) it keeps answering from the last verified state for at
// most MaxStaleness, then refuses with ErrStale.
package replica

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
)

// Defaults applied to zero Config fields.
const (
	DefaultPollInterval = 300 * time.Millisecond
	DefaultMaxStaleness = 5 * time.Minute
	// persistEvery bounds how often an unchanged state's freshness is written.
	persistEvery = 5 * time.Second
	maxErrLen    = 512
)

// maxRecordsPerDigest bounds a lookup answer (a variable for tests).
var maxRecordsPerDigest = 100_000

// ErrStale is returned (wrapped) by Records when the replica has not been
// able to verify the ledger's state for longer than MaxStaleness, or never
// has. The message says since when and why.
var ErrStale = errors.New("trust data is stale")

// Source is where a Replica reads verified batches from; a
// *ledgerclient.Follower.
type Source interface {
	Next(ctx context.Context, st ledgerclient.FollowState) (*ledgerclient.FollowBatch, error)
}

var _ Source = (*ledgerclient.Follower)(nil)

// Config configures a Replica.
type Config struct {
	// Path is the bbolt file; required. It is created if missing.
	Path string
	// Source yields verified batches; required.
	Source Source
	// PollInterval is the pause between polls once caught up; default
	// DefaultPollInterval.
	PollInterval time.Duration
	// MaxStaleness is how long lookups are answered from the last verified
	// state when the ledger cannot be followed; default DefaultMaxStaleness.
	MaxStaleness time.Duration
	// Logger receives sync progress and failures; default: discard.
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Witnesses, when set, is the witness policy the Source's client checks
	// every checkpoint against (ledgerclient.Config.WitnessPolicy). Freshness
	// then also counts from the cosignatures: lookups fail with ErrStale
	// once the newest checkpoint cosigned by a quorum is older than
	// MaxStaleness, however recently the ledger (or a front that froze its
	// /checkpoint) answered. The stored checkpoint is checked against it
	// again at Open.
	Witnesses *ledgerclient.WitnessPolicy
	// MapAudit, when set, recomputes the ledger's verifiable index from
	// every batch and checks each map root the ledger commits (vindex.go);
	// once a root is wrong, lookups fail with its evidence (fail closed).
	MapAudit *MapAudit
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("replica: Path is required"))
	}
	if c.Source == nil {
		errs = append(errs, errors.New("replica: Source is required"))
	}
	if c.PollInterval < 0 || c.MaxStaleness < 0 {
		errs = append(errs, errors.New("replica: negative PollInterval or MaxStaleness"))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.MaxStaleness == 0 {
		c.MaxStaleness = DefaultMaxStaleness
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Buckets and keys of the bbolt file.
var (
	bucketMeta    = []byte("meta")
	bucketRecords = []byte("records") // digest (32 bytes) ‖ index (8 bytes BE) → storedRecord.encode()
	bucketBad     = []byte("bad")     // index (8 bytes BE) → why the entry holds nothing to believe
	keySize       = []byte("size")
	keyHashes     = []byte("hashes")
	keyCheckpoint = []byte("checkpoint")
	keyVerifiedAt = []byte("verifiedAt")
	keyBad        = []byte("badCount")
	keyRecords    = []byte("recordCount")
	keyFormat     = []byte("format")
)

// storedRecord is what the index keeps of a verified statement: what the
// status fold and the decision log need.
type storedRecord struct {
	KeyID     string
	Status    notarize.Status
	Timestamp time.Time
	Name      string
	Kind      string
	// MediaType is the subject's media type as signed: with Kind, it says
	// whether a trusted statement is about an image index, whose trust then
	// covers the manifests the index lists (notarize.Evaluator.Evaluate).
	MediaType string
}

// recordFormat is the first byte of every stored record: 2 added the
// media type.
const recordFormat = 2

// fileFormat is the replica file's format: 2 added the media type to
// records, 3 the per-key tallies, current statements and recent
// revocations (tally.go), 4 the records' index by key (bykey.go). A file
// of a newer format is refused with a hint to remove it; one of an older
// format is rebuilt from the ledger.
const fileFormat = 4

var statusCodes = []notarize.Status{notarize.StatusTrusted, notarize.StatusUntrusted, notarize.StatusUnsupported}

// encode returns the record's compact binary form: format, status, the raw
// key ID (32 bytes), the timestamp (seconds, nanoseconds), then name, kind
// and media type, each length-prefixed.
func (sr storedRecord) encode() ([]byte, error) {
	id, err := hex.DecodeString(sr.KeyID)
	if err != nil || len(id) != 32 {
		return nil, fmt.Errorf("key ID %q is not 32 hex bytes", sr.KeyID)
	}
	st := -1
	for i, s := range statusCodes {
		if s == sr.Status {
			st = i
		}
	}
	if st < 0 {
		return nil, fmt.Errorf("status %q", sr.Status)
	}
	b := make([]byte, 0, 50+len(sr.Name)+len(sr.Kind)+len(sr.MediaType))
	b = append(b, recordFormat, byte(st))
	b = append(b, id...)
	b = binary.BigEndian.AppendUint64(b, uint64(sr.Timestamp.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(sr.Timestamp.Nanosecond()))
	b = binary.AppendUvarint(b, uint64(len(sr.Name)))
	b = append(b, sr.Name...)
	b = binary.AppendUvarint(b, uint64(len(sr.Kind)))
	b = append(b, sr.Kind...)
	b = binary.AppendUvarint(b, uint64(len(sr.MediaType)))
	return append(b, sr.MediaType...), nil
}

func decodeRecord(b []byte) (storedRecord, error) {
	bad := errors.New("corrupt record")
	if len(b) < 46 || b[0] != recordFormat || int(b[1]) >= len(statusCodes) {
		return storedRecord{}, bad
	}
	sr := storedRecord{
		Status:    statusCodes[b[1]],
		KeyID:     hex.EncodeToString(b[2:34]),
		Timestamp: time.Unix(int64(binary.BigEndian.Uint64(b[34:42])), int64(binary.BigEndian.Uint32(b[42:46]))).UTC(),
	}
	rest := b[46:]
	for _, dst := range []*string{&sr.Name, &sr.Kind, &sr.MediaType} {
		n, k := binary.Uvarint(rest)
		if k <= 0 || uint64(len(rest)-k) < n {
			return storedRecord{}, bad
		}
		*dst, rest = string(rest[k:k+int(n)]), rest[k+int(n):]
	}
	return sr, nil
}

// Status is a snapshot of the replica's state.
type Status struct {
	// Size is the number of log entries verified and indexed.
	Size uint64
	// CheckpointSize is the size of the last verified checkpoint.
	CheckpointSize uint64
	// Records is the number of verified records indexed.
	Records uint64
	// BadEntries counts entries whose statement did not parse or verify.
	BadEntries uint64
	// VerifiedAt is when the ledger's state was last verified (zero: never).
	VerifiedAt time.Time
	// LastError is the last failure to follow, "" after a success.
	LastError string
	// WitnessedAt is, with Config.Witnesses, when the newest verified
	// checkpoint's witness quorum was completed (zero: none yet).
	WitnessedAt time.Time
	// Checkpoint is the last verified checkpoint, as the ledger signed (and
	// its witnesses cosigned) it; nil before the first sync.
	Checkpoint []byte
	// Fork is evidence, reported by ReportFork, that the ledger showed
	// another client a history this replica's cannot extend; while it is
	// set the replica fails closed.
	Fork string
	// MapRootsChecked counts the ledger's map roots the MapAudit checked
	// since the process started; WrongMapRoot, once set, is the signed
	// evidence of a wrong one (and the replica fails closed).
	MapRootsChecked uint64
	WrongMapRoot    *WrongMapRootError
}

// Replica is a verified, persisted index of a ledger's records. Records is
// safe for concurrent use with Sync and Run.
type Replica struct {
	cfg Config
	db  *bolt.DB

	syncMu sync.Mutex    // one Sync at a time
	syncs  atomic.Uint64 // Syncs started, for Refresh
	mu     sync.RWMutex
	st     ledgerclient.FollowState
	status Status
	saved  time.Time // VerifiedAt as last persisted
	// quorumAt is the newest witness quorum time seen, as the witnesses
	// dated it (witness.go); status.WitnessedAt is when it was seen, if
	// earlier.
	quorumAt time.Time
}

// Open opens (or creates) the replica's file and loads its state. It does
// not contact the ledger: call Sync or Run.
func Open(cfg Config) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true})
	if err != nil {
		return nil, fmt.Errorf("open replica %s: %w", cfg.Path, err)
	}
	r := &Replica{cfg: cfg, db: db}
	if err := r.load(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open replica %s: %w", cfg.Path, err)
	}
	return r, nil
}

// replicaBuckets are every bucket of the replica's file.
var replicaBuckets = [][]byte{bucketMeta, bucketRecords, bucketBad, bucketCurrent, bucketTallies, bucketRevocations, bucketByKey}

func (r *Replica) load() error {
	return r.db.Update(func(tx *bolt.Tx) error {
		for _, b := range replicaBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		m := tx.Bucket(bucketMeta)
		switch v := m.Get(keyFormat); {
		case v == nil && tx.Bucket(bucketRecords).Stats().KeyN == 0:
			if err := m.Put(keyFormat, []byte{fileFormat}); err != nil {
				return err
			}
		case v != nil && len(v) == 1 && v[0] == fileFormat:
		case v != nil && len(v) == 1 && v[0] > fileFormat:
			return fmt.Errorf("replica file format %d is newer than this proxy's (%d): upgrade notarize-proxy, or remove the file to rebuild it from the ledger", v[0], fileFormat)
		default:
			// An older format: the replica is derived data, proven again
			// entry by entry as it is rebuilt. Until it has caught up,
			// lookups fail closed (nothing is verified yet).
			r.cfg.Logger.Warn("replica file of an older format: rebuilding it from the ledger (enforced pulls are refused until it has caught up)",
				slog.String("path", r.cfg.Path), slog.Any("format", v), slog.Int("format_now", fileFormat))
			for _, b := range replicaBuckets {
				if err := tx.DeleteBucket(b); err != nil {
					return err
				}
				if _, err := tx.CreateBucket(b); err != nil {
					return err
				}
			}
			m = tx.Bucket(bucketMeta)
			if err := m.Put(keyFormat, []byte{fileFormat}); err != nil {
				return err
			}
		}
		if v := m.Get(keySize); v != nil {
			if len(v) != 8 {
				return errors.New("corrupt size")
			}
			r.st.Size = binary.BigEndian.Uint64(v)
		}
		h := m.Get(keyHashes)
		if len(h)%32 != 0 {
			return errors.New("corrupt compact range")
		}
		for i := 0; i < len(h); i += 32 {
			r.st.Hashes = append(r.st.Hashes, bytes.Clone(h[i:i+32]))
		}
		r.status.Size = r.st.Size
		r.status.Records = getU64(m, keyRecords)
		r.status.BadEntries = getU64(m, keyBad)
		if v := m.Get(keyVerifiedAt); len(v) == 8 {
			r.status.VerifiedAt = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
			r.saved = r.status.VerifiedAt
		}
		r.status.CheckpointSize = r.st.Size
		r.loadCheckpoint(m.Get(keyCheckpoint))
		return nil
	})
}

// Close closes the file, and the MapAudit if there is one.
func (r *Replica) Close() error {
	err := r.db.Close()
	if r.cfg.MapAudit != nil {
		err = errors.Join(err, r.cfg.MapAudit.Close())
	}
	if err != nil {
		return fmt.Errorf("close replica: %w", err)
	}
	return nil
}

// Status returns a snapshot of the replica's state.
func (r *Replica) Status() Status {
	r.mu.RLock()
	st := r.status
	r.mu.RUnlock()
	if a := r.cfg.MapAudit; a != nil {
		st.MapRootsChecked, st.WrongMapRoot = a.RootsChecked(), a.Evidence()
	}
	return st
}

// Run polls the ledger every PollInterval until ctx is done. Failures are
// recorded in Status and the loop goes on, retrying with a backoff: the pause
// doubles from PollInterval up to MaxRetryInterval while the ledger cannot be
// followed, and is PollInterval again after a successful sync. Refresh is not
// slowed by the backoff: it syncs at once.
//
// The log shows state changes, not every attempt: the first failure (with
// its error), a failure of a graver kind (a fork, a bad proof), at most one
// summary line per FailureLogInterval while failures go on (how many, the
// last error), and the recovery.
func (r *Replica) Run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	var down syncFailures
	wait := r.cfg.PollInterval
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := r.Sync(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if down.count > 0 {
				wait = min(2*wait, max(MaxRetryInterval, r.cfg.PollInterval))
			}
			r.logFailure(ctx, &down, err, wait)
		} else {
			if down.count > 0 {
				st := r.Status()
				r.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "ledger replica recovered: following the ledger again",
					slog.Int("failures", down.count), slog.Duration("down_for", r.cfg.Now().Sub(down.since)),
					slog.Uint64("size", st.Size))
			}
			down = syncFailures{}
			wait = r.cfg.PollInterval
		}
		t.Reset(wait)
	}
}

// Backoff and log pacing of Run while the ledger cannot be followed.
const (
	// MaxRetryInterval bounds the pause between Run's retries while syncs
	// fail (unless PollInterval is longer).
	MaxRetryInterval = 10 * time.Second
	// FailureLogInterval is the least time between two summary lines of
	// the same failure state.
	FailureLogInterval = time.Minute
)

// syncFailures is Run's record of the failures since its last successful sync.
type syncFailures struct {
	count    int        // failed syncs since the last success
	since    time.Time  // the first of them
	logged   time.Time  // the last line logged about them
	level    slog.Level // the gravest level logged so far
	unlogged int        // failures since that line
}

// logFailure logs a failed sync if it changes the state (the first failure,
// or a graver kind of error) or a summary is due; else it only counts it.
func (r *Replica) logFailure(ctx context.Context, f *syncFailures, err error, retryIn time.Duration) {
	now := r.cfg.Now()
	f.count++
	f.unlogged++
	level := errorLevel(err)
	st := r.Status()
	switch {
	case f.count == 1 || level > f.level:
		if f.count == 1 {
			f.since = now
		}
		r.cfg.Logger.LogAttrs(ctx, level, "ledger replica could not sync; serving from the last verified state until it is stale",
			slog.String("error", err.Error()), slog.Uint64("size", st.Size),
			slog.Time("verified_at", st.VerifiedAt), slog.Duration("max_staleness", r.cfg.MaxStaleness),
			slog.Duration("retry_in", retryIn))
	case now.Sub(f.logged) >= FailureLogInterval:
		r.cfg.Logger.LogAttrs(ctx, max(level, f.level), "ledger replica still cannot sync",
			slog.Int("failures", f.unlogged), slog.Int("failures_total", f.count),
			slog.Time("failing_since", f.since), slog.String("last_error", err.Error()),
			slog.Uint64("size", st.Size), slog.Time("verified_at", st.VerifiedAt),
			slog.Duration("retry_in", retryIn))
	default:
		return
	}
	f.logged, f.unlogged, f.level = now, 0, max(level, f.level)
}

func errorLevel(err error) slog.Level {
	var fe *ledgerclient.ForkError
	if errors.As(err, &fe) || errors.Is(err, ledgerclient.ErrReplicaDiverged) || errors.Is(err, ledgerclient.ErrBadProof) {
		return slog.LevelError
	}
	return slog.LevelWarn
}

// Sync follows the ledger until the replica holds every entry of the
// ledger's latest verified checkpoint, and returns how many entries it
// added.
func (r *Replica) Sync(ctx context.Context) (int, error) {
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	return r.syncLocked(ctx)
}

// Refresh makes sure a sync has started since Refresh was called: it waits
// for the one in progress and, unless another began meanwhile, syncs now.
// The proxy calls it before refusing a manifest, so that a statement whose
// receipt the signer already holds (sign, then pull at once, as a CI job
// does) is seen without waiting for the next poll. Concurrent callers share
// one sync; syncs run one at a time, which bounds the ledger traffic a flood
// of refused pulls can cause.
func (r *Replica) Refresh(ctx context.Context) error {
	asked := r.syncs.Load()
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	if r.syncs.Load() > asked {
		// A sync started after the call and, since we hold the lock, has
		// ended: it saw everything the ledger had committed to by then.
		return nil
	}
	_, err := r.syncLocked(ctx)
	return err
}

func (r *Replica) syncLocked(ctx context.Context) (int, error) {
	r.syncs.Add(1)
	r.mu.RLock()
	st := r.st
	r.mu.RUnlock()
	batches, stop := r.prefetch(ctx, st)
	defer stop()
	added := 0
	for f := range batches {
		err := f.err
		if err == nil {
			err = context.Cause(ctx) // a sync whose context ended stores nothing more
		}
		if err == nil {
			err = r.apply(f.b)
		}
		if err != nil {
			r.mu.Lock()
			r.status.LastError = clip(err.Error())
			r.mu.Unlock()
			return added, err
		}
		added += len(f.b.Entries)
		if len(f.b.Entries) == 0 {
			if added > 0 {
				r.cfg.Logger.LogAttrs(ctx, slog.LevelDebug, "ledger replica caught up", slog.Int("added", added), slog.Uint64("size", f.b.State.Size))
			}
			return added, nil
		}
	}
	// The reader ended without a result: ctx ended while it waited to hand
	// one over.
	return added, fmt.Errorf("replica: sync: %w", context.Cause(ctx))
}

// fetched is one result of the Source: a verified batch or the error that
// ends the sync.
type fetched struct {
	b   *ledgerclient.FollowBatch
	err error
}

// prefetch reads batches from the Source one after the other, starting at
// st, each from the state the previous one ends at, so that the next batch
// is read, proven and signature-checked (on every core, by the Follower)
// while the caller stores the one before: catch-up overlaps the ledger's
// round trips and the checks with bbolt's commit. It hands them over in
// order on an unbuffered channel (at most one batch waits besides the one
// being stored, which bounds memory) and ends after an error or an empty
// batch. A batch is only ever applied by the caller, in order, and apply
// still refuses one that does not follow the stored state; when the caller
// stops early (a batch failed to store) the batches read after it are
// dropped. stop cancels the reader and waits for it, so that the Source is
// never used by two goroutines (syncs run under syncMu).
func (r *Replica) prefetch(ctx context.Context, st ledgerclient.FollowState) (<-chan fetched, func()) {
	ctx, cancel := context.WithCancel(ctx)
	out := make(chan fetched)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(out)
		for {
			b, err := r.cfg.Source.Next(ctx, st)
			if err == nil && b == nil {
				err = errors.New("replica: the ledger source returned no batch")
			}
			select {
			case out <- fetched{b, err}:
			case <-ctx.Done():
				return
			}
			if err != nil || len(b.Entries) == 0 {
				return
			}
			st = b.State
		}
	}()
	return out, func() {
		cancel()
		<-done
	}
}

// apply stores a verified batch and the state after it in one transaction.
func (r *Replica) apply(b *ledgerclient.FollowBatch) error {
	now := r.cfg.Now()
	r.mu.RLock()
	saved, cur := r.saved, r.st.Size
	r.mu.RUnlock()
	if b.From != cur || b.State.Size != b.From+uint64(len(b.Entries)) {
		return fmt.Errorf("replica: batch [%d, %d) does not follow size %d", b.From, b.State.Size, cur)
	}
	if r.cfg.MapAudit != nil && len(b.Entries) > 0 {
		if err := r.cfg.MapAudit.Observe(b); err != nil {
			return fmt.Errorf("replica: %w", err)
		}
	}
	var addRecs, addBad uint64
	if len(b.Entries) > 0 || now.Sub(saved) >= persistEvery {
		type kv struct{ k, v []byte }
		var recs, bad []kv
		var tallies []tallyRecord
		for _, e := range b.Entries {
			if e.Err != nil {
				if !notarize.IsMapRoot(e.Leaf) { // map roots are no statements (vindex.go)
					bad = append(bad, kv{u64(e.Index), []byte(clip(e.Err.Error()))})
				}
				continue
			}
			p := e.Record.Statement.Predicate
			v, err := storedRecord{KeyID: e.Record.KeyID, Status: p.Status, Timestamp: p.Timestamp, Name: p.Name, Kind: p.Kind, MediaType: p.MediaType}.encode()
			if err != nil {
				return fmt.Errorf("replica: encode record %d: %w", e.Index, err)
			}
			dh, err := hex.DecodeString(e.Record.Statement.Digest().Hex())
			if err != nil || len(dh) != 32 {
				return fmt.Errorf("replica: record %d: bad digest", e.Index)
			}
			recs = append(recs, kv{append(dh, u64(e.Index)...), v})
			tallies = append(tallies, tallyRecord{digest: dh, keyID: v[2:34], status: v[1], ts: p.Timestamp, index: e.Index})
		}
		// Sorted keys make bbolt's page splits cheap.
		sort.Slice(recs, func(i, j int) bool { return bytes.Compare(recs[i].k, recs[j].k) < 0 })
		err := r.db.Update(func(tx *bolt.Tx) error {
			rb, bb, m := tx.Bucket(bucketRecords), tx.Bucket(bucketBad), tx.Bucket(bucketMeta)
			kb := tx.Bucket(bucketByKey)
			if getU64(m, keySize) != cur {
				return errors.New("replica file changed under the process")
			}
			for _, x := range recs {
				if err := rb.Put(x.k, x.v); err != nil {
					return err
				}
				if err := kb.Put(byKeyEntry(x.k[:32], x.v[2:34], binary.BigEndian.Uint64(x.k[32:])), []byte{}); err != nil {
					return err
				}
			}
			for _, x := range bad {
				if err := bb.Put(x.k, x.v); err != nil {
					return err
				}
			}
			if err := applyTallies(tx, tallies); err != nil {
				return err
			}
			var hs []byte
			for _, h := range b.State.Hashes {
				hs = append(hs, h...)
			}
			addRecs, addBad = uint64(len(recs)), uint64(len(bad))
			for _, p := range []struct {
				k, v []byte
			}{
				{keySize, u64(b.State.Size)}, {keyHashes, hs}, {keyCheckpoint, b.Checkpoint.Raw},
				{keyVerifiedAt, u64(uint64(now.UnixNano()))},
				{keyRecords, u64(getU64(m, keyRecords) + addRecs)}, {keyBad, u64(getU64(m, keyBad) + addBad)},
			} {
				if err := m.Put(p.k, p.v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("replica: store batch [%d, %d): %w", b.From, b.State.Size, err)
		}
		saved = now
	}
	r.mu.Lock()
	r.st = b.State
	r.saved = saved
	r.status.Size = b.State.Size
	r.status.CheckpointSize = b.Checkpoint.Size
	r.status.Records += addRecs
	r.status.BadEntries += addBad
	r.status.VerifiedAt = now
	r.status.LastError = ""
	r.witnessed(b.Checkpoint)
	r.mu.Unlock()
	return nil
}

// Records returns the verified records about d, in log order. It fails
// with ErrStale when the ledger's state was last verified longer than
// MaxStaleness ago (or never).
func (r *Replica) Records(ctx context.Context, d notarize.Digest) ([]notarize.Record, error) {
	if err := r.Fresh(); err != nil {
		return nil, err
	}
	return r.lookup(d)
}

// Fresh returns an error wrapping ErrStale when the replica is stale, and
// the *WrongMapRootError of its MapAudit once the ledger committed a wrong
// map root.
func (r *Replica) Fresh() error {
	if r.cfg.MapAudit != nil {
		if err := r.cfg.MapAudit.Err(); err != nil {
			return err
		}
	}
	s := r.Status()
	if s.VerifiedAt.IsZero() {
		return fmt.Errorf("%w: the ledger has not been replicated yet (%s)", ErrStale, orNone(s.LastError))
	}
	if age := r.cfg.Now().Sub(s.VerifiedAt); age > r.cfg.MaxStaleness {
		return fmt.Errorf("%w: the ledger was last verified %s ago at size %d (max staleness %s): %s",
			ErrStale, age.Round(time.Second), s.Size, r.cfg.MaxStaleness, orNone(s.LastError))
	}
	return r.witnessFresh(s)
}

func orNone(s string) string {
	if s == "" {
		return "no error recorded"
	}
	return s
}

func (r *Replica) lookup(d notarize.Digest) ([]notarize.Record, error) {
	if _, err := notarize.ParseDigest(string(d)); err != nil {
		return nil, err
	}
	prefix, _ := hex.DecodeString(d.Hex())
	var recs []notarize.Record
	err := r.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(recs) >= maxRecordsPerDigest {
				return fmt.Errorf("more than %d records about %s", maxRecordsPerDigest, d)
			}
			sr, err := decodeRecord(v)
			if err != nil || len(k) != 40 {
				return fmt.Errorf("corrupt record under %x", k)
			}
			recs = append(recs, sr.record(d, binary.BigEndian.Uint64(k[32:])))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("replica lookup %s: %w", d, err)
	}
	return recs, nil
}

// record returns the stored record at log index about d as the core's
// Record (what the status fold and the decision log read of it).
func (sr storedRecord) record(d notarize.Digest, index uint64) notarize.Record {
	return notarize.Record{
		Index: index,
		KeyID: sr.KeyID,
		Statement: notarize.NewStatement(d, "", notarize.Predicate{
			Status: sr.Status, Timestamp: sr.Timestamp, Name: sr.Name, Kind: sr.Kind, MediaType: sr.MediaType,
		}),
	}
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getU64(b *bolt.Bucket, k []byte) uint64 {
	if v := b.Get(k); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func clip(s string) string {
	if len(s) <= maxErrLen {
		return s
	}
	return s[:maxErrLen] + "…"
}
