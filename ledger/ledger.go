package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/tessera"
	"golang.org/x/mod/sumdb/note"
)

// MaxLeafSize is the largest canonical entry the log stores: a C2SP
// tlog-tiles entry bundle prefixes each entry with a 16-bit length.
const MaxLeafSize = 1<<16 - 1

// Errors returned (wrapped) by Submit, Lookup and Info. The HTTP layer maps
// them, and the notarize errors, to API codes in one place (see classify).
var (
	// ErrTooLarge: the entry is over MaxLeafSize (or the request body over its bound).
	ErrTooLarge = errors.New("entry too large")
	// ErrFuture: the statement's timestamp is too far ahead of the ledger's clock.
	ErrFuture = errors.New("statement dated in the future")
	// ErrNotEnrolled: writes are restricted and the signer is not enrolled.
	ErrNotEnrolled = errors.New("signer not enrolled")
	// ErrUnavailable: the ledger is overloaded or shutting down, or its
	// storage cannot be reached; retry later. It is storage.ErrUnavailable.
	ErrUnavailable = storage.ErrUnavailable
	// ErrIdentityMismatch: the configured origin or checkpoint key
	// disagrees with what the storage already holds (New). It is
	// storage.ErrIdentityMismatch.
	ErrIdentityMismatch = storage.ErrIdentityMismatch
)

// Tuning that is not worth a Config field.
const (
	awaitPoll       = 10 * time.Millisecond // how often the publication awaiter reads the checkpoint
	batchMaxSize    = 1024                  // Tessera batch size
	maxInFlight     = 4096                  // concurrent submissions before the ledger answers 503
	receiptTimeout  = DefaultReceiptTimeout // how long a claim on an append may be held (see claimStale)
	indexWait       = 10 * time.Second      // longest a lookup waits for the index to catch up
	tesseraPushback = 1 << 16               // WithPushback; the POSIX driver does not use it
)

// Ledger is a running ledger: a Tessera log, its digest index and the HTTP
// API over both. Create it with New and stop it with Close.
type Ledger struct {
	cfg      Config
	log      *slog.Logger
	id       *storage.Identity
	st       Storage
	enrolled atomic.Pointer[storage.KeySet] // key IDs allowed to write; nil or empty = open

	reader   tessera.LogReader
	add      tessera.AddFn
	awaiter  *awaiter
	shutdown func(context.Context) error
	store    *index
	cancel   context.CancelFunc

	witnessed bool            // checkpoints are published once a witness quorum cosigned them
	witnesses []note.Verifier // the policy's witnesses' cosignature verifiers

	inflight  chan struct{} // semaphore bounding concurrent appends
	lookups   lookupGate    // bounds concurrent lookups (lookup.go)
	tails     heldBudget    // bounds inline tails built and not yet written (held_budget.go)
	answers   heldBudget    // bounds the other answers built and not yet written (held_budget.go)
	streams   heldBudget    // bounds the entry bundles each client streams from files (http.go)
	closing   atomic.Bool
	closeOnce sync.Once
	closeErr  error

	limits    *writeLimits
	pendingMu sync.Mutex
	pending   map[[32]byte]*submission // appends in flight, by statement identity
	// unresolved holds, under pendingMu, the appends whose submissions
	// failed before learning their outcome, until the index covers them
	// (unresolved.go).
	unresolved map[[32]byte]*unresolvedAppend
	appends    sync.WaitGroup  // append goroutines (see Submit)
	closed     chan struct{}   // closed by Close once the log is flushed
	closedCtx  context.Context // cancelled when closed is closed
	closeCtx   context.CancelFunc

	lastCP atomic.Pointer[parsedCheckpoint] // the last checkpoint opened, to skip re-verifying it
	proofs *proofNodes                      // builds inclusion proofs (ingest_proof.go)

	metrics *metrics
	handler http.Handler

	vmap *mapFollower // the verifiable index (vindex.go); nil without one

	pageLimits pageLimits // the pages' revocation look-up bounds (page_revoked.go); zero: the defaults

	selfRevoked selfRevokedCache // keys found self-revoked, and how far others were read (selfrevoked.go)
}

// parsedCheckpoint is a checkpoint note and what it says.
type parsedCheckpoint struct {
	raw []byte
	cp  *log.Checkpoint
}

// inclusionProofs returns inclusion proofs for indices in a tree of the given size.
func (l *Ledger) inclusionProofs(ctx context.Context, size uint64, indices ...uint64) ([][][]byte, error) {
	out := make([][][]byte, len(indices))
	for i, idx := range indices {
		proof, err := l.proofs.inclusion(ctx, idx, size)
		if err != nil {
			return nil, fmt.Errorf("inclusion proof for %d in %d: %w", idx, size, err)
		}
		out[i] = nonNil(proof)
	}
	return out, nil
}

// New opens the ledger on st, a constructed storage driver (posix.New,
// mysql.New), and starts its background work. ctx bounds start-up only;
// Close stops the ledger. New takes ownership of st: Close closes it, and
// so does New when it fails.
func New(ctx context.Context, st Storage, cfg Config) (*Ledger, error) {
	if st == nil {
		return nil, errors.New("new ledger: no storage")
	}
	if err := cfg.Validate(); err != nil {
		return nil, errors.Join(err, st.Close())
	}
	if _, local := st.(interface{ Dir() string }); !local && st.Map() == nil && !cfg.noMap && cfg.MapDir == "" {
		return nil, errors.Join(fmt.Errorf("new ledger: %w", ErrNoMapDir), st.Close())
	}
	cfg = cfg.withDefaults()
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l := &Ledger{
		cfg:        cfg,
		log:        cfg.Logger,
		st:         st,
		cancel:     cancel,
		inflight:   make(chan struct{}, maxInFlight),
		limits:     newWriteLimits(cfg.RateLimits, cfg.TrustedProxies, time.Now),
		pending:    map[[32]byte]*submission{},
		unresolved: map[[32]byte]*unresolvedAppend{},
		closed:     make(chan struct{}),
		tails:      heldBudget{total: maxHeldTailBytes, client: clientHeldTailBytes},
		answers: heldBudget{total: maxHeldAnswerBytes, client: clientHeldAnswerBytes,
			reserve: smallAnswerReserve, small: smallAnswerBytes, smallClient: smallClientBytes},
		streams: heldBudget{total: math.MaxInt64 / 2, client: clientBundleStreams},
	}
	l.closedCtx, l.closeCtx = context.WithCancel(context.Background())
	if err := l.open(ctx, bg); err != nil {
		cancel()
		if l.store != nil {
			l.store.stop()
		}
		return nil, errors.Join(fmt.Errorf("new ledger: %w", err), st.Close())
	}
	l.metrics = newMetrics(l)
	l.handler = l.routes()
	return l, nil
}

// open reads what the storage holds (identity, enrolled signers, index
// position) and starts the log.
func (l *Ledger) open(ctx, bg context.Context) error {
	id, err := l.st.Identity(ctx, l.cfg.Origin, l.cfg.NoteSignerKey)
	if err != nil {
		return err
	}
	l.id = id
	// A policy naming logs is also the clients' (they take no other key):
	// one that does not name this ledger's would have them refuse it.
	if p, _, err := l.cfg.witnessPolicy(); err != nil {
		return err
	} else if len(p.Logs) > 0 && !slices.Contains(p.Logs, id.VerifierKey) {
		return fmt.Errorf("witness policy: its log lines name %s, not this ledger's key %s: clients holding the policy would refuse it", strings.Join(p.Logs, ", "), id.VerifierKey)
	}
	if len(l.cfg.Signers) > 0 {
		if err := l.st.EnrollSigners(ctx, l.cfg.Signers); err != nil {
			return err
		}
	}
	set, err := l.st.Signers(ctx)
	if err != nil {
		return err
	}
	l.enrolled.Store(&set)
	if l.store, err = newIndex(ctx, l.tapRows(l.st.Index()), l.log, l.cfg.KeyTables); err != nil {
		return fmt.Errorf("%s: %w", l.st, err)
	}
	if err := l.start(ctx, bg); err != nil {
		return err
	}
	return l.startMap(bg) // the verifiable index (vindex.go)
}

// OpenWrites reports whether any valid signature may write: no signers are enrolled.
func (l *Ledger) OpenWrites() bool {
	set := l.enrolled.Load()
	return set == nil || len(*set) == 0
}

// start opens the Tessera log and waits until the index has caught up with
// it, so that duplicate detection is exact from the first request.
func (l *Ledger) start(ctx, bg context.Context) error {
	st := l.store
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(l.id.Signer).
		WithBatching(batchMaxSize, l.cfg.BatchMaxAge).
		WithCheckpointInterval(max(l.cfg.CheckpointInterval, l.st.MinCheckpointInterval())).
		WithPushback(tesseraPushback).
		WithAntispam(tessera.DefaultAntispamInMemorySize, st)
	witnesses, err := l.cfg.withWitnesses(opts)
	if err != nil {
		return err
	}
	l.witnesses, l.witnessed = witnesses, len(witnesses) > 0
	appender, shutdown, reader, err := tessera.NewAppender(bg, l.st.Driver(), opts)
	if err != nil {
		return fmt.Errorf("tessera appender: %w", err)
	}
	l.add, l.shutdown = l.st.WrapAdd(appender.Add), shutdown
	l.reader = l.st.WrapReader(reader)
	reader = l.reader
	l.proofs = newProofNodes(reader.ReadTile)
	l.awaiter = newAwaiter(bg, reader.ReadCheckpoint, awaitPoll) // await.go: reads only while a submission waits
	go l.followSigners(bg, l.st)
	go l.st.PublishCheckpoints(bg, storage.Publication{
		Sign:      opts.CheckpointPublisher(reader, http.DefaultClient),
		Identity:  l.id,
		Interval:  l.cfg.CheckpointInterval,
		Republish: l.cfg.CheckpointRepublishInterval,
	})

	size, err := reader.IntegratedSize(ctx)
	if err != nil {
		return fmt.Errorf("integrated size: %w", err)
	}
	if p := st.Processed(); p > size {
		return fmt.Errorf("%s covers %d entries but the log has only %d: wrong or rolled-back log",
			l.st, p, size)
	}
	select {
	case <-st.started():
	case <-ctx.Done():
		return fmt.Errorf("wait for index follower: %w", ctx.Err())
	}
	if st.Processed() < size {
		l.log.InfoContext(ctx, "catching up the digest index", slog.Uint64("from", st.Processed()), slog.Uint64("to", size))
	}
	if err := st.WaitProcessed(ctx, size); err != nil {
		return err
	}
	// Serve only once a checkpoint exists: Tessera's MySQL driver publishes
	// the first one in the background.
	for {
		_, err := reader.ReadCheckpoint(ctx)
		if err == nil {
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("read checkpoint: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the first checkpoint: %w", ctx.Err())
		case <-time.After(awaitPoll):
		}
	}
}

// Origin returns the checkpoint origin, the log's name.
func (l *Ledger) Origin() string { return l.id.Origin() }

// VerifierKey returns the checkpoint verifier key as a signed-note verifier
// string (the POSIX driver also keeps it in a file, posix.PubFile).
func (l *Ledger) VerifierKey() string { return l.id.VerifierKey }

// Close stops accepting submissions, waits until every accepted entry is
// covered by a published checkpoint and indexed, then stops the background
// work and closes the storage, which may then be opened again. Close
// does not wait for HTTP handlers: shut the HTTP server down first.
func (l *Ledger) Close(ctx context.Context) error {
	l.closeOnce.Do(func() {
		l.pendingMu.Lock() // join registers appends under it: none after this
		l.closing.Store(true)
		l.pendingMu.Unlock()
		var errs []error
		if err := l.closeMap(); err != nil { // before the log stops: see closeMap
			errs = append(errs, err)
		}
		if err := l.shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("flush log: %w", err))
		}
		close(l.closed)
		l.closeCtx()
		l.appends.Wait()
		l.cancel()
		l.store.stop()
		if err := l.st.Close(); err != nil {
			errs = append(errs, err)
		}
		if err := errors.Join(errs...); err != nil {
			l.closeErr = fmt.Errorf("close ledger: %w", err)
		}
	})
	return l.closeErr
}

// Info describes the ledger and its latest checkpoint.
func (l *Ledger) Info(ctx context.Context) (*api.Info, error) {
	_, cp, err := l.latestCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("info: %w", err)
	}
	return &api.Info{
		Origin:      l.Origin(),
		VerifierKey: l.VerifierKey(),
		Size:        cp.Size,
		OpenWrites:  l.OpenWrites(),
	}, nil
}

// latestCheckpoint reads and checks the published checkpoint.
func (l *Ledger) latestCheckpoint(ctx context.Context) ([]byte, *log.Checkpoint, error) {
	raw, err := l.reader.ReadCheckpoint(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("read checkpoint: %w", err)
	}
	cp, err := l.parseCheckpoint(raw)
	if err != nil {
		return nil, nil, err
	}
	return raw, cp, nil
}

// parseCheckpoint opens a checkpoint this ledger signed. The last one
// opened is remembered: every receipt of a batch carries the same one.
func (l *Ledger) parseCheckpoint(raw []byte) (*log.Checkpoint, error) {
	if last := l.lastCP.Load(); last != nil && bytes.Equal(last.raw, raw) {
		return last.cp, nil
	}
	cp, _, _, err := log.ParseCheckpoint(raw, l.Origin(), l.id.Verifier)
	if err != nil {
		return nil, fmt.Errorf("parse own checkpoint: %w", err)
	}
	l.lastCP.Store(&parsedCheckpoint{raw: bytes.Clone(raw), cp: cp})
	return cp, nil
}

func nonNil(p [][]byte) [][]byte {
	if p == nil {
		return [][]byte{}
	}
	return p
}
