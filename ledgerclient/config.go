package ledgerclient

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/notarize/docker-notarize/ledger/api"
)

// DefaultTimeout bounds each call whose context has no deadline.
const DefaultTimeout = time.Minute

// Config configures a Client.
type Config struct {
	// URL is the ledger's base URL, http or https; required.
	URL string
	// VerifierKey pins the ledger's checkpoint verifier key, a signed-note
	// verifier string ("name+hash+key"; its name is the log origin). When
	// empty, the key pinned under Home for URL is used; when there is none,
	// the key the ledger announces is trusted on first use and pinned.
	VerifierKey string
	// Home is the client's state directory (NOTARIZE_HOME): pinned keys and
	// the last verified checkpoint per log origin and key; required.
	Home string
	// HTTPClient sends the requests; default: a client of its own. It is
	// copied, not changed: the copy sets the User-Agent, bounds every answer
	// and follows redirects only within the ledger's host.
	HTTPClient *http.Client
	// UserAgent is sent with every request; default
	// "docker-notarize/<version of the main module>".
	UserAgent string
	// Timeout bounds each call whose context has no deadline; default
	// DefaultTimeout.
	Timeout time.Duration
	// Logger receives a record when a key is pinned and when the stored
	// checkpoint advances; default: discard.
	Logger *slog.Logger
	// WitnessPolicy, when set, makes every checkpoint the ledger shows count
	// only when a quorum of its witnesses has cosigned it (a
	// *WitnessQuorumError otherwise), and sets Checkpoint.WitnessedAt. Without
	// it, a ledger (or a front before it) can show one history to some
	// clients and another to others, and hold back new entries unnoticed.
	WitnessPolicy *WitnessPolicy
	// MaxWitnessAge, when positive (with a WitnessPolicy), refuses every
	// checkpoint whose quorum was completed longer ago with a
	// *StaleCheckpointError.
	MaxWitnessAge time.Duration
	// MaxIndexLag, when positive, lets a lookup be proven complete up to a
	// recent map root instead of up to its checkpoint (the anchored check,
	// vindex.go): when the answer's root was read by the ledger at most
	// MaxIndexLag ago by this client's clock (notarize.MapRoot.Time), the
	// client does not read the log after it, and takes the statements
	// after it as the ledger's answer gives them. Every statement indexed
	// before the root's time is then proven to be in the answer or left out
	// by no one; a front can hide at most the statements of the last
	// MaxIndexLag. Zero (the default) reads the whole tail: complete up to
	// the checkpoint. The plugin's verify sets DefaultMaxIndexLag
	// (--max-index-lag).
	MaxIndexLag time.Duration
}

// DefaultMaxIndexLag is the MaxIndexLag of the plugin's commands: twice
// what a ledger lets its newest root age before it carries the tail again
// (api.AnchorMaxAge), so that a root the ledger finds recent is still
// recent when the answer arrives, under a few seconds of clock skew.
const DefaultMaxIndexLag = 2 * api.AnchorMaxAge

// Validate checks the configuration.
func (c *Config) Validate() error {
	if _, err := parseLedgerURL(c.URL); err != nil {
		return err
	}
	if c.Home == "" {
		return errors.New("home directory is required")
	}
	if c.VerifierKey != "" {
		if _, err := note.NewVerifier(c.VerifierKey); err != nil {
			return fmt.Errorf("ledger verifier key %q: %w", clip(c.VerifierKey, 200), err)
		}
	}
	if c.Timeout < 0 {
		return fmt.Errorf("negative timeout %v", c.Timeout)
	}
	if c.MaxIndexLag < 0 {
		return fmt.Errorf("negative maximum index lag %v", c.MaxIndexLag)
	}
	if c.MaxWitnessAge < 0 || c.MaxWitnessAge > 0 && c.WitnessPolicy == nil {
		return fmt.Errorf("maximum witness age %v needs a witness policy and must not be negative", c.MaxWitnessAge)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if c.UserAgent == "" {
		c.UserAgent = defaultUserAgent()
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func defaultUserAgent() string {
	v := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return "docker-notarize/" + v
}

// parseLedgerURL checks and normalizes a ledger base URL; its string form
// is the key of the ledger's pin.
func parseLedgerURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("ledger URL is required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("ledger URL: %w", err)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("ledger URL %q: want http or https", s)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("ledger URL %q: want scheme://host[:port][/path] without user, query or fragment", s)
	}
	u.Host = strings.ToLower(u.Host)
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}
