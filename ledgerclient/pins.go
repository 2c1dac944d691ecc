package ledgerclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/notarize/docker-notarize/ledger/api"
	"golang.org/x/mod/sumdb/note"
)

// changedKeyAdvice is the end of every ErrKeyMismatch about a ledger's key:
// what it may mean and the one way to trust a new key.
func changedKeyAdvice(url string) string {
	return "A changed key is exactly what an attack looks like (a ledger or a front before it showing another history); " +
		"it is also what a reset or replaced ledger looks like. Check the new key out of band (the ledger's ledger.pub, from its operator), " +
		"and only then trust it: docker notarize ledger trust " + url + " --key NEWKEY --force " +
		"(NEWKEY: the key or the ledger.pub file you checked; notarize-proxy: its --ledger-key)"
}

// ErrNotPinned is returned (wrapped) by Unpin for a ledger URL with no pin.
var ErrNotPinned = errors.New("no key pinned for this ledger")

// PinConflictError is returned by Pin when another key is pinned for the
// ledger and replacing it was not asked for.
type PinConflictError struct {
	// URL is the ledger's normalized URL.
	URL string
	// Pinned is the key pinned now; Key the one asked for.
	Pinned, Key string
}

// Error names both keys.
func (e *PinConflictError) Error() string {
	return fmt.Sprintf("the ledger at %s is pinned to key %q, not %q", e.URL, e.Pinned, e.Key)
}

// LedgerPin is a ledger key pinned in a client home, with the client's
// state of the log it signs.
type LedgerPin struct {
	// URL is the ledger's normalized URL, the key of the pin.
	URL string `json:"url"`
	// VerifierKey is the pinned signed-note verifier key.
	VerifierKey string `json:"verifierKey"`
	// Origin is the log's origin, the key's name.
	Origin string `json:"origin"`
	// Checkpoint is the last verified checkpoint stored for (Origin,
	// VerifierKey); nil when there is none.
	Checkpoint *StoredCheckpoint `json:"checkpoint,omitempty"`
	// Problem says why the stored checkpoint could not be read or verified.
	Problem string `json:"problem,omitempty"`
}

// StoredCheckpoint is a checkpoint the client verified and stored.
type StoredCheckpoint struct {
	// Size is the tree size; RootHash the tree's root hash.
	Size     uint64 `json:"size"`
	RootHash []byte `json:"rootHash"`
	// StoredAt is when the client stored it (the file's modification time).
	StoredAt time.Time `json:"storedAt"`
	// Path is the state file.
	Path string `json:"path"`
}

// NormalizeURL checks a ledger base URL and returns the form pins are kept
// under.
func NormalizeURL(ledgerURL string) (string, error) {
	u, err := parseLedgerURL(ledgerURL)
	if err != nil {
		return "", err
	}
	return u.String(), nil
}

// ListPins returns the ledger keys pinned under home, sorted by URL, each
// with its stored checkpoint (verified under the pinned key). It makes no
// request.
func ListPins(home string) ([]LedgerPin, error) {
	s := newStore(home)
	pins, err := s.readPins()
	if err != nil {
		return nil, err
	}
	out := make([]LedgerPin, 0, len(pins))
	for url, vkey := range pins {
		p := LedgerPin{URL: url, VerifierKey: vkey, Origin: keyOrigin(vkey)}
		p.Checkpoint, err = s.storedCheckpoint(vkey)
		if err != nil {
			p.Problem = err.Error()
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].URL < out[j].URL })
	return out, nil
}

// storedCheckpoint reads and verifies the stored checkpoint of vkey's log.
func (s *store) storedCheckpoint(vkey string) (*StoredCheckpoint, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("pinned key %q: %w", clip(vkey, 200), err)
	}
	raw, err := s.readCheckpoint(vkey)
	if err != nil || raw == nil {
		return nil, err
	}
	path := s.checkpointPath(vkey)
	cp, err := verifyCheckpoint(raw, v.Name(), v)
	if err != nil {
		return nil, fmt.Errorf("stored checkpoint %s: %w", path, err)
	}
	sc := &StoredCheckpoint{Size: cp.Size, RootHash: cp.Hash, Path: path}
	if fi, err := os.Stat(path); err == nil {
		sc.StoredAt = fi.ModTime().UTC()
	}
	return sc, nil
}

// Pin pins the verifier key for the ledger at ledgerURL under home. When
// another key is pinned it returns a *PinConflictError, unless replace is
// set: then the old key is replaced and returned. The stored checkpoints of
// every key stay: a new key is another log, with a state of its own.
func Pin(ctx context.Context, home, ledgerURL, key string, replace bool) (previous string, err error) {
	url, err := NormalizeURL(ledgerURL)
	if err != nil {
		return "", fmt.Errorf("pin ledger key: %w", err)
	}
	if _, err := note.NewVerifier(key); err != nil {
		return "", fmt.Errorf("pin ledger key: verifier key %q: %w", clip(key, 200), err)
	}
	s := newStore(home)
	var conflict *PinConflictError
	err = s.updatePins(ctx, func(pins map[string]string) bool {
		old, ok := pins[url]
		switch {
		case ok && old == key:
			return false
		case ok && !replace:
			conflict = &PinConflictError{URL: url, Pinned: old, Key: key}
			return false
		}
		previous = old
		pins[url] = key
		return true
	})
	if err != nil {
		return "", err
	}
	if conflict != nil {
		return "", conflict
	}
	return previous, nil
}

// Unpin removes the pin of the ledger at ledgerURL under home and returns
// it. The stored checkpoint of its key is kept as evidence, unless purge is
// set and no other pin names the same key; purged lists what was removed.
func Unpin(ctx context.Context, home, ledgerURL string, purge bool) (removed LedgerPin, purged []string, err error) {
	url, err := NormalizeURL(ledgerURL)
	if err != nil {
		return LedgerPin{}, nil, fmt.Errorf("forget ledger: %w", err)
	}
	s := newStore(home)
	var key string
	shared := false
	err = s.updatePins(ctx, func(pins map[string]string) bool {
		k, ok := pins[url]
		if !ok {
			return false
		}
		key = k
		delete(pins, url)
		for _, other := range pins {
			shared = shared || other == k
		}
		return true
	})
	if err != nil {
		return LedgerPin{}, nil, err
	}
	if key == "" {
		return LedgerPin{}, nil, fmt.Errorf("forget ledger: %w: %s", ErrNotPinned, url)
	}
	removed = LedgerPin{URL: url, VerifierKey: key, Origin: keyOrigin(key)}
	removed.Checkpoint, _ = s.storedCheckpoint(key)
	if !purge || shared {
		return removed, nil, nil
	}
	dir := filepath.Join(s.dir, stateName(key))
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return removed, nil, nil
	}
	unlock, err := s.lockState(ctx, key)
	if err != nil {
		return removed, nil, err
	}
	defer unlock()
	if err := os.RemoveAll(dir); err != nil {
		return removed, nil, fmt.Errorf("forget ledger: purge %s: %w", dir, err)
	}
	return removed, []string{dir}, nil
}

// Announced fetches what the ledger at cfg.URL says about itself: its
// verifier key, and its latest checkpoint verified under cfg.VerifierKey
// (when set) or else under the announced key. It pins nothing and stores
// nothing; an error wrapping ErrKeyMismatch means the ledger does not sign
// with cfg.VerifierKey, or that cfg.WitnessPolicy names logs and the key
// (given, or else announced) is not one of them.
func Announced(ctx context.Context, cfg Config) (key string, cp Checkpoint, err error) {
	if err := cfg.Validate(); err != nil {
		return "", Checkpoint{}, fmt.Errorf("ledger client: %w", err)
	}
	cfg = cfg.withDefaults()
	u, _ := parseLedgerURL(cfg.URL)
	o, err := newHTTPOps(u, cfg.HTTPClient, cfg.UserAgent)
	if err != nil {
		return "", Checkpoint{}, fmt.Errorf("ledger client: %w", err)
	}
	c := &Client{url: u.String(), ops: o, store: newStore(cfg.Home), timeout: cfg.Timeout, log: cfg.Logger,
		witnesses: cfg.WitnessPolicy, maxAge: cfg.MaxWitnessAge, now: time.Now}
	if cfg.VerifierKey != "" {
		// Before any request: a key the witness policy rules out is
		// refused whatever the ledger (or a front) answers.
		if err := c.witnesses.checkLogKey(c.url, cfg.VerifierKey, "given"); err != nil {
			return "", Checkpoint{}, err
		}
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	b, err := o.Info(ctx)
	if err != nil {
		return "", Checkpoint{}, fmt.Errorf("ledger info from %s: %w", u.Redacted(), err)
	}
	var info api.Info
	if err := json.Unmarshal(b, &info); err != nil {
		return "", Checkpoint{}, fmt.Errorf("ledger info from %s: %w", u.Redacted(), err)
	}
	v, err := note.NewVerifier(info.VerifierKey)
	if err != nil {
		return "", Checkpoint{}, fmt.Errorf("ledger info from %s: verifier key %q: %w", u.Redacted(), clip(info.VerifierKey, 200), err)
	}
	if info.Origin != v.Name() {
		return "", Checkpoint{}, fmt.Errorf("ledger info from %s: origin %q is not the name of its verifier key %q", u.Redacted(), clip(info.Origin, 200), v.Name())
	}
	if err := c.witnesses.checkLogKey(c.url, info.VerifierKey, "announced"); err != nil {
		return info.VerifierKey, Checkpoint{}, err
	}
	c.verifier, c.vkey = v, info.VerifierKey
	if cfg.VerifierKey != "" {
		c.verifier, _ = note.NewVerifier(cfg.VerifierKey) // checked by Validate
		c.vkey = cfg.VerifierKey
	}
	cp, err = c.fetchCheckpoint(ctx)
	if err != nil {
		return info.VerifierKey, Checkpoint{}, fmt.Errorf("ledger %s: %w", u.Redacted(), err)
	}
	return info.VerifierKey, cp, nil
}
