// Package posix is the ledger's storage driver for one process and one
// directory: the Tessera log on POSIX storage (Dir/log), the digest index
// in an embedded bbolt database (Dir/index.db) or pebble database
// (Dir/index.pebble, Config.Engine), and the checkpoint key and
// origin in files (Dir/ledger.key, Dir/ledger.pub, Dir/origin). The
// database's file lock keeps a second process out of the directory.
//
//	st, err := posix.New(ctx, posix.Config{Dir: dir})
//	l, err := ledger.New(ctx, st, ledger.Config{})
package posix

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/notarize/docker-notarize/internal/atomicfile"
	"github.com/notarize/docker-notarize/ledger/storage"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
	tposix "github.com/transparency-dev/tessera/storage/posix"
)

// Files inside Config.Dir that operators and tests may read.
const (
	// KeyFile holds the note signer key ("PRIVATE+KEY+…"), mode 0600.
	KeyFile = "ledger.key"
	// PubFile holds the note verifier key, the string clients pin.
	PubFile = "ledger.pub"
	// IndexFile is the bbolt database of the digest index (engine bbolt).
	IndexFile = "index.db"
	// IndexDir is the pebble database of the digest index (engine pebble).
	IndexDir = "index.pebble"
)

// Index engines, the values of Config.Engine.
const (
	EngineBbolt  = "bbolt"
	EnginePebble = "pebble"
)

// ErrEngineMismatch is returned (wrapped) by New when Config.Engine names
// another engine than the data directory's: an existing directory keeps
// its engine until migrated (notarize-ledger migrate-index).
var ErrEngineMismatch = errors.New("index engine mismatch")

// Other files and directories inside Config.Dir.
const (
	originFileName = "origin" // the persisted checkpoint origin
	logDirName     = "log"    // Tessera POSIX storage
)

// Config configures the POSIX storage.
type Config struct {
	// Dir holds everything the ledger keeps; it is created if missing.
	Dir string
	// Logger receives the driver's logs (an index rebuild). Nil means
	// slog.Default().
	Logger *slog.Logger
	// Engine is the index's storage engine, EngineBbolt or EnginePebble.
	// A directory that has an index keeps its engine: naming the other is
	// an error (ErrEngineMismatch). Empty: the directory's, or for a new
	// directory NewEngine.
	Engine string
	// NewEngine is the engine of a directory with no index when Engine is
	// empty; it never changes an existing index's. notarize-ledger fills
	// it with the engine of the verifiable index beside it if there is one,
	// else $NOTARIZE_LEDGER_INDEX_ENGINE, else EnginePebble. Empty:
	// EngineBbolt, the driver's own default.
	NewEngine string
}

// Validate reports whether c can be used.
func (c Config) Validate() error {
	if c.Dir == "" {
		return errors.New("posix storage: Dir is required")
	}
	switch c.Engine {
	case "", EngineBbolt, EnginePebble:
	default:
		return fmt.Errorf("posix storage: index engine %q: want %q or %q", c.Engine, EngineBbolt, EnginePebble)
	}
	switch c.NewEngine {
	case "", EngineBbolt, EnginePebble:
	default:
		return fmt.Errorf("posix storage: engine of a new directory %q: want %q or %q", c.NewEngine, EngineBbolt, EnginePebble)
	}
	return nil
}

// indexCloser is an index the storage opened and closes.
type indexCloser interface {
	storage.Index
	close() error
}

// DirEngine returns the index engine of the data directory dir: bbolt if
// it holds IndexFile, pebble if it holds IndexDir, "" if neither. Both is
// an error: a migration (migrate-index) was interrupted after the new
// index was complete; running it again finishes it.
func DirEngine(dir string) (string, error) {
	bolt, err := exists(filepath.Join(dir, IndexFile))
	if err != nil {
		return "", err
	}
	peb, err := exists(filepath.Join(dir, IndexDir))
	if err != nil {
		return "", err
	}
	switch {
	case bolt && peb:
		return "", fmt.Errorf("%s holds both %s and %s: an index migration was interrupted; run notarize-ledger migrate-index --data %s --to %s again to finish it",
			dir, IndexFile, IndexDir, dir, EnginePebble)
	case bolt:
		return EngineBbolt, nil
	case peb:
		return EnginePebble, nil
	}
	return "", nil
}

// exists reports whether path exists. Its error is os.Stat's, which
// names the operation and the path; callers add their own context.
func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

// engineOf picks the engine New opens in dir.
func engineOf(cfg Config) (string, error) {
	have, err := DirEngine(cfg.Dir)
	if err != nil {
		return "", err
	}
	switch {
	case have != "" && cfg.Engine != "" && cfg.Engine != have:
		return "", fmt.Errorf("%w: %s holds a %s index, not %s; stop the ledger and run notarize-ledger migrate-index --data %s --to %s, or omit --index-engine",
			ErrEngineMismatch, cfg.Dir, have, cfg.Engine, cfg.Dir, cfg.Engine)
	case have != "":
		return have, nil
	case cfg.Engine != "":
		return cfg.Engine, nil
	}
	if cfg.NewEngine != "" {
		return cfg.NewEngine, nil // checked by Validate
	}
	return EngineBbolt, nil
}

// Storage is the POSIX driver; it implements storage.Storage.
type Storage struct {
	storage.Local
	dir    string
	driver tessera.Driver
	index  indexCloser
	engine string
}

var _ storage.Storage = (*Storage)(nil)

// New opens (creating if needed) the ledger's storage in cfg.Dir. It fails
// fast if another process holds the directory.
func New(ctx context.Context, cfg Config) (*Storage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, logDirName), 0o700); err != nil {
		return nil, fmt.Errorf("posix storage: %w", err)
	}
	engine, err := engineOf(cfg)
	if err != nil {
		return nil, fmt.Errorf("posix storage: %w", err)
	}
	// The index database is opened first: its lock keeps a second process
	// out of the data directory.
	var idx indexCloser
	if engine == EnginePebble {
		idx, err = openPebbleIndex(filepath.Join(cfg.Dir, IndexDir), cfg.Logger)
	} else {
		idx, err = openIndex(filepath.Join(cfg.Dir, IndexFile), cfg.Logger)
	}
	if err != nil {
		return nil, fmt.Errorf("posix storage: %w", err)
	}
	driver, err := tposix.New(ctx, tposix.Config{Path: filepath.Join(cfg.Dir, logDirName)})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("posix storage: %w", err), idx.close())
	}
	return &Storage{dir: cfg.Dir, driver: driver, index: idx, engine: engine}, nil
}

// IndexEngine returns the engine of the open index, EngineBbolt or
// EnginePebble; the ledger keeps the verifiable map of a new directory in
// the same engine.
func (s *Storage) IndexEngine() string { return s.engine }

// Dir returns the data directory, where other parts of the ledger may
// keep files of their own (each its own file, opened after New).
func (s *Storage) Dir() string { return s.dir }

// Driver implements storage.Storage.
func (s *Storage) Driver() tessera.Driver { return s.driver }

// Index implements storage.Storage.
func (s *Storage) Index() storage.Index { return s.index }

// String implements storage.Storage.
func (s *Storage) String() string {
	if s.engine == EnginePebble {
		return "index " + filepath.Join(s.dir, IndexDir)
	}
	return "index " + filepath.Join(s.dir, IndexFile)
}

// Close implements storage.Storage.
func (s *Storage) Close() error { return s.index.close() }

// Identity implements storage.Storage: it loads (or, on first start,
// creates) the note key and origin kept in the directory, checks them
// against the configured ones and against an existing checkpoint, and
// writes ledger.pub and origin. signerKey empty means Dir/ledger.key,
// generated on first start (named origin, or a default of its own).
func (s *Storage) Identity(_ context.Context, origin, signerKey string) (*storage.Identity, error) {
	dir := s.dir
	persisted, err := readTrimmed(filepath.Join(dir, originFileName))
	if err != nil {
		return nil, err
	}
	skey := signerKey
	if skey == "" {
		if skey, err = readTrimmed(filepath.Join(dir, KeyFile)); err != nil {
			return nil, err
		}
	}
	if skey == "" {
		if origin == "" {
			origin = persisted
		}
		if skey, err = storage.GenerateSignerKey(origin); err != nil {
			return nil, err
		}
		if err := atomicfile.Write(filepath.Join(dir, KeyFile), []byte(skey+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	id, err := storage.NewIdentity(skey, origin)
	if err != nil {
		return nil, err
	}
	if persisted != "" && persisted != id.Origin() {
		return nil, fmt.Errorf("%w: %s holds origin %q, but the note key is named %q", storage.ErrIdentityMismatch, filepath.Join(dir, originFileName), persisted, id.Origin())
	}
	cpPath := filepath.Join(dir, logDirName, layout.CheckpointPath)
	if cp, err := os.ReadFile(cpPath); err == nil {
		if err := id.CheckCheckpoint(cp, cpPath); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	if persisted == "" {
		if err := atomicfile.Write(filepath.Join(dir, originFileName), []byte(id.Origin()+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	if old, err := readTrimmed(filepath.Join(dir, PubFile)); err != nil || old != id.VerifierKey {
		if err := atomicfile.Write(filepath.Join(dir, PubFile), []byte(id.VerifierKey+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	return id, nil
}

// readTrimmed returns the file's content without surrounding space, or ""
// when the file does not exist.
func readTrimmed(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}
