package ledgerclient

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/sys/unix"

	"github.com/notarize/docker-notarize/internal/atomicfile"
	"github.com/notarize/docker-notarize/internal/boundedfile"
)

// Files under Config.Home:
//
//	ledgers/pins.json              {"pins": {"<ledger URL>": "<verifier key>"}}
//	ledgers/pins.lock              flock(2) lock for pins.json
//	ledgers/<origin>-<key>/key         the verifier key the state belongs to
//	ledgers/<origin>-<key>/checkpoint  last verified checkpoint (signed note) of that log under that key
//	ledgers/<origin>-<key>/lock        flock(2) lock for checkpoint
//
// The state of a log is keyed by its origin AND its verifier key: a ledger
// that was reset, or another ledger with the same origin, is another log,
// whose state does not collide with the old one's. A state directory of
// earlier versions, ledgers/<origin>/checkpoint, is moved to the keyed one
// when it verifies under the key in use, and left alone (as evidence)
// otherwise.
//
// Every write is atomic (temporary file, fsync, rename, fsync of the
// directory) and done under the lock, after re-reading the file.
const (
	stateDir       = "ledgers"
	pinsFile       = "pins.json"
	pinsLock       = "pins.lock"
	checkpointFile = "checkpoint"
	keyFile        = "key"
	lockFile       = "lock"

	maxPinsSize = 1 << 20
	maxKeySize  = 4 << 10
	lockPoll    = 5 * time.Millisecond
)

// store keeps the client's state on disk. It holds no state of its own but
// its locks: every call goes to the files, so separate processes sharing a
// home agree.
type store struct {
	dir string // <home>/ledgers
	// locks serializes, within this client, the holders of each state lock
	// (path → chan struct{} of capacity 1): goroutines wait on a channel,
	// woken as soon as the lock is free, instead of polling flock(2), which
	// only other processes need (a parallel audit's lookups contended on
	// that poll).
	locks sync.Map
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

// keyOrigin returns the name of the verifier key vkey: the log origin.
func keyOrigin(vkey string) string {
	name, _, _ := strings.Cut(vkey, "+")
	return name
}

// stateName is the directory name of the state of the log signed by the
// verifier key vkey: its origin's safeName and a hash of the whole key.
func stateName(vkey string) string {
	sum := sha256.Sum256([]byte(vkey))
	return safeName(keyOrigin(vkey)) + "-" + hex.EncodeToString(sum[:8])
}

// checkpointPath is the stored checkpoint of the log signed by vkey.
func (s *store) checkpointPath(vkey string) string {
	return filepath.Join(s.dir, stateName(vkey), checkpointFile)
}

// legacyPath is where earlier versions stored the checkpoint of origin,
// whatever the key.
func (s *store) legacyPath(origin string) string {
	return filepath.Join(s.dir, safeName(origin), checkpointFile)
}

// readCheckpoint returns the stored checkpoint of the log signed by vkey,
// or nil when there is none. It does not verify it (but a legacy state is
// only taken over when it verifies under vkey).
func (s *store) readCheckpoint(vkey string) ([]byte, error) {
	b, err := boundedfile.Read(s.checkpointPath(vkey), MaxCheckpointSize)
	if errors.Is(err, fs.ErrNotExist) {
		return s.migrate(vkey)
	}
	if err != nil {
		return nil, fmt.Errorf("read client state: %w", err)
	}
	return b, nil
}

// migrate takes over the legacy state of vkey's origin when it verifies
// under vkey: it is hard-linked to the keyed path (which fails, and so
// changes nothing, when another process made the keyed state meanwhile)
// and then removed. A legacy state that does not verify under vkey belongs
// to another key and stays where it is. It returns the keyed state.
func (s *store) migrate(vkey string) ([]byte, error) {
	origin := keyOrigin(vkey)
	legacy := s.legacyPath(origin)
	raw, err := boundedfile.Read(legacy, MaxCheckpointSize)
	if err != nil {
		return nil, nil // no legacy state (or none readable): nothing to take over
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, nil
	}
	if _, err := verifyCheckpoint(raw, origin, v); err != nil {
		return nil, nil
	}
	path := s.checkpointPath(vkey)
	if err := s.writeKey(vkey); err != nil {
		return nil, err
	}
	if err := os.Link(legacy, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("move client state %s to %s: %w", legacy, path, err)
	}
	_ = os.Remove(legacy) // now under the keyed path; a leftover is harmless
	b, err := boundedfile.Read(path, MaxCheckpointSize)
	if err != nil {
		return nil, fmt.Errorf("read client state: %w", err)
	}
	return b, nil
}

// writeKey records vkey in its state directory, creating it.
func (s *store) writeKey(vkey string) error {
	path := filepath.Join(s.dir, stateName(vkey), keyFile)
	if b, err := boundedfile.Read(path, maxKeySize); err == nil && strings.TrimSpace(string(b)) == vkey {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write client state: %w", err)
	}
	if err := atomicfile.Write(path, []byte(vkey+"\n"), 0o644); err != nil {
		return fmt.Errorf("write client state: %w", err)
	}
	return nil
}

// writeCheckpoint replaces the stored checkpoint of the log signed by vkey
// atomically. Call it with the state's lock held.
func (s *store) writeCheckpoint(vkey string, raw []byte) error {
	if err := s.writeKey(vkey); err != nil {
		return err
	}
	if err := atomicfile.Write(s.checkpointPath(vkey), raw, 0o644); err != nil {
		return fmt.Errorf("write client state: %w", err)
	}
	return nil
}

// lockState takes the exclusive lock of the state of the log signed by vkey.
func (s *store) lockState(ctx context.Context, vkey string) (unlock func(), err error) {
	return s.lockPath(ctx, filepath.Join(s.dir, stateName(vkey), lockFile))
}

// otherKeyState returns the path of a checkpoint stored for vkey's origin
// under another key, or "" when there is none: a legacy state that does not
// verify under vkey, or a keyed state of another key of the same name.
func (s *store) otherKeyState(vkey string) (string, error) {
	origin := keyOrigin(vkey)
	if _, err := os.Stat(s.legacyPath(origin)); err == nil {
		if raw, _ := s.migrate(vkey); raw == nil {
			return s.legacyPath(origin), nil
		}
	}
	states, err := s.states()
	if err != nil {
		return "", err
	}
	for _, st := range states {
		if keyOrigin(st.vkey) == origin && st.vkey != vkey && st.hasCheckpoint {
			return filepath.Join(s.dir, st.name, checkpointFile), nil
		}
	}
	return "", nil
}

// state is one keyed state directory.
type state struct {
	name          string // directory name under ledgers/
	vkey          string
	hasCheckpoint bool
}

// states lists the keyed state directories (those that name their key).
func (s *store) states() ([]state, error) {
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read client state: %w", err)
	}
	var out []state
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		b, err := boundedfile.Read(filepath.Join(s.dir, e.Name(), keyFile), maxKeySize)
		if err != nil {
			continue // a legacy state, or not ours
		}
		vkey := strings.TrimSpace(string(b))
		if stateName(vkey) != e.Name() {
			continue
		}
		_, err = os.Stat(filepath.Join(s.dir, e.Name(), checkpointFile))
		out = append(out, state{name: e.Name(), vkey: vkey, hasCheckpoint: err == nil})
	}
	return out, nil
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
	pinned := key
	err := s.updatePins(ctx, func(pins map[string]string) bool {
		if k, ok := pins[url]; ok {
			pinned = k
			return false
		}
		pins[url] = key
		return true
	})
	return pinned, err
}

// updatePins reads the pins under their lock, lets change edit them and
// writes them back atomically when change reports a change.
func (s *store) updatePins(ctx context.Context, change func(pins map[string]string) bool) error {
	unlock, err := s.lockPath(ctx, filepath.Join(s.dir, pinsLock))
	if err != nil {
		return err
	}
	defer unlock()
	pins, err := s.readPins()
	if err != nil {
		return err
	}
	if !change(pins) {
		return nil
	}
	b, err := json.MarshalIndent(pinsDoc{Pins: pins}, "", "  ")
	if err != nil {
		return fmt.Errorf("pin ledger key: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(s.dir, pinsFile), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("pin ledger key: %w", err)
	}
	return nil
}

// lockPath takes the exclusive lock at path: first this client's own (see
// store.locks), then flock(2) for other processes; ctx cancels either wait.
func (s *store) lockPath(ctx context.Context, path string) (func(), error) {
	v, _ := s.locks.LoadOrStore(path, make(chan struct{}, 1))
	local := v.(chan struct{})
	select {
	case local <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("lock client state %s: %w", path, context.Cause(ctx))
	}
	unlock, err := flockPath(ctx, path)
	if err != nil {
		<-local
		return nil, err
	}
	return func() { unlock(); <-local }, nil
}

// flockPath takes an exclusive flock(2) on path, creating it and its
// directory if needed, polling so that ctx can cancel the wait.
func flockPath(ctx context.Context, path string) (func(), error) {
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
