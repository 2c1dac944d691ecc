package posix

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// ErrPebbleDamaged is the error of a pebble store (the index or the map)
// that is damaged: it holds data files but no current MANIFEST marker (it
// would open as a new, partial store), or pebble reported a corruption in
// one of its files. Its reads never answer from it again; the operator
// deletes the store, which the ledger rebuilds from the log.
var ErrPebbleDamaged = errors.New("pebble store damaged")

// PebbleHealth is the health of one open pebble store: it records a
// corruption pebble reported (EventListener.DataCorruption), after which
// Err fails every read and write of the store.
type PebbleHealth struct {
	dir, what string
	corrupt   atomic.Pointer[string]
}

// Err returns nil while the store is sound, else an error (ErrPebbleDamaged)
// naming the store, the corruption and what to do.
func (h *PebbleHealth) Err() error {
	if h == nil {
		return nil
	}
	if c := h.corrupt.Load(); c != nil {
		return fmt.Errorf("%w: %s %s: %s; stop the ledger and delete %s: it is rebuilt from the log",
			ErrPebbleDamaged, h.what, h.dir, *c, h.dir)
	}
	return nil
}

// pebbleExit ends the process after pebble's Logger.Fatalf (tests replace it).
var pebbleExit = os.Exit

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
	pebbleExit(1)
	// pebbleExit returned (a test): pebble must not go on.
	panic("pebble: " + msg)
}

// hasPebbleData reports whether dir holds a pebble store's files (a
// MANIFEST, its marker, a WAL, a table or a blob file): a store created
// before, as opposed to none or one whose very first open stopped before
// it wrote anything.
func hasPebbleData(dir string) (bool, error) {
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

// OpenPebbleStore opens (creating if new) the pebble store at dir with
// opts (it sets their Logger, EventListener.DataCorruption and
// ErrorIfNotExists); what names the store in errors and logs ("index",
// "map"). A directory that already holds a store's files is opened with
// ErrorIfNotExists: if its MANIFEST marker is lost, pebble would create a
// new store there and replay the WAL files left into it, a partial store
// at the full position; that is refused (ErrPebbleDamaged). A corruption
// pebble reports later is logged and recorded in the returned health,
// which the store's reads and writes check. It releases opts.Cache's
// reference (the database holds its own).
func OpenPebbleStore(dir, what string, opts *pebble.Options, logger *slog.Logger) (*pebble.DB, *PebbleHealth, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if opts.Cache != nil {
		defer opts.Cache.Unref()
	}
	h := &PebbleHealth{dir: dir, what: what}
	opts.Logger = fatalLogger{l: logger, dir: dir, what: what}
	if opts.EventListener == nil {
		opts.EventListener = &pebble.EventListener{}
	}
	opts.EventListener.DataCorruption = func(info pebble.DataCorruptionInfo) {
		msg := fmt.Sprintf("on-disk corruption in %s: %v", info.Path, info.Details)
		h.corrupt.CompareAndSwap(nil, &msg)
		logger.Error("pebble store corrupt: its reads fail from now on", slog.String("store", what), slog.String("path", dir),
			slog.String("error", msg), slog.String("todo", "stop the ledger and delete "+dir+": it is rebuilt from the log"))
	}
	had, err := hasPebbleData(dir)
	if err != nil {
		return nil, nil, err
	}
	opts.ErrorIfNotExists = had
	db, err := pebble.Open(dir, opts)
	if err != nil {
		if errors.Is(err, pebble.ErrDBDoesNotExist) {
			return nil, nil, fmt.Errorf("%w: %s %s holds pebble files but no current MANIFEST (its marker file is lost): it would open as a new, partial store; stop the ledger and delete %s: it is rebuilt from the log",
				ErrPebbleDamaged, what, dir, dir)
		}
		if PebbleLocked(err) {
			return nil, nil, fmt.Errorf("%s: in use by another process: %w", dir, err)
		}
		return nil, nil, err
	}
	return db, h, nil
}
