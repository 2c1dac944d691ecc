package ledgerclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"time"

	"github.com/transparency-dev/tessera/client"
	"golang.org/x/mod/sumdb/note"

	"github.com/notarize/docker-notarize/ledger/api"
)

// Client talks to one ledger and verifies everything it answers. It is safe
// for concurrent use, also with other processes sharing its Home.
type Client struct {
	url      string // normalized; the key of the pin
	ops      ops
	store    *store
	verifier note.Verifier
	vkey     string
	timeout  time.Duration
	log      *slog.Logger
	// witnesses and maxAge check each checkpoint the ledger shows (witness.go).
	witnesses *WitnessPolicy
	maxAge    time.Duration
	// maxLag is Config.MaxIndexLag: how old a map root may be for the
	// anchored check (vindex.go); 0 reads every tail.
	maxLag time.Duration
	now    func() time.Time
	// fetches shares the tail's bundle and tile reads between lookups (fetchcache.go).
	fetches fetchCache
}

// New returns a client for the ledger at cfg.URL. With a verifier key
// configured or pinned it makes no request; otherwise it fetches the ledger's
// info and latest checkpoint, checks the checkpoint under the announced key,
// pins that key under cfg.Home and stores the checkpoint (trust on first
// use).
func New(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ledger client: %w", err)
	}
	cfg = cfg.withDefaults()
	u, _ := parseLedgerURL(cfg.URL)
	o, err := newHTTPOps(u, cfg.HTTPClient, cfg.UserAgent)
	if err == nil && cfg.MaxIndexLag > 0 {
		o.anchor = true // no tail in answers whose root is recent (vindex.go)
	}
	if err != nil {
		return nil, fmt.Errorf("ledger client: %w", err)
	}
	c, err := newClient(ctx, cfg, u.String(), o)
	if err != nil {
		return nil, fmt.Errorf("ledger client for %s: %w", u.Redacted(), err)
	}
	return c, nil
}

// Known reports whether New makes a client for cfg's ledger without
// trusting on first use: a verifier key is configured, or one is pinned
// for the ledger's URL under cfg.Home. It makes no request. A caller that
// should not pin a key before it knows it needs the ledger (docker
// notarize verify, before the registry has answered) asks it first.
func Known(cfg Config) bool {
	if cfg.Validate() != nil {
		return false
	}
	if cfg.VerifierKey != "" {
		return true
	}
	cfg = cfg.withDefaults()
	u, err := parseLedgerURL(cfg.URL)
	if err != nil {
		return false
	}
	_, ok, err := newStore(cfg.Home).pin(u.String())
	return err == nil && ok
}

// newClient resolves the verifier key (configured, pinned or first use) for
// the ledger known as url, reached through o. cfg has its defaults.
func newClient(ctx context.Context, cfg Config, url string, o ops) (*Client, error) {
	c := &Client{url: url, ops: o, store: newStore(cfg.Home), timeout: cfg.Timeout, log: cfg.Logger,
		witnesses: cfg.WitnessPolicy, maxAge: cfg.MaxWitnessAge, maxLag: cfg.MaxIndexLag, now: time.Now}
	pinned, ok, err := c.store.pin(url)
	if err != nil {
		return nil, err
	}
	key := cfg.VerifierKey
	switch {
	case key != "":
		if err := c.witnesses.checkLogKey(url, key, "configured"); err != nil {
			return nil, err
		}
		if ok && pinned != key {
			c.log.WarnContext(ctx, "configured ledger key differs from the key pinned for this ledger; using the configured one",
				"ledger", url, "configured", key, "pinned", pinned)
		}
	case ok:
		if err := c.witnesses.checkLogKey(url, pinned, "pinned"); err != nil {
			return nil, fmt.Errorf("%w. %s", err, changedKeyAdvice(url))
		}
		key = pinned
	default:
		if err := c.trustOnFirstUse(ctx); err != nil {
			return nil, err
		}
		return c, nil
	}
	v, err := note.NewVerifier(key)
	if err != nil {
		return nil, fmt.Errorf("ledger verifier key %q: %w", clip(key, 200), err)
	}
	c.verifier, c.vkey = newMemoVerifier(v, noteVerifier+key), key
	return c, nil
}

// trustOnFirstUse takes the ledger's announced key, checks the ledger's
// latest checkpoint under it, pins it and stores the checkpoint.
func (c *Client) trustOnFirstUse(ctx context.Context) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	b, err := c.ops.Info(ctx)
	if err != nil {
		return fmt.Errorf("ledger info: %w", err)
	}
	var info api.Info
	if err := json.Unmarshal(b, &info); err != nil {
		return fmt.Errorf("ledger info: %w", err)
	}
	v, err := note.NewVerifier(info.VerifierKey)
	if err != nil {
		return fmt.Errorf("ledger info: verifier key %q: %w", clip(info.VerifierKey, 200), err)
	}
	if info.Origin != v.Name() {
		return fmt.Errorf("ledger info: origin %q is not the name of its verifier key %q", clip(info.Origin, 200), v.Name())
	}
	// A witness policy that names the ledger's key ties the key to the
	// log the witnesses cosign; without one, the quorum vouches for the
	// checkpoint's text, not for who signed it.
	if err := c.witnesses.checkLogKey(c.url, info.VerifierKey, "announced"); err != nil {
		return err
	}
	c.verifier, c.vkey = newMemoVerifier(v, noteVerifier+info.VerifierKey), info.VerifierKey
	// The state stored before the checkpoint is fetched: one stored
	// meanwhile by a concurrent client is not a rollback (see advance).
	before, err := c.stored()
	if err != nil {
		return err
	}
	cp, err := c.fetchCheckpoint(ctx)
	if err != nil {
		return err
	}
	// A state stored for this origin under another key refuses the key:
	// only the user may trust a new key for a log known under another.
	if other, err := c.store.otherKeyState(c.vkey); err != nil {
		return err
	} else if other != "" {
		return fmt.Errorf("%w: the ledger at %s announces key %q, but this client holds a checkpoint of the log %q signed by another key (%s). %s",
			ErrKeyMismatch, c.url, info.VerifierKey, c.Origin(), other, changedKeyAdvice(c.url))
	}
	pinned, err := c.store.setPin(ctx, c.url, info.VerifierKey)
	if err != nil {
		return err
	}
	if pinned != info.VerifierKey {
		return fmt.Errorf("%w: meanwhile %q was pinned for the ledger at %s, which now announces %q. %s", ErrKeyMismatch, pinned, c.url, info.VerifierKey, changedKeyAdvice(c.url))
	}
	c.log.InfoContext(ctx, "pinned ledger key on first use", "ledger", c.url, "key", info.VerifierKey)
	if plainRemote(c.url) {
		c.log.WarnContext(ctx, "the ledger key was pinned on first use over plain http to a remote host: anyone on the network path could have put theirs in its place; compare it with the ledger's ledger.pub, or configure the key instead",
			"ledger", c.url, "key", info.VerifierKey)
	}
	return c.advance(ctx, cp, before)
}

// plainRemote reports whether the ledger URL u is plain http to a host other
// than localhost or a loopback address.
func plainRemote(u string) bool {
	pu, err := url.Parse(u)
	if err != nil || pu.Scheme != "http" {
		return false
	}
	h := pu.Hostname()
	if h == "localhost" {
		return false
	}
	ip, err := netip.ParseAddr(h)
	return err != nil || !ip.IsLoopback()
}

// Origin returns the ledger's log origin: the name of its verifier key.
func (c *Client) Origin() string { return c.verifier.Name() }

// VerifierKey returns the ledger's verifier key this client checks
// checkpoints with (configured, pinned, or pinned on first use).
func (c *Client) VerifierKey() string { return c.vkey }

// Latest fetches the ledger's checkpoint, verifies it and its consistency
// with the stored one, and stores it if it is newer. A checkpoint that does
// not extend the stored one is a *ForkError.
func (c *Client) Latest(ctx context.Context) (Checkpoint, error) {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	before, err := c.stored()
	if err != nil {
		return Checkpoint{}, fmt.Errorf("latest checkpoint: %w", err)
	}
	cp, err := c.fetchCheckpoint(ctx)
	if err == nil {
		err = c.advance(ctx, cp, before)
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("latest checkpoint: %w", err)
	}
	return cp, nil
}

// fetchCheckpoint fetches the ledger's latest checkpoint and verifies it.
func (c *Client) fetchCheckpoint(ctx context.Context) (Checkpoint, error) {
	var raw []byte
	fetched := false
	fetch := func(ctx context.Context) ([]byte, error) {
		b, err := c.ops.ReadCheckpoint(ctx)
		if err != nil {
			return nil, err
		}
		if len(b) > MaxCheckpointSize {
			return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadCheckpoint, len(b), MaxCheckpointSize)
		}
		raw, fetched = b, true
		return b, nil
	}
	lc, _, _, err := client.FetchCheckpoint(ctx, fetch, c.verifier, c.Origin())
	if err != nil {
		if !fetched {
			return Checkpoint{}, fmt.Errorf("fetch checkpoint: %w", err)
		}
		return Checkpoint{}, c.explain(ctx, checkpointError(raw, c.verifier, err))
	}
	return c.witnessed(checkedCheckpoint(lc, raw))
}

// checkpoint verifies a checkpoint the ledger sent inside an API answer.
func (c *Client) checkpoint(ctx context.Context, raw []byte) (Checkpoint, error) {
	cp, err := verifyCheckpoint(raw, c.Origin(), c.verifier)
	if err != nil {
		return Checkpoint{}, c.explain(ctx, err)
	}
	return c.witnessed(cp, nil)
}

// explain turns a checkpoint without a signature by the pinned key into
// ErrKeyMismatch when the ledger announces another key or the checkpoint is
// signed for the origin by another key. The ledger's info is only used to
// word the error.
func (c *Client) explain(ctx context.Context, err error) error {
	var un *errUnverifiedNote
	if !errors.As(err, &un) {
		return err
	}
	if b, ierr := c.ops.Info(ctx); ierr == nil {
		var info api.Info
		if json.Unmarshal(b, &info) == nil && info.VerifierKey != "" && info.VerifierKey != c.vkey {
			return fmt.Errorf("%w: %w: the key pinned for the ledger at %s is %q, but the ledger now announces %q. %s",
				ErrKeyMismatch, ErrBadCheckpoint, c.url, c.vkey, clip(info.VerifierKey, 200), changedKeyAdvice(c.url))
		}
	}
	for _, s := range un.sigs {
		if s.Name == c.Origin() && s.Hash != c.verifier.KeyHash() {
			return fmt.Errorf("%w: %w: the key pinned for the ledger at %s is %q (hash %08x), but its checkpoint is signed by key hash %08x. %s",
				ErrKeyMismatch, ErrBadCheckpoint, c.url, c.vkey, c.verifier.KeyHash(), s.Hash, changedKeyAdvice(c.url))
		}
	}
	return err
}

// stored returns the stored checkpoint of the ledger's origin, verified, or
// nil when there is none.
func (c *Client) stored() (*Checkpoint, error) {
	raw, err := c.store.readCheckpoint(c.vkey)
	if err != nil || raw == nil {
		return nil, err
	}
	cp, err := verifyCheckpoint(raw, c.Origin(), c.verifier)
	if err != nil {
		path := c.store.checkpointPath(c.vkey)
		var un *errUnverifiedNote
		if errors.As(err, &un) {
			return nil, fmt.Errorf("%w: the stored checkpoint %s of %q is not signed by the key it is kept for, %q: something other than this client changed it; it is left as evidence (move it away only once you know why)",
				ErrKeyMismatch, path, c.Origin(), c.vkey)
		}
		return nil, fmt.Errorf("stored checkpoint %s: %w", path, err)
	}
	return &cp, nil
}

// advance makes got the stored checkpoint if it extends the stored one.
// before is the stored checkpoint read before got was fetched: a got smaller
// than what was known when asking is a rollback. With before nil, a smaller
// got only has to be a prefix of the stored tree. Under the lock the state is
// read again, since another client sharing the home may have advanced it;
// got must then be consistent with that one too. The state never moves
// backwards and is left untouched on any error.
func (c *Client) advance(ctx context.Context, got Checkpoint, before *Checkpoint) error {
	if before != nil && got.Size < before.Size {
		return &ForkError{Stored: *before, Got: got, Err: errRollback}
	}
	unlock, err := c.store.lockState(ctx, c.vkey)
	if err != nil {
		return err
	}
	defer unlock()
	now, err := c.stored()
	if err != nil {
		return err
	}
	switch {
	case now == nil:
	case got.Size <= now.Size:
		// Another client advanced the state meanwhile (or nothing changed):
		// got must be a prefix of it; the state stays.
		return checkConsistency(ctx, c.ops.ReadTile, got, *now, false)
	default:
		if err := checkConsistency(ctx, c.ops.ReadTile, *now, got, true); err != nil {
			return err
		}
	}
	if err := c.store.writeCheckpoint(c.vkey, got.Raw); err != nil {
		return err
	}
	var from uint64
	if now != nil {
		from = now.Size
	}
	c.log.DebugContext(ctx, "ledger checkpoint advanced", "origin", c.Origin(), "from", from, "to", got.Size)
	return nil
}

func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.timeout)
}
