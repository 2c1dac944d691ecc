// Package ledgertest runs a real, in-process docker notarize ledger for
// other packages' tests: Tessera on POSIX storage in a temporary directory
// or, with WithMySQL, in a MySQL/MariaDB database (StartMariaDB gives one),
// served over HTTP on 127.0.0.1.
//
//	srv := ledgertest.Start(t)
//	client, err := ledgerclient.New(ctx, ledgerclient.Config{URL: srv.URL, …})
//
// Two servers started with the same WithSignerKey and WithOrigin sign with
// the same identity but keep different histories: a forked ledger.
package ledgertest

import (
	"context"
	"crypto"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/notarize/docker-notarize/ledger"
	"github.com/notarize/docker-notarize/ledger/storage/mysql"
	"github.com/notarize/docker-notarize/ledger/storage/posix"
)

// Server is a running test ledger.
type Server struct {
	// URL is the ledger's base URL, "http://127.0.0.1:PORT". It survives Restart.
	URL string
	// Origin is the checkpoint origin.
	Origin string
	// VerifierKey is the checkpoint verifier key (signed-note verifier string).
	VerifierKey string
	// SignerKey is the note signer key; pass it to WithSignerKey to start
	// another ledger with the same identity.
	SignerKey string
	// Dir is the ledger's data directory.
	Dir string

	tb   testing.TB
	cfg  ledger.Config
	dsn  string // the MySQL database, when not a directory
	addr string

	mu     sync.Mutex
	ledger *ledger.Ledger
	srv    *http.Server
	done   chan struct{} // closed when srv.Serve returns
}

// Option configures Start.
type Option func(*settings)

// settings are what Start is configured with: the ledger's configuration
// and where it keeps its data.
type settings struct {
	cfg ledger.Config
	dir string // POSIX storage (ledger/storage/posix)
	dsn string // MySQL storage (ledger/storage/mysql), when set
}

// WithConfig lets f change the ledger's configuration directly.
func WithConfig(f func(*ledger.Config)) Option {
	return func(s *settings) { f(&s.cfg) }
}

// WithSignerKey makes the ledger sign checkpoints with the given sumdb/note
// signer key ("PRIVATE+KEY+…") instead of generating one.
func WithSignerKey(noteSKey string) Option {
	return WithConfig(func(c *ledger.Config) { c.NoteSignerKey = noteSKey })
}

// WithOrigin sets the checkpoint origin.
func WithOrigin(origin string) Option {
	return WithConfig(func(c *ledger.Config) { c.Origin = origin })
}

// WithSigners restricts writes to the given enrolled public keys.
func WithSigners(keys ...crypto.PublicKey) Option {
	return WithConfig(func(c *ledger.Config) { c.Signers = append(c.Signers, keys...) })
}

// WithRateLimits sets the ledger's rate limits. Without it a test ledger
// has none: tests submit faster than a writer may.
func WithRateLimits(r ledger.RateLimits) Option {
	return WithConfig(func(c *ledger.Config) { c.RateLimits = r })
}

// WithDir keeps the ledger's data in dir instead of a new t.TempDir().
func WithDir(dir string) Option {
	return func(s *settings) { s.dir = dir }
}

// Start starts a ledger on 127.0.0.1 with a free port. It is stopped by
// t.Cleanup; failures to start end the test.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	set := settings{cfg: ledger.Config{
		Logger:     slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		RateLimits: ledger.RateLimits{Off: true},
		// Map roots (the verifiable index) only every MapCommitEntries
		// entries, not after an idle moment: tests that count log entries
		// or golden log indices stay exact. Tests of the map set a short
		// MapCommitInterval with WithConfig.
		MapCommitInterval: time.Hour,
		// Admit a self-revoked key's statements, as a ledger does in the
		// window before the revocation is indexed: verifiers' tests write
		// them to show they do not count. A test of the ledger's refusal
		// sets it back with WithConfig.
		AdmitSelfRevoked: true,
	}}
	for _, o := range opts {
		o(&set)
	}
	if set.dir == "" {
		// With MySQL the directory holds nothing of the ledger's (the
		// verifiable index is in the database too).
		set.dir = tempDir(t)
	}
	s := &Server{tb: t, cfg: set.cfg, Dir: set.dir, dsn: set.dsn}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("ledgertest: listen: %v", err)
	}
	s.addr = ln.Addr().String()
	s.URL = "http://" + s.addr
	if err := s.start(t, ln); err != nil {
		_ = ln.Close()
		t.Fatalf("ledgertest: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Restart closes the ledger and opens it again on the same directory and
// the same address, as a process restart would.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("ledgertest: restart: %v", err)
	}
	ln, err := listenAgain(t, s.addr)
	if err != nil {
		t.Fatalf("ledgertest: restart: %v", err)
	}
	if err := s.start(t, ln); err != nil {
		_ = ln.Close()
		t.Fatalf("ledgertest: restart: %v", err)
	}
}

// Stop shuts the server down and closes the ledger. It is safe to call more than once.
func (s *Server) Stop() {
	if err := s.stop(); err != nil {
		s.tb.Errorf("ledgertest: stop: %v", err)
	}
}

// Ledger returns the running ledger (nil once stopped).
func (s *Server) Ledger() *ledger.Ledger {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ledger
}

func (s *Server) start(t testing.TB, ln net.Listener) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
	defer cancel()
	var st ledger.Storage
	var err error
	if s.dsn != "" {
		st, err = mysql.New(ctx, mysql.Config{DSN: s.dsn, Logger: s.cfg.Logger})
	} else {
		st, err = posix.New(ctx, posix.Config{Dir: s.Dir, Logger: s.cfg.Logger})
	}
	if err != nil {
		return err
	}
	l, err := ledger.New(ctx, st, s.cfg)
	if err != nil {
		return err
	}
	key, err := os.ReadFile(filepath.Join(s.Dir, posix.KeyFile))
	switch {
	case s.cfg.NoteSignerKey != "":
		s.SignerKey = s.cfg.NoteSignerKey
	case err == nil:
		s.SignerKey = strings.TrimSpace(string(key))
	default:
		return errors.Join(err, l.Close(ctx))
	}
	s.Origin, s.VerifierKey = l.Origin(), l.VerifierKey()
	srv := &http.Server{
		Handler:           l.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // returns http.ErrServerClosed after Shutdown
	}()
	s.mu.Lock()
	s.ledger, s.srv, s.done = l, srv, done
	s.mu.Unlock()
	return nil
}

func (s *Server) stop() error {
	s.mu.Lock()
	l, srv, done := s.ledger, s.srv, s.done
	s.ledger, s.srv, s.done = nil, nil, nil
	s.mu.Unlock()
	if l == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := srv.Shutdown(ctx)
	<-done
	return errors.Join(err, l.Close(ctx))
}

// listenAgain listens on addr, retrying briefly while the old socket goes away.
func listenAgain(t testing.TB, addr string) (net.Listener, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			return ln, err
		}
		t.Logf("ledgertest: listen %s: %v; retrying", addr, err)
		time.Sleep(50 * time.Millisecond)
	}
}

// tempDir is t.TempDir for a ledger's data: Tessera's background goroutines
// (checkpoint publication) are not joined by Close and may still write a
// file just after it returns, which makes t.TempDir's strict removal fail
// the test. The directory is removed after the ledger stopped (cleanups run
// last first), retrying for a moment.
func tempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ledgertest-")
	if err != nil {
		t.Fatalf("ledgertest: %v", err)
	}
	t.Cleanup(func() {
		var err error
		for range 50 {
			if err = os.RemoveAll(dir); err == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("ledgertest: remove %s: %v", dir, err)
	})
	return dir
}
