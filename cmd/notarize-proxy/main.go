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
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/notarize/docker-notarize/ledgerclient"
	"github.com/notarize/docker-notarize/proxy"
	"github.com/notarize/docker-notarize/proxy/replica"
	"github.com/notarize/docker-notarize/proxy/upstream"
)

var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type options struct {
	addr, data, defaultUpstream, config, policy, ledger, ledgerKey, logLevel string
	tlsCert, tlsKey                                                          string
	upstreams, insecure                                                      listFlag
	maxStaleness                                                             time.Duration
	cacheMaxBytes                                                            byteSize
}

// byteSize is a flag of a size in bytes: a plain number or one with a unit
// (KB, MB, GB, TB powers of 1000; KiB, MiB, GiB, TiB powers of 1024).
type byteSize int64

var byteUnits = []struct {
	suffix string
	n      int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

func (b *byteSize) String() string {
	for _, u := range byteUnits[:4] {
		if v := int64(*b); v != 0 && v%u.n == 0 && (u.n == 1<<40 || v%(u.n<<10) != 0) {
			return strconv.FormatInt(v/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(*b), 10)
}

func (b *byteSize) Set(s string) error {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range byteUnits {
		if len(num) > len(u.suffix) && strings.EqualFold(num[len(num)-len(u.suffix):], u.suffix) {
			num, mult = strings.TrimSpace(num[:len(num)-len(u.suffix)]), u.n
			break
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v < 0 || v > math.MaxInt64/mult {
		return fmt.Errorf("%q: want a size in bytes such as 20GiB, 500MB or 1048576", s)
	}
	*b = byteSize(v * mult)
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("notarize-proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:5000", "listen address")
	fs.StringVar(&o.data, "data", ".notarize/proxy", "data directory: blob cache, ledger replica, ledger client state")
	fs.Var(&o.upstreams, "upstream", "upstream registry NAME=URL (repeatable); default docker.io=https://registry-1.docker.io")
	fs.StringVar(&o.defaultUpstream, "default-upstream", "", "upstream for requests without ?ns= or a /v2/NAME/ prefix (default docker.io if configured)")
	fs.Var(&o.insecure, "insecure-upstream", "NAME of an upstream that may be reached over plain http (loopback ones always may); repeatable")
	fs.StringVar(&o.config, "config", "", "YAML configuration file (flags override it)")
	fs.StringVar(&o.policy, "policy", "", "trust policy file (YAML); required")
	fs.StringVar(&o.ledger, "ledger", "", "ledger URL; required")
	fs.StringVar(&o.ledgerKey, "ledger-key", "", "ledger verifier key, or a file holding it (the ledger's DIR/ledger.pub); default: pinned on first use")
	o.cacheMaxBytes = proxy.DefaultBlobCacheMaxBytes
	fs.Var(&o.cacheMaxBytes, "cache-max-bytes", "bound of the blob cache in --data (least recently used blobs are evicted; a larger blob is served uncached), e.g. 20GiB, 500MB; 0 = unbounded")
	fs.DurationVar(&o.maxStaleness, "max-staleness", replica.DefaultMaxStaleness, "serve from the last verified ledger state for at most this long when the ledger cannot be followed, then fail closed")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM); with --tls-key")
	fs.StringVar(&o.tlsKey, "tls-key", "", "private key (PEM) of --tls-cert")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, "notarize-proxy", version)
		return 0
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := o.merge(set); err != nil {
		fmt.Fprintln(stderr, "notarize-proxy:", err)
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintln(stderr, "notarize-proxy: --log-level:", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := serve(ctx, o, log); err != nil {
		log.Error("notarize-proxy stopped", "error", err.Error())
		return 1
	}
	return 0
}

// merge applies the configuration file under the flags that were set.
func (o *options) merge(set map[string]bool) error {
	if o.config != "" {
		fc, err := proxy.LoadFileConfig(o.config)
		if err != nil {
			return err
		}
		pick := func(dst *string, flagName, v string) {
			if !set[flagName] && v != "" {
				*dst = v
			}
		}
		pick(&o.addr, "addr", fc.Addr)
		pick(&o.data, "data", fc.Data)
		pick(&o.defaultUpstream, "default-upstream", fc.DefaultUpstream)
		pick(&o.policy, "policy", fc.Policy)
		pick(&o.ledger, "ledger", fc.Ledger)
		pick(&o.ledgerKey, "ledger-key", fc.LedgerKey)
		pick(&o.tlsCert, "tls-cert", fc.TLSCert)
		pick(&o.tlsKey, "tls-key", fc.TLSKey)
		if !set["cache-max-bytes"] && fc.CacheMaxBytes != "" {
			if err := o.cacheMaxBytes.Set(fc.CacheMaxBytes); err != nil {
				return fmt.Errorf("config %s: cacheMaxBytes: %w", o.config, err)
			}
		}
		if !set["max-staleness"] && fc.MaxStaleness > 0 {
			o.maxStaleness = time.Duration(fc.MaxStaleness)
		}
		if !set["upstream"] {
			for _, u := range fc.Upstreams {
				o.upstreams = append(o.upstreams, u.Name+"="+u.URL)
				if u.Insecure {
					o.insecure = append(o.insecure, u.Name)
				}
			}
		}
		if !set["insecure-upstream"] {
			o.insecure = append(o.insecure, fc.InsecureUpstreams...)
		}
	}
	if o.policy == "" {
		return errors.New("--policy is required (see examples/policy.yaml)")
	}
	if o.ledger == "" {
		return errors.New("--ledger is required")
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	return nil
}

func (o *options) upstreamConfigs() ([]upstream.Config, error) {
	insecure := map[string]bool{}
	for _, n := range o.insecure {
		insecure[n] = true
	}
	var ups []upstream.Config
	for _, s := range o.upstreams {
		name, u, ok := strings.Cut(s, "=")
		if !ok || name == "" || u == "" {
			return nil, fmt.Errorf("--upstream %q: want NAME=URL", s)
		}
		ups = append(ups, upstream.Config{Name: name, URL: u, Insecure: insecure[name], UserAgent: "notarize-proxy/" + version})
		delete(insecure, name)
	}
	for n := range insecure {
		return nil, fmt.Errorf("--insecure-upstream %q names no configured upstream", n)
	}
	return ups, nil
}

func serve(ctx context.Context, o options, log *slog.Logger) error {
	ups, err := o.upstreamConfigs()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.data, 0o700); err != nil {
		return err
	}
	ev, err := proxy.LoadPolicy(o.policy)
	if err != nil {
		return err
	}
	key, err := proxy.ReadLedgerKey(o.ledgerKey)
	if err != nil {
		return err
	}
	lc, err := ledgerclient.New(ctx, ledgerclient.Config{
		URL: o.ledger, VerifierKey: key, Home: filepath.Join(o.data, "ledgerclient"),
		UserAgent: "notarize-proxy/" + version, Logger: log,
	})
	if err != nil {
		return err
	}
	rep, err := replica.Open(replica.Config{
		Path: filepath.Join(o.data, "replica.db"), Source: ledgerclient.NewFollower(lc, 0),
		MaxStaleness: o.maxStaleness, Logger: log,
	})
	if err != nil {
		return err
	}
	defer rep.Close()
	srv, err := proxy.New(proxy.Config{
		DataDir: o.data, Upstreams: ups, DefaultUpstream: o.defaultUpstream,
		Policy: ev, Trust: rep, BlobCacheMaxBytes: int64(o.cacheMaxBytes), Logger: log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	replicaDone := make(chan struct{})
	go func() { defer close(replicaDone); rep.Run(runCtx) }()
	go reloadOnHUP(runCtx, o.policy, srv, log)

	addr := ln.Addr().String()
	scheme := "http"
	if o.tlsCert != "" {
		scheme = "https"
	}
	mirror := scheme + "://" + addr
	daemonJSON := fmt.Sprintf(`{"registry-mirrors": ["%s"]}`, mirror)
	if scheme == "http" {
		daemonJSON = fmt.Sprintf(`{"registry-mirrors": ["%s"], "insecure-registries": ["%s"]}`, mirror, addr)
	}
	log.Info("notarize-proxy listening", "addr", addr, "scheme", scheme, "version", version, "upstreams", srv.Upstreams(),
		"ledger", o.ledger, "ledger_key", lc.VerifierKey(), "policy", o.policy, "data", o.data, "cache_max_bytes", int64(o.cacheMaxBytes), "max_staleness", o.maxStaleness.String(),
		"daemon.json", daemonJSON,
		"hosts.toml", fmt.Sprintf(`server = "%s"  [host."%s"] capabilities = ["pull", "resolve"]`, mirror, mirror))

	errc := make(chan error, 1)
	go func() {
		if o.tlsCert != "" {
			errc <- hs.ServeTLS(ln, o.tlsCert, o.tlsKey)
			return
		}
		errc <- hs.Serve(ln)
	}()
	select {
	case err := <-errc:
		cancel()
		<-replicaDone
		return err
	case <-ctx.Done():
	}
	log.Info("notarize-proxy shutting down")
	shutdownCtx, c2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer c2()
	err = hs.Shutdown(shutdownCtx)
	cancel()
	<-replicaDone
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	// Let blob downloads in flight finish into the cache (or be discarded).
	return errors.Join(err, srv.Close(shutdownCtx))
}

// reloadOnHUP reloads the policy file on SIGHUP; a bad file keeps the old policy.
func reloadOnHUP(ctx context.Context, path string, srv *proxy.Server, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			ev, err := proxy.LoadPolicy(path)
			if err != nil {
				log.Error("policy reload failed; keeping the current policy", "policy", path, "error", err.Error())
				continue
			}
			srv.SetPolicy(ev)
			log.Info("policy reloaded", "policy", path, "rules", len(ev.Policy().Rules))
		}
	}
}
