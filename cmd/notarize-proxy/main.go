// Command notarize-proxy is the trust-enforcing pull-through registry proxy
// of docker notarize: point dockerd's registry-mirrors or containerd's
// hosts.toml at it, and only manifests whose digest is trusted under the
// policy can be pulled. See package proxy.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/notarize"
	"github.com/notarize/docker-notarize/proxy"
	_ "github.com/notarize/docker-notarize/proxy/blobcache/drivers" // storage: s3, gcs, azure (issue 15)
	"github.com/notarize/docker-notarize/proxy/peer"
	"github.com/notarize/docker-notarize/proxy/replica"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(runWith(ctx, os.Args[1:], os.Stdout, os.Stderr, routeLogrus))
}

// routeLogrus sends the process-wide logrus output of distribution's access
// controllers (why a token was refused) to the proxy's logger. Only main
// does it: tests run several proxies in one process.
func routeLogrus(log *slog.Logger) {
	logrus.SetOutput(io.Discard)
	logrus.AddHook(logrusHook{log})
}

type logrusHook struct{ log *slog.Logger }

func (h logrusHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h logrusHook) Fire(e *logrus.Entry) error {
	level := slog.LevelDebug
	switch {
	case e.Level <= logrus.ErrorLevel:
		level = slog.LevelError
	case e.Level == logrus.WarnLevel:
		level = slog.LevelWarn
	case e.Level == logrus.InfoLevel:
		level = slog.LevelInfo
	}
	h.log.Log(context.Background(), level, e.Message, "component", "distribution")
	return nil
}

// listFlag is a repeatable flag over a list of the configuration: the
// first use replaces what the configuration file said.
type listFlag struct {
	dst *[]string
	set bool
}

func (l *listFlag) String() string {
	if l.dst == nil {
		return ""
	}
	return strings.Join(*l.dst, ",")
}

func (l *listFlag) Set(v string) error {
	if !l.set {
		*l.dst, l.set = nil, true
	}
	*l.dst = append(*l.dst, v)
	return nil
}

// upstreamsFlag is --upstream NAME=URL: the first use replaces the file's upstreams.
type upstreamsFlag struct {
	dst *[]proxy.UpstreamConfig
	set bool
}

func (u *upstreamsFlag) String() string {
	if u.dst == nil {
		return ""
	}
	var out []string
	for _, c := range *u.dst {
		out = append(out, c.Name+"="+c.URL)
	}
	return strings.Join(out, ",")
}

func (u *upstreamsFlag) Set(v string) error {
	name, url, ok := strings.Cut(v, "=")
	if !ok || name == "" || url == "" {
		return fmt.Errorf("%q: want NAME=URL", v)
	}
	if !u.set {
		*u.dst, u.set = nil, true
	}
	*u.dst = append(*u.dst, proxy.UpstreamConfig{Name: name, URL: url})
	return nil
}

// authFlag is --auth htpasswd:FILE or --auth token:realm=URL,service=S,issuer=I,rootcertbundle=FILE[,jwks=FILE].
type authFlag struct{ dst *proxy.AuthConfig }

func (a *authFlag) String() string {
	switch {
	case a.dst == nil:
		return ""
	case a.dst.Htpasswd != nil:
		return "htpasswd:" + a.dst.Htpasswd.Path
	case a.dst.Token != nil:
		return "token:realm=" + a.dst.Token.Realm
	}
	return ""
}

func (a *authFlag) Set(v string) error {
	kind, arg, _ := strings.Cut(v, ":")
	switch kind {
	case "htpasswd":
		if arg == "" {
			return errors.New("want htpasswd:FILE")
		}
		*a.dst = proxy.AuthConfig{Htpasswd: &proxy.HtpasswdAuth{Realm: proxy.DefaultRealm, Path: arg}}
	case "token":
		t := &proxy.TokenAuth{}
		for _, kv := range strings.Split(arg, ",") {
			k, val, _ := strings.Cut(kv, "=")
			switch k {
			case "realm":
				t.Realm = val
			case "service":
				t.Service = val
			case "issuer":
				t.Issuer = val
			case "rootcertbundle":
				t.RootCertBundle = val
			case "jwks":
				t.JWKS = val
			default:
				return fmt.Errorf("token option %q: want realm, service, issuer, rootcertbundle or jwks", clip(k, 40))
			}
		}
		*a.dst = proxy.AuthConfig{Token: t}
	default:
		return errors.New("want htpasswd:FILE or token:realm=URL,service=NAME,issuer=NAME,rootcertbundle=FILE")
	}
	return a.dst.Validate()
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// newFlagSet returns the command line's flags, each laid over its field of c.
func newFlagSet(c *proxy.Configuration, configPath *string, showVersion *bool, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("notarize-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(configPath, "config", "", "YAML configuration file (flags override it); see examples/proxy.yaml")
	fs.StringVar(&c.Addr, "addr", c.Addr, "listen address; anything but loopback needs --auth (or --anonymous)")
	fs.StringVar(&c.Data, "data", c.Data, "data directory: blob cache, ledger replica, ledger client state")
	fs.Var(&upstreamsFlag{dst: &c.Upstreams}, "upstream", "upstream registry NAME=URL (repeatable); default docker.io=https://registry-1.docker.io")
	fs.StringVar(&c.DefaultUpstream, "default-upstream", c.DefaultUpstream, "upstream for requests without ?ns= or a /v2/NAME/ prefix (default docker.io if configured)")
	fs.Var(&listFlag{dst: &c.InsecureUpstreams}, "insecure-upstream", "NAME of an upstream that may be reached over plain http (loopback ones always may); repeatable")
	fs.StringVar(&c.Policy, "policy", c.Policy, "trust policy file (YAML); required")
	fs.StringVar(&c.Ledger, "ledger", c.Ledger, "ledger URL; required")
	fs.StringVar(&c.LedgerKey, "ledger-key", c.LedgerKey, "ledger verifier key, or a file holding it (the ledger's DIR/ledger.pub); default: pinned on first use")
	fs.Var(&c.CacheMaxBytes, "cache-max-bytes", "bound of the blob cache in --data (least recently used blobs are evicted; a larger blob is served uncached), e.g. 20GiB, 500MB; 0 = unbounded")
	fs.Var(&c.FillMemoryBytes, "fill-memory-bytes", "memory that all cold blob downloads and their clients hold at once in 1 MiB chunks, e.g. 64MiB (the default, for 0); past it downloads stream through their temporary files with 32 KiB buffers")
	fs.Var(&c.MaxStaleness, "max-staleness", "serve from the last verified ledger state for at most this long when the ledger cannot be followed, then fail closed")
	fs.Var(&listFlag{dst: &c.Peers}, "peer", "URL of another notarize-proxy whose ledger view (/notarize/v1/checkpoint) this one checks for consistency with its own; a fork fails closed (repeatable)")
	fs.StringVar(&c.LedgerCA, "ledger-ca", c.LedgerCA, "PEM file of CA certificates to trust for an https ledger, besides the system's (a private CA)")
	fs.StringVar(&c.WitnessPolicy, "witness-policy", c.WitnessPolicy, "witness policy FILE (Tessera's format): a ledger checkpoint counts only when a quorum of its witnesses cosigned it, and --max-staleness also counts from the newest quorum's cosignatures")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "serve HTTPS with this certificate (PEM); with --tls-key")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "private key (PEM) of --tls-cert")
	fs.Var(&authFlag{dst: &c.Auth}, "auth", "client authentication: htpasswd:FILE (bcrypt, htpasswd -B) or token:realm=URL,service=NAME,issuer=NAME,rootcertbundle=FILE (Docker token spec)")
	fs.BoolVar(&c.Anonymous, "anonymous", c.Anonymous, "serve clients without authentication on a non-loopback --addr, on purpose (everyone who can reach the proxy reads what its upstream credentials can)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.BoolVar(showVersion, "version", false, "print the version and exit")
	return fs
}

// configure builds the configuration: defaults, then the --config file,
// then the flags laid over it. It returns a usage error (exit code 2).
func configure(args []string, stderr io.Writer) (cfg proxy.Configuration, showVersion bool, err error) {
	// First pass: find --config (and report flag errors and --help once).
	scratch := proxy.DefaultConfiguration()
	var configPath string
	if err := newFlagSet(&scratch, &configPath, &showVersion, stderr).Parse(args); err != nil {
		return cfg, false, err
	}
	if showVersion {
		return cfg, true, nil
	}
	cfg = proxy.DefaultConfiguration()
	if configPath != "" {
		if err := proxy.LoadConfiguration(configPath, &cfg); err != nil {
			return cfg, false, err
		}
	}
	fs := newFlagSet(&cfg, &configPath, &showVersion, io.Discard)
	if err := fs.Parse(args); err != nil {
		return cfg, false, err
	}
	return cfg, false, cfg.Validate()
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runWith(ctx, args, stdout, stderr, nil)
}

// runWith runs notarize-proxy and returns its exit code. routeLogs, when
// not nil, is handed the logger for process-wide logs.
func runWith(ctx context.Context, args []string, stdout, stderr io.Writer, routeLogs func(*slog.Logger)) int {
	cfg, showVersion, err := configure(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		// Asked for: the usage is on stderr and that is success.
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "notarize-proxy:", err)
		return 2
	}
	if showVersion {
		fmt.Fprintln(stdout, "notarize-proxy", version)
		return 0
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		fmt.Fprintln(stderr, "notarize-proxy: --log-level:", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	if routeLogs != nil {
		routeLogs(log)
	}
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("notarize-proxy stopped", "error", err.Error())
		return 1
	}
	return 0
}

func serve(ctx context.Context, cfg proxy.Configuration, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return err
	}
	ev, err := loadPolicy(cfg.Policy, cfg.Auth.Enabled())
	if err != nil {
		return err
	}
	lc, rep, err := openReplica(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer rep.Close()
	pc, err := cfg.ProxyConfig(ev, rep, log, "notarize-proxy/"+version)
	if err != nil {
		return err
	}
	srv, err := proxy.New(pc)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	replicaDone := make(chan struct{})
	go func() { defer close(replicaDone); rep.Run(runCtx) }()
	peersDone, err := comparePeers(runCtx, cfg, lc, rep, log)
	if err != nil {
		return err
	}
	defer func() { <-peersDone }()
	go reloadOnHUP(runCtx, cfg.Policy, cfg.Auth.Enabled(), srv, log)
	logListening(log, cfg, ln.Addr().String(), srv, lc.VerifierKey(), ev)
	err = serveHTTP(ctx, cfg, ln, srv, log)
	cancel()
	<-replicaDone
	return err
}

// openReplica opens the ledger client and the proxy's replica of the ledger.
func openReplica(ctx context.Context, cfg proxy.Configuration, log *slog.Logger) (*ledgerclient.Client, *replica.Replica, error) {
	key, err := proxy.ReadLedgerKey(cfg.LedgerKey)
	if err != nil {
		return nil, nil, err
	}
	witnesses, err := loadWitnessPolicy(cfg.WitnessPolicy)
	if err != nil {
		return nil, nil, err
	}
	hc, err := ledgerclient.NewHTTPClient(cfg.LedgerCA)
	if err != nil {
		return nil, nil, err
	}
	lc, err := ledgerclient.New(ctx, ledgerclient.Config{
		URL: cfg.Ledger, VerifierKey: key, Home: filepath.Join(cfg.Data, "ledgerclient"), HTTPClient: hc,
		UserAgent: "notarize-proxy/" + version, Logger: log, WitnessPolicy: witnesses,
	})
	if err != nil {
		return nil, nil, err
	}
	// The replica audits the ledger's verifiable index (issue 11): it
	// recomputes the map and checks every root the ledger commits.
	audit, err := replica.OpenMapAudit(filepath.Join(cfg.Data, "vindex.db"), lc.VerifierKey())
	if err != nil {
		return nil, nil, err
	}
	rep, err := replica.Open(replica.Config{
		Path: filepath.Join(cfg.Data, "replica.db"), Source: ledgerclient.NewFollower(lc, 0),
		MaxStaleness: time.Duration(cfg.MaxStaleness), Logger: log, Witnesses: witnesses, MapAudit: audit,
	})
	if err != nil {
		return nil, nil, errors.Join(err, audit.Close())
	}
	return lc, rep, nil
}

// comparePeers starts comparing the ledger's view with the --peer proxies'
// until ctx is done; the channel closes when it stopped.
func comparePeers(ctx context.Context, cfg proxy.Configuration, lc *ledgerclient.Client, rep *replica.Replica, log *slog.Logger) (<-chan struct{}, error) {
	done := make(chan struct{})
	if len(cfg.Peers) == 0 {
		close(done)
		return done, nil
	}
	pc, err := peer.New(peer.Config{Peers: cfg.Peers, Ledger: lc, OnFork: rep.ReportFork, Logger: log})
	if err != nil {
		close(done)
		return done, err
	}
	go func() { defer close(done); pc.Run(ctx) }()
	return done, nil
}

// logListening logs the running configuration and how to point dockerd and containerd at it.
func logListening(log *slog.Logger, cfg proxy.Configuration, addr string, srv *proxy.Server, ledgerKey string, ev *notarize.Evaluator) {
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	authMode := "none"
	switch {
	case cfg.Auth.Htpasswd != nil:
		authMode = "htpasswd"
	case cfg.Auth.Token != nil:
		authMode = "token"
	}
	mirror := scheme + "://" + addr
	daemonJSON := fmt.Sprintf(`{"registry-mirrors": ["%s"]}`, mirror)
	if scheme == "http" {
		daemonJSON = fmt.Sprintf(`{"registry-mirrors": ["%s"], "insecure-registries": ["%s"]}`, mirror, addr)
	}
	log.Info("notarize-proxy listening", "addr", addr, "scheme", scheme, "version", version, "upstreams", srv.Upstreams(),
		"ledger", cfg.Ledger, "ledger_key", ledgerKey, "policy", cfg.Policy, "data", cfg.Data,
		"cache_max_bytes", cfg.CacheMaxBytes.String(), "max_staleness", cfg.MaxStaleness.String(), "witness_policy", cfg.WitnessPolicy,
		"auth", authMode, "anonymous", cfg.Anonymous, "access_rules", len(ev.Policy().Access),
		"daemon.json", daemonJSON,
		"hosts.toml", fmt.Sprintf(`server = "%s"  [host."%s"] capabilities = ["pull", "resolve"]`, mirror, mirror))
}

// serveHTTP serves srv on ln until ctx is done, then shuts down: requests
// in flight finish, and blob downloads in flight finish into the cache (or
// are discarded).
func serveHTTP(ctx context.Context, cfg proxy.Configuration, ln net.Listener, srv *proxy.Server, log *slog.Logger) error {
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() {
		if cfg.TLSCert != "" {
			errc <- hs.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
			return
		}
		errc <- hs.Serve(ln)
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("notarize-proxy shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := hs.Shutdown(shutdownCtx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return errors.Join(err, srv.Close(shutdownCtx))
}

// loadWitnessPolicy reads and parses the witness policy file; nil without one.
func loadWitnessPolicy(path string) (*ledgerclient.WitnessPolicy, error) {
	if path == "" {
		return nil, nil
	}
	return ledgerclient.ReadWitnessPolicy(path)
}

// loadPolicy loads the policy file. Access rules name users, so they need
// client authentication: without it they would deny everyone.
func loadPolicy(path string, authenticated bool) (*notarize.Evaluator, error) {
	ev, err := proxy.LoadPolicy(path)
	if err != nil {
		return nil, err
	}
	if n := len(ev.Policy().Access); n > 0 && !authenticated {
		return nil, fmt.Errorf("policy %s has %d access rules, which name users: configure client authentication (--auth) or remove them", path, n)
	}
	return ev, nil
}

// reloadOnHUP reloads the policy file on SIGHUP; a bad file keeps the old policy.
func reloadOnHUP(ctx context.Context, path string, authenticated bool, srv *proxy.Server, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			ev, err := loadPolicy(path, authenticated)
			if err != nil {
				log.Error("policy reload failed; keeping the current policy", "policy", path, "error", err.Error())
				continue
			}
			srv.SetPolicy(ev)
			log.Info("policy reloaded", "policy", path, "rules", len(ev.Policy().Rules), "access_rules", len(ev.Policy().Access))
		}
	}
}
