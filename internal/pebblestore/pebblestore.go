// Package pebblestore opens the ledger's pebble stores (the POSIX driver's
// index, the verifiable map, a migration's copy) behind the guards every
// one of them needs, so that the index and the map share one copy:
//
//   - a directory that holds a store's files is opened with
//     ErrorIfNotExists: if its MANIFEST marker is lost, pebble would create
//     a new store there and replay the WAL files left into it, a partial
//     store at the full position (refused: ErrDamaged);
//   - a corruption pebble reports later (EventListener.DataCorruption) is
//     logged and fails every later use of the store (ErrDamaged);
//   - pebble's Logger.Fatalf (a failed WAL write on a full disk, a broken
//     invariant) logs the store, the error and what to do, then exits 1;
//   - Close waits for the operations in flight (Acquire) and fails the ones
//     after it (ErrClosed), as bbolt's Close waits for its read
//     transactions: pebble itself panics on a read of a closed database.
//
// It is a leaf: package ledger and the storage drivers both import it.
package pebblestore

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
)

// ErrDamaged is the error of a store that is damaged: it holds data files
// but no current MANIFEST marker (it would open as a new, partial store),
// or pebble reported a corruption in one of its files. Its reads never
// answer from it again; the operator deletes the store, which the ledger
// rebuilds from the log.
var ErrDamaged = errors.New("pebble store damaged")

// ErrClosed is the error of an operation on a store after Close.
var ErrClosed = errors.New("pebble store closed")

// Store is one open pebble database and its guards: its health (a
// corruption pebble reported) and its use count (Close waits for it).
type Store struct {
	db        *pebble.DB
	dir, what string
	corrupt   atomic.Pointer[string]
	mu        sync.RWMutex // read-held by each operation (Acquire), write-held by Close
	closed    bool
}

// Open opens (creating if new) the pebble store at dir with opts (it sets
// their Logger, EventListener.DataCorruption and ErrorIfNotExists); what
// names the store in errors and logs ("index", "map"). It releases
// opts.Cache's reference (the database holds its own). A store another
// process holds is an error for which Locked is true.
func Open(dir, what string, opts *pebble.Options, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if opts.Cache != nil {
		defer opts.Cache.Unref()
	}
	s := &Store{dir: dir, what: what}
	opts.Logger = fatalLogger{l: logger, dir: dir, what: what}
	if opts.EventListener == nil {
		opts.EventListener = &pebble.EventListener{}
	}
	opts.EventListener.DataCorruption = func(info pebble.DataCorruptionInfo) {
		msg := fmt.Sprintf("on-disk corruption in %s: %v", info.Path, info.Details)
		s.corrupt.CompareAndSwap(nil, &msg)
		logger.Error("pebble store corrupt: its reads fail from now on", slog.String("store", what), slog.String("path", dir),
			slog.String("error", msg), slog.String("todo", "stop the ledger and delete "+dir+": it is rebuilt from the log"))
	}
	had, err := HasData(dir)
	if err != nil {
		return nil, err
	}
	opts.ErrorIfNotExists = had
	db, err := pebble.Open(dir, opts)
	if err != nil {
		if errors.Is(err, pebble.ErrDBDoesNotExist) {
			return nil, fmt.Errorf("%w: %s %s holds pebble files but no current MANIFEST (its marker file is lost): it would open as a new, partial store; stop the ledger and delete %s: it is rebuilt from the log",
				ErrDamaged, what, dir, dir)
		}
		if Locked(err) {
			return nil, fmt.Errorf("%s: in use by another process: %w", dir, err)
		}
		return nil, err
	}
	s.db = db
	return s, nil
}

// Acquire begins one operation on the store: it returns the database and
// the release that ends the operation, which Close waits for. It fails
// after Close (ErrClosed) and once pebble reported a corruption
// (ErrDamaged). An operation acquires once: a second Acquire inside it
// would wait behind a pending Close for ever.
func (s *Store) Acquire() (*pebble.DB, func(), error) {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, nil, fmt.Errorf("%s %s: %w", s.what, s.dir, ErrClosed)
	}
	if err := s.Err(); err != nil {
		s.mu.RUnlock()
		return nil, nil, err
	}
	return s.db, s.mu.RUnlock, nil
}

// DB returns the database without a use count: for the opener's own set-up
// and tear-down, while no one else has the store (a format upgrade, a
// migration's copy).
func (s *Store) DB() *pebble.DB { return s.db }

// Err returns nil while the store is sound, else an error (ErrDamaged)
// naming the store, the corruption and what to do. An operation checks it
// again before it answers or commits: a corruption reported during the
// operation fails it.
func (s *Store) Err() error {
	if c := s.corrupt.Load(); c != nil {
		return fmt.Errorf("%w: %s %s: %s; stop the ledger and delete %s: it is rebuilt from the log",
			ErrDamaged, s.what, s.dir, *c, s.dir)
	}
	return nil
}

// Close waits for the operations in flight, then closes the database;
// later operations fail with ErrClosed. A second Close returns nil.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close %s %s: %w", s.what, s.dir, err)
	}
	return nil
}

// Locked reports whether err, from pebble.Open, means that another process
// (fcntl lock: EAGAIN or EACCES) or this one holds the database.
func Locked(err error) bool {
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) || strings.Contains(err.Error(), "lock held by current process")
}

// HasData reports whether dir holds a pebble store's files (a MANIFEST,
// its marker, a WAL, a table or a blob file): a store created before, as
// opposed to none or one whose very first open stopped before it wrote
// anything.
func HasData(dir string) (bool, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "MANIFEST-") || strings.HasPrefix(n, "marker.") ||
			strings.HasSuffix(n, ".sst") || strings.HasSuffix(n, ".log") || strings.HasSuffix(n, ".blob") {
			return true, nil
		}
	}
	return false, nil
}

// exit ends the process after pebble's Logger.Fatalf (tests replace it).
var exit = os.Exit

// fatalLogger is pebble's logger for one store: its chatter dropped, its
// errors to slog, and its Fatalf (a state pebble cannot go on from: a
// failed WAL write on a full disk, a broken invariant) an slog error
// naming the store and what to do, then exit status 1. pebble's contract
// is that Fatalf does not return; a panic instead would leave the
// store's references held and, in the follower's goroutine, kill the
// process with a stack trace rather than a reason.
type fatalLogger struct {
	l         *slog.Logger
	dir, what string
}

func (p fatalLogger) Infof(string, ...any) {}
func (p fatalLogger) Errorf(format string, args ...any) {
	p.l.Error("pebble", slog.String("store", p.what), slog.String("path", p.dir), slog.String("msg", fmt.Sprintf(format, args...)))
}
func (p fatalLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	advice := "free disk space if it is full and start the ledger again; if the store is damaged, delete " + p.dir + ": it is rebuilt from the log"
	p.l.Error("pebble store failed: the ledger stops", slog.String("store", p.what), slog.String("path", p.dir),
		slog.String("error", msg), slog.String("todo", advice))
	exit(1)
	// exit returned (a test): pebble must not go on.
	panic("pebble: " + msg)
}
