package ledgerclient

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/notarize/docker-notarize/internal/atomicfile"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/notarize/docker-notarize/internal/boundedfile"
)

// Files under Config.Home:
//
//	ledgers/pins.json              {"pins": {"<ledger URL>": "<verifier key>"}}
//	ledgers/pins.lock              flock(2) lock for pins.json
//	ledgers/<origin>/checkpoint    last verified checkpoint (signed note) of that log
//	ledgers/<origin>/lock          flock(2) lock for checkpoint
//
// Every write is atomic (temporary file, fsync, rename, fsync of the
// directory) and done under the lock, after re-reading the file.
const (
	stateDir       = "ledgers"
	pinsFile       = "pins.json"
	pinsLock       = "pins.lock"
	checkpointFile = "checkpoint"
	lockFile       = "lock"

	maxPinsSize = 1 << 20
	lockPoll    = 5 * time.Millisecond
)

// store keeps the client's state on disk. It holds no mutable state itself:
// every call goes to the files, so separate processes sharing a home agree.
type store struct {
	dir string // <home>/ledgers
}

func newStore(home string) *store {
	return &store{dir: filepath.Join(home, stateDir)}
}

// safeName turns a log origin into a directory name: the origin's harmless
// characters, for people, and a hash of the whole origin, for uniqueness.
func safeName(origin string) string {
	var b strings.Builder
	for _, r := range origin {
		if b.Len() >= 64 {
			break
		}
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	sum := sha256.Sum256([]byte(origin))
	return strings.TrimLeft(b.String(), ".") + "-" + hex.EncodeToString(sum[:6])
}

func (s *store) checkpointPath(origin string) string {
	return filepath.Join(s.dir, safeName(origin), checkpointFile)
}

// readCheckpoint returns the stored checkpoint of origin, or nil when there
// is none. It does not verify it.
func (s *store) readCheckpoint(origin string) ([]byte, error) {
	b, err := boundedfile.Read(s.checkpointPath(origin), MaxCheckpointSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read client state: %w", err)
	}
	return b, nil
}

// writeCheckpoint replaces the stored checkpoint of origin atomically. Call
// it with the origin's lock held.
func (s *store) writeCheckpoint(origin string, raw []byte) error {
	if err := atomicfile.Write(s.checkpointPath(origin), raw, 0o644); err != nil {
		return fmt.Errorf("write client state: %w", err)
	}
	return nil
}

// lockOrigin takes the exclusive lock of origin's state.
func (s *store) lockOrigin(ctx context.Context, origin string) (unlock func(), err error) {
	return lockPath(ctx, filepath.Join(s.dir, safeName(origin), lockFile))
}

type pinsDoc struct {
	Pins map[string]string `json:"pins"`
}

func (s *store) readPins() (map[string]string, error) {
	b, err := boundedfile.Read(filepath.Join(s.dir, pinsFile), maxPinsSize)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pinned ledger keys: %w", err)
	}
	var doc pinsDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("read pinned ledger keys %s: %w", filepath.Join(s.dir, pinsFile), err)
	}
	if doc.Pins == nil {
		doc.Pins = map[string]string{}
	}
	return doc.Pins, nil
}

// pin returns the verifier key pinned for the ledger at url.
func (s *store) pin(url string) (string, bool, error) {
	pins, err := s.readPins()
	if err != nil {
		return "", false, err
	}
	k, ok := pins[url]
	return k, ok, nil
}

// setPin pins key for url unless another key is pinned already (perhaps by
// another process meanwhile), and returns the key pinned in the end.
func (s *store) setPin(ctx context.Context, url, key string) (string, error) {
	unlock, err := lockPath(ctx, filepath.Join(s.dir, pinsLock))
	if err != nil {
		return "", err
	}
	defer unlock()
	pins, err := s.readPins()
	if err != nil {
		return "", err
	}
	if k, ok := pins[url]; ok {
		return k, nil
	}
	pins[url] = key
	b, err := json.MarshalIndent(pinsDoc{Pins: pins}, "", "  ")
	if err != nil {
		return "", fmt.Errorf("pin ledger key: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(s.dir, pinsFile), append(b, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("pin ledger key: %w", err)
	}
	return key, nil
}

// lockPath takes an exclusive flock(2) on path, creating it and its directory
// if needed, polling so that ctx can cancel the wait.
func lockPath(ctx context.Context, path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("lock client state: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock client state: %w", err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() {
				_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
				_ = f.Close()
			}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("lock client state %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("lock client state %s: %w", path, context.Cause(ctx))
		case <-time.After(lockPoll):
		}
	}
}
