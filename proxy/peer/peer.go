// Package peer lets a notarize-proxy compare its view of the ledger with
// other proxies' (notarize-proxy --peer URL): it fetches each peer's latest
// verified checkpoint from /notarize/v1/checkpoint and has the proxy's own
// ledger client check it (ledgerclient.Client.CompareCheckpoint: the
// ledger's key, the witness quorum, and a consistency proof with the
// proxy's own checkpoint). A ledger that shows two proxies two histories is
// caught as soon as they compare, even if a quorum of witnesses colluded;
// the evidence is logged and the proxy fails closed (OnFork). A peer that
// cannot be reached, or serves nothing verifiable, is logged and proves
// nothing.
package peer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/notarize/docker-notarize/ledgerclient"
)

// Path is where a proxy serves its latest verified checkpoint.
const Path = "/notarize/v1/checkpoint"

// DefaultInterval is the pause between two comparisons with every peer.
const DefaultInterval = 30 * time.Second

// Comparer is what checks a peer's checkpoint: a *ledgerclient.Client.
type Comparer interface {
	CompareCheckpoint(ctx context.Context, raw []byte) (ledgerclient.Checkpoint, error)
}

var _ Comparer = (*ledgerclient.Client)(nil)

// Config configures a Checker.
type Config struct {
	// Peers are the other proxies' base URLs (http or https); user
	// information in a URL is sent as basic authentication.
	Peers []string
	// Ledger is this proxy's own verifying ledger client; required.
	Ledger Comparer
	// OnFork receives the evidence of a fork (fail closed:
	// replica.Replica.ReportFork); required.
	OnFork func(error)
	// HTTPClient fetches the peers' checkpoints; default: a client with a
	// 30 s timeout.
	HTTPClient *http.Client
	// Interval is the pause between comparisons; default DefaultInterval.
	Interval time.Duration
	// Logger receives the comparisons' failures and the fork evidence;
	// default: discard.
	Logger *slog.Logger
}

// Checker compares this proxy's view of the ledger with its peers'.
type Checker struct {
	cfg   Config
	peers []*url.URL
}

// New checks cfg and returns a Checker.
func New(cfg Config) (*Checker, error) {
	if cfg.Ledger == nil || cfg.OnFork == nil {
		return nil, errors.New("peer: Ledger and OnFork are required")
	}
	c := &Checker{cfg: cfg}
	for _, p := range cfg.Peers {
		u, err := url.Parse(p)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("peer %q: want http(s)://[user:password@]host[:port][/path]", redacted(p))
		}
		c.peers = append(c.peers, u)
	}
	if c.cfg.HTTPClient == nil {
		c.cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if c.cfg.Interval <= 0 {
		c.cfg.Interval = DefaultInterval
	}
	if c.cfg.Logger == nil {
		c.cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Run compares with every peer every Interval until ctx is done.
func (c *Checker) Run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_ = c.Check(ctx)
		t.Reset(c.cfg.Interval)
	}
}

// Check compares with every peer once. It returns the first fork found
// (already reported to OnFork and logged), or nil; other failures are only
// logged.
func (c *Checker) Check(ctx context.Context) error {
	var fork error
	for _, p := range c.peers {
		err := c.compare(ctx, p)
		switch {
		case err == nil:
		case isFork(err):
			c.cfg.Logger.LogAttrs(ctx, slog.LevelError, "SECURITY ERROR: the ledger shows a peer proxy a history inconsistent with ours; failing closed",
				slog.String("peer", p.Redacted()), slog.String("evidence", err.Error()))
			c.cfg.OnFork(fmt.Errorf("peer %s: %w", p.Redacted(), err))
			if fork == nil {
				fork = err
			}
		default:
			c.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "could not compare the ledger's checkpoint with a peer proxy's",
				slog.String("peer", p.Redacted()), slog.String("error", err.Error()))
		}
	}
	return fork
}

// isFork reports whether err is evidence of two inconsistent histories
// signed by the ledger, as opposed to a failure to compare.
func isFork(err error) bool {
	var fe *ledgerclient.ForkError
	return errors.As(err, &fe) || errors.Is(err, ledgerclient.ErrBadProof)
}

// compare fetches p's checkpoint and has the ledger client compare it.
func (c *Checker) compare(ctx context.Context, p *url.URL) error {
	u := *p
	u.User = nil
	u.Path = strings.TrimSuffix(u.Path, "/") + Path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	if p.User != nil {
		pw, _ := p.User.Password()
		req.SetBasicAuth(p.User.Username(), pw)
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, ledgerclient.MaxCheckpointSize+1))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, b)
	}
	if len(b) > ledgerclient.MaxCheckpointSize {
		return fmt.Errorf("checkpoint over %d bytes", ledgerclient.MaxCheckpointSize)
	}
	_, err = c.cfg.Ledger.CompareCheckpoint(ctx, b)
	return err
}

// redacted hides a password in a URL that did not parse.
func redacted(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		return "…" + s[i:]
	}
	return s
}
